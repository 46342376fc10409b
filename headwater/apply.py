"""``headwater apply``: validate definitions, show the plan, then create what it needs.

Applying creates the Kafka topics (source and dead-letter), registers source schemas (only
BACKWARD-compatible changes), creates the Delta table of every new feature-set version, and
records everything in the catalog. Running workers notice the change and restart; a new
version then catches up from the start of the source topic by itself (see
``stream_workers.processor``), so it ends up with the same history the old version has.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

from headwater.connectors.catalog import Catalog, CatalogError
from headwater.connectors.kafka import ensure_topics, wait_for_kafka
from headwater.connectors.offline_delta import DeltaOfflineStore
from headwater.schemas.compatibility import backward_problems
from headwater.schemas.definitions import Definitions, FeatureSet
from headwater.schemas.errors import DefinitionError
from headwater.schemas.loader import load_definitions
from headwater.schemas.plan import Plan, make_plan, source_change_allowed
from headwater.schemas.request_features import request_feature_problems
from headwater.schemas.settings import Settings
from headwater.schemas.tiles import FeatureSetPlan

__all__ = ["ApplyReport", "apply_definitions", "plan_definitions"]


@dataclass
class ApplyReport:
    plan: Plan
    applied: bool = False
    topics_created: list[str] = field(default_factory=list)
    tables_created: list[str] = field(default_factory=list)
    schema_ids: dict[str, int] = field(default_factory=dict)


def plan_definitions(catalog: Catalog, path: Path, *, topic_prefix: str = "") -> Plan:
    """Load ``path`` and compare it with the catalog.

    ``topic_prefix`` (``kafka.topic_prefix``) goes before the default topic names of the
    sources loaded; the catalog then keeps the full names, so every process agrees on them.

    Raises:
        DefinitionError: the files are invalid, or a source changes incompatibly.
    """
    new = load_definitions(path)
    if topic_prefix:
        new = replace(new, sources=tuple(s.with_topic_prefix(topic_prefix) for s in new.sources))
    try:
        current: Definitions | None = catalog.definitions()
        everything = catalog.definitions(include_retired=True)
    except CatalogError:
        current, everything = None, Definitions()
    problems: list[str] = []
    for source in new.sources:
        if current is not None and source.name in {s.name for s in current.sources}:
            problems += source_change_allowed(
                current.source(source.name), source, backward_problems
            )
    if problems:
        msg = f"{len(problems)} problem(s) with the sources:\n  " + "\n  ".join(problems)
        raise DefinitionError(msg)
    all_versions: dict[str, int] = {}
    for fs in everything.feature_sets:
        all_versions[fs.name] = max(all_versions.get(fs.name, 0), fs.version)
    sources = {s.name: s for s in (*new.sources, *(current.sources if current else ()))}

    def partial_keys(fs: FeatureSet) -> frozenset[str]:
        return FeatureSetPlan(fs, sources[fs.source]).aggregator.partial_keys

    plan = make_plan(new, current, all_versions=all_versions, partial_keys=partial_keys)
    # Loading typed request features against the files alone; versions pinned with @vN
    # exist only once merged with the catalog, so they are checked again here.
    request_problems = request_feature_problems(plan.definitions)
    if request_problems:
        lines = [message for _, _, message in request_problems]
        msg = f"{len(lines)} problem(s) with request features:\n  " + "\n  ".join(lines)
        raise DefinitionError(msg)
    return plan


def apply_definitions(settings: Settings, path: Path, *, dry_run: bool = False) -> ApplyReport:
    """Plan, and unless ``dry_run``, apply.

    Raises:
        DefinitionError: the definitions are invalid; nothing was changed.
        KafkaUnavailableError: no broker answers; nothing was changed.
    """
    catalog = Catalog(settings.catalog_url)
    try:
        plan = plan_definitions(catalog, path, topic_prefix=settings.kafka.topic_prefix)
        report = ApplyReport(plan)
        if dry_run:
            return report
        wait_for_kafka(settings.kafka)
        defs = plan.definitions
        # Dead letters are kept as long as events: they wait for a fix and a replay.
        retention = {"retention.ms": str(settings.kafka.retention_ms)}
        report.topics_created = ensure_topics(
            settings.kafka, [s.topic for s in defs.sources], config=retention
        )
        report.topics_created += ensure_topics(
            settings.kafka, [s.dlq_topic for s in defs.sources], config=retention
        )
        for source in defs.sources:
            report.schema_ids[source.name] = catalog.register_schema(source.subject, source.schema)
        offline = DeltaOfflineStore(settings.offline_location)
        for fs in plan.new_versions:
            if offline.create(fs, FeatureSetPlan(fs, defs.source(fs.source)).history_columns):
                report.tables_created.append(offline.table_uri(fs))
        catalog.save(defs, plan.to_save, {"plan": [item.describe() for item in plan.items]})
        report.applied = True
        return report
    finally:
        catalog.close()
