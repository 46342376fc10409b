"""``headwater apply``: validate definitions, then create topics, tables and catalog entries."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from connectors.kafka import ensure_topics, wait_for_kafka
from connectors.offline_delta import DeltaOfflineStore
from schemas.catalog import Catalog
from schemas.definitions import Definitions
from schemas.loader import load_definitions
from schemas.settings import Settings

__all__ = ["ApplyReport", "apply_definitions"]


@dataclass
class ApplyReport:
    definitions: Definitions
    topics_created: list[str] = field(default_factory=list)
    tables_created: list[str] = field(default_factory=list)
    schema_ids: dict[str, int] = field(default_factory=dict)


def apply_definitions(settings: Settings, path: Path, *, dry_run: bool = False) -> ApplyReport:
    """Load ``path`` (all problems reported at once), then register everything it defines.

    Raises:
        DefinitionError: the definitions are invalid; nothing was changed.
        KafkaUnavailableError: no broker answers; nothing was changed.
    """
    defs = load_definitions(path)
    report = ApplyReport(defs)
    if dry_run:
        return report
    wait_for_kafka(settings.kafka)
    topics = [t for s in defs.sources for t in (s.topic, s.dlq_topic)]
    report.topics_created = ensure_topics(settings.kafka, topics)
    catalog = Catalog(settings.catalog_url)
    try:
        for source in defs.sources:
            report.schema_ids[source.name] = catalog.register_schema(f"{source.topic}-value", source.schema)
        offline = DeltaOfflineStore(settings.offline_root)
        for fs in defs.feature_sets:
            if offline.create(fs, defs.source(fs.source).schema):
                report.tables_created.append(offline.table_uri(fs))
        catalog.save_definitions(defs)
    finally:
        catalog.close()
    return report
