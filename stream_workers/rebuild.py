"""``headwater rebuild-online``: recompute the online states from the offline history.

For a Redis that lost data (restarted without its append-only file, failed over to a stale
replica, flushed by mistake) or a new, empty Redis. The Delta history of a feature-set
version holds exactly the rows the stream worker folded into Redis (after the filter and
transforms, with their Kafka ``_partition`` and ``_offset``), so folding it again with the
worker's own code (``BatchProcessor.fold_history``) gives the states the stream gave: the
same values, the same per-partition offsets.

How it runs, per version:
  1. refuse while the deployment's consumer group has members: a running worker keeps
     entity states in memory and would race the rebuild (stop the workers first);
  2. read the history, sorted by entity and then by (partition, offset), the arrival
     order the worker folded it in;
  3. fold it in chunks that end at entity boundaries, each entity into an empty state
     that replaces what Redis holds for it in one atomic write: lookups during the rebuild
     see an entity's old state or its rebuilt one, never a partial one;
  4. delete the version's keys (``hw:<set>:v<n>:{...}``, found by SCAN) of entities the
     history does not have. No other key is read or written.

The history may trail Kafka: a worker commits Delta every few seconds, and one that died
in between left acknowledged events out of Delta. A worker started after the rebuild
catches that gap up from Kafka into Delta and Redis by itself (``BatchProcessor.catch_up``
on the group's committed offsets), as it does after any crash.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from headwater.connectors.catalog import Catalog
from headwater.connectors.kafka_groups import group_members
from headwater.connectors.offline_delta import DeltaOfflineStore
from headwater.connectors.online_redis import RedisOnlineStore
from headwater.schemas.definitions import Definitions, FeatureSet
from headwater.schemas.errors import UnknownNameError
from headwater.schemas.settings import Settings
from headwater.stream_workers.errors import RebuildRefusedError
from headwater.stream_workers.processor import BatchProcessor
from headwater.stream_workers.processor_factory import processor_from_settings

__all__ = ["RebuildReport", "VersionRebuilt", "rebuild_online"]

_CHUNK_ROWS = 100_000
"""History rows folded per write round (a worker's batch size): bounds memory and the size
of each round of Redis writes; a chunk always holds whole entities."""

_REFERENCE = re.compile(r"([A-Za-z_]\w*)@v(\d+)")


@dataclass(frozen=True)
class VersionRebuilt:
    feature_set: str
    """The version, as ``name@vN``."""
    entities: int
    """Entities whose state was rebuilt from the history."""
    rows: int
    """History rows folded."""
    removed: int
    """Keys deleted because the history has no event of their entity."""
    seconds: float


@dataclass
class RebuildReport:
    versions: list[VersionRebuilt] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def rebuild_online(
    settings: Settings, reference: str | None = None, *, chunk_rows: int = _CHUNK_ROWS
) -> RebuildReport:
    """Recompute the Redis states of every active feature-set version, or of the one
    ``reference`` names (``NAME@vN``), from its Delta history.

    Raises:
        RebuildRefusedError: the deployment's workers are running, or ``reference`` is not
            an active version.
        OnlineStoreEvictionError: Redis may evict states (its policy is not noeviction).
        KafkaUnavailableError, OnlineStoreError, OfflineStoreError: a service failed; no
            entity is left half-written, and running the command again completes the rebuild.
    """
    catalog = Catalog(settings.catalog_url)
    try:
        defs = catalog.definitions()
        targets = _targets(defs, reference)
        group = settings.worker.group_id
        members = group_members(settings.kafka, group)
        if members:
            msg = (
                f"consumer group {group!r} has {len(members)} active member(s) ({', '.join(members)}): "
                "a running worker keeps entity states in memory and would race the rebuild; stop "
                "the workers (`headwater worker`) of this deployment first, then run "
                "`headwater rebuild-online` again (a worker killed with -9 leaves the group after "
                f"worker.session_timeout_seconds, {settings.worker.session_timeout_seconds:g} s)"
            )
            raise RebuildRefusedError(msg)
        online = RedisOnlineStore.from_settings(settings.redis)
        report = RebuildReport()
        try:
            unchecked = online.check_no_eviction()
            if unchecked is not None:
                report.warnings.append(unchecked)
            offline = DeltaOfflineStore(settings.offline_location)
            for source_name in dict.fromkeys(fs.source for fs in targets):
                sets = [fs for fs in targets if fs.source == source_name]
                processor = processor_from_settings(
                    settings,
                    defs,
                    defs.source(source_name),
                    sets,
                    catalog=catalog,
                    online=online,
                    offline=offline,
                    dlq=None,
                    state_cache_entities=0,
                )
                for fs in sets:
                    keys = defs.entity(fs.entity).keys
                    report.versions.append(
                        _rebuild_version(processor, fs, keys, online, offline, chunk_rows)
                    )
        finally:
            online.close()
        return report
    finally:
        catalog.close()


def _targets(defs: Definitions, reference: str | None) -> list[FeatureSet]:
    if reference is None:
        return list(defs.feature_sets)
    match = _REFERENCE.fullmatch(reference)
    if match is None:
        msg = f"{reference!r} is not NAME@vN (e.g. user_spend@v1); omit it to rebuild every active version"
        raise RebuildRefusedError(msg)
    try:
        return [defs.feature_set(match.group(1), int(match.group(2)))]
    except UnknownNameError as exc:
        msg = f"cannot rebuild {reference}: {exc}"
        raise RebuildRefusedError(msg) from exc


def _rebuild_version(
    processor: BatchProcessor,
    fs: FeatureSet,
    keys: tuple[str, ...],
    online: RedisOnlineStore,
    offline: DeltaOfflineStore,
    chunk_rows: int,
) -> VersionRebuilt:
    started = time.monotonic()
    plan = next(p for p in processor.plans if p.feature_set == fs)
    columns = list(
        dict.fromkeys([*keys, *plan.stored_fields, "event_time_ms", "_partition", "_offset"])
    )
    history = offline.history(fs, columns=columns)
    order = [(k, "ascending") for k in keys] + [
        ("_partition", "ascending"),
        ("_offset", "ascending"),
    ]
    history = history.sort_by(order)
    starts = _entity_starts(history, keys)
    for chunk in _chunks(history, starts, chunk_rows):
        processor.fold_history(fs, chunk)
    rebuilt = {online.key(fs, key) for key in _entity_keys(history, keys, starts)}
    stale = [name for name in online.stored_keys(fs) if name not in rebuilt]
    removed = online.delete_keys(stale) if stale else 0
    return VersionRebuilt(
        feature_set=fs.qualified_name,
        entities=len(starts),
        rows=history.num_rows,
        removed=removed,
        seconds=time.monotonic() - started,
    )


def _entity_starts(history: pa.Table, keys: tuple[str, ...]) -> np.ndarray:
    """Row indexes where a new entity begins in history sorted by entity."""
    n = history.num_rows
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    differs = np.zeros(n - 1, dtype=bool)
    for k in keys:
        column = history.column(k)
        differs |= pc.not_equal(column.slice(1), column.slice(0, n - 1)).to_numpy(
            zero_copy_only=False
        )
    return np.concatenate([[0], np.flatnonzero(differs) + 1]).astype(np.int64)


def _chunks(history: pa.Table, starts: np.ndarray, chunk_rows: int) -> Iterator[pa.Table]:
    """Slices of about ``chunk_rows`` rows that never split an entity."""
    begin = 0
    for start in starts[1:]:
        if start - begin >= chunk_rows:
            yield history.slice(begin, int(start) - begin)
            begin = int(start)
    if begin < history.num_rows:
        yield history.slice(begin)


def _entity_keys(
    history: pa.Table, keys: tuple[str, ...], starts: np.ndarray
) -> list[tuple[str, ...]]:
    """The key of each entity, as text, as the worker stores it (``str`` of non-text keys)."""
    firsts = history.take(pa.array(starts))
    columns = [
        [v if isinstance(v, str) else str(v) for v in firsts.column(k).to_pylist()] for k in keys
    ]
    return list(zip(*columns, strict=True))
