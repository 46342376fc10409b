"""Right to erasure: remove everything Headwater holds about one entity key, and keep it out.

``erase_entity`` (called by ``headwater erase`` and the API) does, in this order:
  1. reads where each source topic of the entity's feature sets ends now (per partition)
     and records the request with those ends and its ``erase`` audit entry, in one catalog
     transaction. From then on every worker skips the key's events below those ends (a
     replay of the raw topic, a catch-up, a new version computed from the topic's history;
     ``stream_workers/erasure_skips.py``). Events produced after the erasure are new data
     about that id and are processed: erasure removes what was known, it does not ban an id;
  2. when the deployment's workers are running, waits until they have re-read the requests
     (one ``worker.reload_check_seconds`` tick) and have stored every event below the
     recorded ends in Redis and Delta, so no batch already in flight can write the entity
     back after step 3;
  3. deletes the entity's Redis key in every feature-set version (active and retired) under
     the configured key prefix, its rows from every version's Delta table, its rows from the
     saved entity inputs of training sets and from the served-responses log;
  4. states the retention after which the old Delta files (still readable by time travel)
     can be vacuumed, and vacuums at once when it is 0; ``vacuum_erasures`` (``headwater
     erase --vacuum``) does it later.

Running it again for the same key is safe: it records a new request (whose ends include
everything produced since) and deletes whatever arrived meanwhile.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from headwater.connectors.catalog import Catalog, ErasureRecord, TopicEnd
from headwater.connectors.delta_erasure import (
    delete_where,
    key_predicate,
    open_table,
    sql_identifier,
    sql_literal,
    table_schema,
    vacuum_table,
)
from headwater.connectors.kafka import log_ends, topic_id
from headwater.connectors.kafka_groups import committed_offsets, group_members, messages_between
from headwater.connectors.offline_delta import DeltaOfflineStore, read_delta
from headwater.connectors.offline_files import read_parquet, write_parquet
from headwater.connectors.online_redis import RedisOnlineStore
from headwater.connectors.topic_epochs import current_epoch, positions_prefix
from headwater.schemas.definitions import Entity, FeatureSet
from headwater.schemas.errors import FeatureStoreError
from headwater.schemas.offline_location import OfflineLocation
from headwater.schemas.settings import Settings
from headwater.serving.response_log import response_log_uri
from headwater.serving.training_sets import entities_path

__all__ = [
    "DEFAULT_RETENTION_HOURS",
    "ErasureIncompleteError",
    "ErasureReport",
    "VacuumReport",
    "erase_entity",
    "vacuum_erasures",
]

DEFAULT_RETENTION_HOURS = 168
"""7 days: Delta's default ``deletedFileRetentionDuration``, so a reader of an older version
(a long training job, a rebuild of a training set) is not cut off by an erasure sooner than
by any other vacuum."""

_HOUR_MS = 3_600_000


class ErasureIncompleteError(FeatureStoreError):
    """The request is recorded (workers skip the key) but the stores were not cleaned; the
    message says why and that running the command again completes it."""


@dataclass
class ErasureReport:
    erasure_id: int
    entity: str
    key: dict[str, str]
    topic_ends: dict[str, dict[int, int]]
    """Per source topic, the offsets below which the key's events are skipped from now on."""
    online_keys_deleted: int = 0
    """Redis keys deleted (one per feature-set version that held the entity)."""
    rows_deleted: dict[str, int] = field(default_factory=dict)
    """Per feature-set version (``set@vN``), history rows deleted."""
    training_set_rows: dict[str, int] = field(default_factory=dict)
    """Per saved training set, rows of its kept entity input deleted."""
    response_log_rows: int = 0
    retention_hours: int = DEFAULT_RETENTION_HOURS
    vacuum_after_ms: int = 0
    """When the old files may be vacuumed (``headwater erase --vacuum``)."""
    vacuumed_files: int | None = None
    """Files vacuumed at once (retention 0), else ``None``."""
    waited_s: float = 0.0
    warnings: list[str] = field(default_factory=list)

    @property
    def vacuum_after(self) -> str:
        return datetime.fromtimestamp(self.vacuum_after_ms / 1000, UTC).isoformat(
            timespec="seconds"
        )


def erase_entity(
    settings: Settings,
    catalog: Catalog,
    entity_name: str,
    key_parts: Sequence[str],
    *,
    retention_hours: int = DEFAULT_RETENTION_HOURS,
    wait_timeout_s: float = 120.0,
) -> ErasureReport:
    """Erase one entity key everywhere (see the module); audited as the current actor
    (``connectors.catalog.audit.acting_as``).

    Args:
        entity_name: the entity (``resolve_entity_key`` finds it from ``--entity`` fields).
        key_parts: the key's values, in the order of the entity's ``keys``.
        retention_hours: how long the old Delta files stay (time travel) before a vacuum
            may delete them; 0 vacuums now.
        wait_timeout_s: how long to wait for running workers (step 2).

    Raises:
        UnknownNameError: no such entity. ValueError (``EventError`` among them): the key
            does not fit the entity (``erasure_keys.resolve_entity_key`` checks requests
            first, naming the field). KafkaUnavailableError: the topics cannot be read
            (nothing recorded). ErasureIncompleteError, StoreFaultError: recorded but not
            fully cleaned (audited as failed); run it again.
    """
    if retention_hours < 0:
        msg = f"retention_hours must be 0 or more, got {retention_hours}"
        raise ValueError(msg)
    defs = catalog.definitions(include_retired=True)
    entity = defs.entity(entity_name)
    if len(key_parts) != len(entity.keys):
        msg = (
            f"entity {entity.name!r} is keyed by {list(entity.keys)}; got {len(key_parts)} value(s)"
        )
        raise ValueError(msg)
    key = entity.key_from_parts(key_parts)
    versions = [fs for fs in defs.feature_sets if fs.entity == entity.name]
    topics: dict[str, TopicEnd] = {}
    for source_name in sorted({fs.source for fs in versions}):
        topic = defs.source(source_name).topic
        topics[topic] = TopicEnd(topic_id(settings.kafka, topic), log_ends(settings.kafka, topic))
    request = catalog.erasures.record(entity.name, key, topics)
    report = ErasureReport(
        erasure_id=request.id,
        entity=entity.name,
        key=dict(zip(entity.keys, key, strict=True)),
        topic_ends={t: dict(end.ends) for t, end in topics.items()},
        retention_hours=retention_hours,
    )
    try:
        active = [fs for fs in catalog.definitions().feature_sets if fs.entity == entity.name]
        report.waited_s = _wait_for_workers(settings, catalog, active, topics, wait_timeout_s)
        _clean(settings, catalog, entity, key, versions, report)
        location = settings.offline_location
        tables = [DeltaOfflineStore(location).table_uri(fs) for fs in versions]
        report.vacuum_after_ms = time.time_ns() // 1_000_000 + retention_hours * _HOUR_MS
        changes: dict[str, Any] = {
            "removed": {
                "online_keys": report.online_keys_deleted,
                "history_rows": report.rows_deleted,
                "training_set_rows": report.training_set_rows,
                "response_log_rows": report.response_log_rows,
            },
            "tables": [*tables, response_log_uri(location)],
            "retention_hours": retention_hours,
            "vacuum_after_ms": report.vacuum_after_ms,
            "completed_at_ms": time.time_ns() // 1_000_000,
        }
        if retention_hours == 0:
            report.vacuumed_files = sum(
                len(vacuum_table(uri, 0, location)) for uri in changes["tables"]
            )
            changes["vacuumed_at_ms"] = time.time_ns() // 1_000_000
        catalog.erasures.update(request.id, changes)
    except Exception as exc:
        detail = {"erasure": request.id, "error": f"{type(exc).__name__}: {exc}"}
        catalog.erasures.failed(entity.name, key, detail)
        raise
    return report


def _wait_for_workers(
    settings: Settings,
    catalog: Catalog,
    active: Sequence[FeatureSet],
    topics: dict[str, TopicEnd],
    timeout_s: float,
) -> float:
    """Wait (when the group has members) for one reload tick of the workers and until the
    group committed every offset below the recorded ends and each active version's Delta
    table holds them; returns the seconds waited."""
    start = time.monotonic()
    group = settings.worker.group_id
    if not group_members(settings.kafka, group):
        return 0.0  # a worker started later loads the request before its first batch
    time.sleep(settings.worker.reload_check_seconds + 1.0)
    offline = DeltaOfflineStore(settings.offline_location)
    pending = dict(topics)
    while pending:
        for topic, end in list(pending.items()):
            committed = committed_offsets(settings.kafka, group, topic)
            epoch = current_epoch(settings.kafka, catalog, topic)
            prefix = positions_prefix(group, epoch)
            needed = {p: o for p, o in end.ends.items() if o > epoch.start.get(p, -1) + 1}
            # Positions may stop short of an end that only transaction markers follow.
            done = not messages_between(
                settings.kafka,
                group,
                topic,
                {p: (max(committed.get(p, -1), 0), o) for p, o in needed.items()},
            )
            for fs in active:
                if not done:
                    break
                stored = offline.committed_offsets(fs, prefix, needed)
                done = not messages_between(
                    settings.kafka,
                    group,
                    topic,
                    {p: (stored.get(p, -1) + 1, o) for p, o in needed.items()},
                )
            if done:
                del pending[topic]
        if pending and time.monotonic() - start > timeout_s:
            msg = (
                f"the erasure is recorded and the workers skip the entity's events from now on, "
                f"but the workers of group {group!r} have not stored the events before it on "
                f"{sorted(pending)} within {timeout_s:g} s (are they far behind, or stopped on "
                "an error?); nothing was deleted yet, so that a batch in flight cannot write the "
                "entity back: run the same command again once they caught up "
                "(or raise --wait-seconds)"
            )
            raise ErasureIncompleteError(msg)
        if pending:
            time.sleep(0.5)
    return time.monotonic() - start


def _clean(
    settings: Settings,
    catalog: Catalog,
    entity: Entity,
    key: tuple[str, ...],
    versions: Sequence[FeatureSet],
    report: ErasureReport,
) -> None:
    """Step 3: Redis, the versions' Delta tables, training-set inputs, the response log."""
    online = RedisOnlineStore.from_settings(settings.redis)
    try:
        if versions:
            report.online_keys_deleted = online.delete_keys(
                [online.key(fs, key) for fs in versions]
            )
    finally:
        online.close()
    offline = DeltaOfflineStore(settings.offline_location)
    fields = report.key
    erased_tables: set[str] = set()
    for fs in versions:
        uri = offline.table_uri(fs)
        table = open_table(uri, offline.location)
        if table is None:
            continue
        rows = delete_where(uri, key_predicate(table_schema(table), fields), offline.location)
        report.rows_deleted[fs.qualified_name] = rows
        if rows:
            erased_tables.add(fs.qualified_name)
    names = {fs.name for fs in versions}
    for other in catalog.definitions(include_retired=True).feature_sets:
        table = (
            open_table(offline.table_uri(other), offline.location)
            if other.name not in names
            else None
        )
        if table is not None and set(entity.keys) <= set(table_schema(table).names):
            report.warnings.append(
                f"{other.qualified_name} (entity {other.entity!r}) has the column(s) "
                f"{list(entity.keys)}: its rows describe {other.entity!r} entities and were kept"
            )
    _clean_training_sets(offline.location, catalog, fields, erased_tables, report)
    report.response_log_rows = _clean_response_log(offline.location, fields)


def _clean_training_sets(
    location: OfflineLocation,
    catalog: Catalog,
    fields: dict[str, str],
    erased_tables: set[str],
    report: ErasureReport,
) -> None:
    """Drop the entity's rows from the kept entity inputs of saved training sets, and warn
    about every training set that can no longer be rebuilt bit for bit."""
    for record in catalog.training_sets():
        path = entities_path(record.name)
        removed = 0
        table = read_parquet(location, path)
        if table is not None and set(fields) <= set(table.column_names):
            keep = _not_key(table, fields)
            removed = table.num_rows - int(pc.sum(keep.cast(pa.int64())).as_py() or 0)
            if removed:
                write_parquet(location, path, table.filter(keep))
                report.training_set_rows[record.name] = removed
        pinned = [name for name in record.table_versions if name in erased_tables]
        if removed:
            report.warnings.append(
                f"training set {record.name!r}: {removed} row(s) of the entity removed from its "
                "kept input; it can no longer be rebuilt bit for bit (`retrieve --rebuild` refuses it)"
            )
        elif pinned:
            report.warnings.append(
                f"training set {record.name!r} reads {pinned} at versions from before the "
                "erasure: it can be rebuilt only until the vacuum removes their old files"
            )


def _not_key(table: pa.Table, fields: dict[str, str]) -> pa.ChunkedArray:
    """True for the rows that are not the key (compared as text, as keys are stored)."""
    match = None
    for name, value in fields.items():
        equal = pc.fill_null(pc.equal(pc.cast(table.column(name), pa.string()), value), False)
        match = equal if match is None else pc.and_(match, equal)
    assert match is not None  # an entity has at least one key field
    return pc.invert(match)


def _clean_response_log(location: OfflineLocation, fields: dict[str, str]) -> int:
    """Delete the logged responses whose entity is the key (every key field equal, as text;
    a response's entity may hold other entities' keys too)."""
    uri = response_log_uri(location)
    table = open_table(uri, location)
    if table is None:
        return 0
    texts = set(read_delta(table, ["entity"]).column("entity").to_pylist())
    matching = []
    for text in texts:
        entity = json.loads(text)
        if all(name in entity and str(entity[name]) == v for name, v in fields.items()):
            matching.append(text)
    deleted = 0
    for start in range(0, len(matching), 200):
        literals = ", ".join(sql_literal(t) for t in sorted(matching)[start : start + 200])
        deleted += delete_where(uri, f"{sql_identifier('entity')} IN ({literals})", location)
    return deleted


@dataclass
class VacuumReport:
    vacuumed: dict[int, int] = field(default_factory=dict)
    """Per erasure request id, files deleted."""
    pending: dict[int, int] = field(default_factory=dict)
    """Per erasure request id whose retention has not passed, when it does (epoch ms)."""


def vacuum_erasures(settings: Settings, catalog: Catalog) -> VacuumReport:
    """Vacuum the tables of every erasure whose retention has passed and that was not
    vacuumed yet (``headwater erase --vacuum``); audited as ``erase_vacuum``."""
    report = VacuumReport()
    now = time.time_ns() // 1_000_000
    records: list[ErasureRecord] = catalog.erasures.all()
    for record in records:
        detail = record.detail
        if "vacuum_after_ms" not in detail or "vacuumed_at_ms" in detail:
            continue
        if detail["vacuum_after_ms"] > now:
            report.pending[record.id] = int(detail["vacuum_after_ms"])
            continue
        hours = int(detail.get("retention_hours", DEFAULT_RETENTION_HOURS))
        location = settings.offline_location
        files = sum(len(vacuum_table(uri, hours, location)) for uri in detail.get("tables", []))
        catalog.erasures.update(record.id, {"vacuumed_at_ms": now, "vacuumed_files": files})
        report.vacuumed[record.id] = files
    if report.vacuumed:
        catalog.erasures.audit(
            "erase_vacuum", "*", {"vacuumed": report.vacuumed, "pending": report.pending}
        )
    return report
