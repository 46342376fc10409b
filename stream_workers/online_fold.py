"""A version's rows folded into entity states and written to the online store.

The worker's online half of a batch, split in two so that nothing is written before all of a
batch's computing has succeeded (``stream_workers/processor.py``): ``fold`` reads the states
(from the cache or the store) and folds the rows into them in memory; ``write`` stores them
with the store's compare-and-set, re-reading and re-folding the entities another writer
changed meanwhile.

Invariant of the cache: a cached state is what this writer last stored for the entity, and it
is trusted only while the store accepts the compare-and-set of its offsets, so a stale one
costs a retry, never a wrong value. ``fold`` updates cached states in place; whoever fails
between ``fold`` and ``write`` must call ``drop_states``.
"""

from __future__ import annotations

from collections import OrderedDict, defaultdict
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import pyarrow as pa

from headwater.connectors.base import BaseOnlineStore, EntityKey
from headwater.connectors.errors import OnlineStoreError, store_faults
from headwater.schemas.avro_types import column
from headwater.schemas.tiles import (
    ColumnBatch,
    EntityState,
    FeatureSetPlan,
    TopicEpoch,
    arrival_seqs,
)

__all__ = ["OnlineFolder", "OnlineWrite"]

_WRITE_ATTEMPTS = 5


@dataclass
class Grouped:
    """A batch's rows by column, and the indexes of each entity's rows in arrival order."""

    batch: ColumnBatch
    rows: dict[EntityKey, list[int]]


@dataclass
class OnlineWrite:
    """States folded in memory, waiting for ``OnlineFolder.write``."""

    grouped: Grouped
    keys: list[EntityKey]
    before: dict[EntityKey, EntityState | None]
    after: dict[EntityKey, EntityState]


class OnlineFolder:
    """Folds rows into entity states and writes them, keeping recently written states.

    Args:
        online: the store.
        keys: the entity key fields of each version (by qualified name).
        cache_entities: states kept per version between batches, so a batch needs no read
            round trip for entities this writer touched recently.
        clock_ms: the writer's clock; events dated after it wait as ``pending``.
        epoch: the topic epoch the offsets of new states belong to.
    """

    def __init__(
        self,
        online: BaseOnlineStore,
        keys: Mapping[str, tuple[str, ...]],
        cache_entities: int,
        clock_ms: Callable[[], int],
        epoch: Callable[[], TopicEpoch | None],
    ) -> None:
        self._online = online
        self._keys = keys
        self._cache_size = cache_entities
        self._clock = clock_ms
        self._epoch = epoch
        self._states: dict[str, OrderedDict[EntityKey, EntityState]] = {}

    def fold(self, plan: FeatureSetPlan, rows: pa.Table) -> OnlineWrite | None:
        """Fold the rows into their entities' states; nothing is written yet."""
        if rows.num_rows == 0:
            return None
        grouped = self._group_by_entity(plan, rows)
        return self._fold(plan, grouped, list(grouped.rows), use_cache=True)

    def replace(self, plan: FeatureSetPlan, rows: pa.Table) -> None:
        """Fold ``rows`` into empty states that replace the stored ones (each atomically)."""
        if rows.num_rows == 0:
            return
        grouped = self._group_by_entity(plan, rows)
        work = self._fold(plan, grouped, list(grouped.rows), use_cache=False, replace=True)
        self.write(plan, work, replace=True)

    def write(self, plan: FeatureSetPlan, work: OnlineWrite, *, replace: bool = False) -> None:
        """Store folded states; entities changed by another writer are re-read and re-folded.

        Raises:
            StoreFaultError: the store failed (call ``drop_states`` before retrying).
            OnlineStoreError: entities kept changing under every attempt.
        """
        fs = plan.feature_set
        cache = self._states.setdefault(fs.qualified_name, OrderedDict())
        conflicts: list[EntityKey] = []
        for attempt in range(_WRITE_ATTEMPTS):
            # Optimistic concurrency: an entity another writer changed since our read (only
            # possible when its events span partitions owned by two workers) is re-read and
            # re-applied; the per-partition offsets make the re-application exact.
            if attempt:
                work = self._fold(plan, work.grouped, conflicts, use_cache=False, replace=replace)
            with store_faults("redis", f"writing {len(work.after)} states of {fs.qualified_name}"):
                conflicts = self._online.write(fs, work.after, work.before)
            for key in work.keys:
                current = work.after.get(key, work.before[key])
                if key in conflicts or current is None:
                    cache.pop(key, None)
                else:
                    cache[key] = current
                    cache.move_to_end(key)
            while len(cache) > self._cache_size:
                cache.popitem(last=False)
            if not conflicts:
                return
        msg = (
            f"{len(conflicts)} entities of {fs.qualified_name} (e.g. {conflicts[0]!r}) kept changing "
            f"under {_WRITE_ATTEMPTS} attempts to write them; is another deployment writing with the "
            "same consumer group?"
        )
        raise OnlineStoreError(msg)

    def drop_states(self) -> None:
        """Forget every cached state: after a failed attempt some may hold events folded in
        memory but never written, and after a reassignment others may write them."""
        self._states.clear()

    def _fold(
        self,
        plan: FeatureSetPlan,
        grouped: Grouped,
        keys: list[EntityKey],
        *,
        use_cache: bool,
        replace: bool = False,
    ) -> OnlineWrite:
        fs = plan.feature_set
        cache = self._states.setdefault(fs.qualified_name, OrderedDict())
        before: dict[EntityKey, EntityState | None] = {}
        missing = []
        for key in keys:
            if use_cache and key in cache:
                before[key] = cache[key]
            else:
                missing.append(key)
        with store_faults("redis", f"reading {len(missing)} states of {fs.qualified_name}"):
            before.update(zip(missing, self._online.read(fs, missing), strict=True))
        now = self._clock()
        epoch = self._epoch()
        after: dict[EntityKey, EntityState] = {}
        for key in keys:
            # Updated in place: ``before`` only serves the diff through its ``stored``
            # encoding, and after a conflict the entity is read again, not reused.
            old = before[key]
            state = EntityState() if old is None or replace else old
            if plan.apply_columns(state, grouped.batch, grouped.rows[key], now, epoch):
                after[key] = state
        return OnlineWrite(grouped, keys, before, after)

    def _group_by_entity(self, plan: FeatureSetPlan, rows: pa.Table) -> Grouped:
        keys = self._keys[plan.feature_set.qualified_name]
        rows = plan.with_conditions(rows)  # the features' ``where`` columns
        # Keys are text, as str() gives them (what serving looks up).
        key_columns = [rows.column(k).to_pylist() for k in keys]
        key_columns = [
            values if pa.types.is_string(rows.schema.field(k).type) else list(map(str, values))
            for k, values in zip(keys, key_columns, strict=True)
        ]
        if len(keys) == 1:
            entities = [(k,) for k in key_columns[0]]
        else:
            entities = list(zip(*key_columns, strict=True))
        # Fields of nested records (``address.city``) come out of their struct column.
        columns = [column(rows, f).to_pylist() for f in plan.fields]
        seqs = arrival_seqs(rows.column("_partition"), rows.column("_offset"))
        times = rows.column("event_time_ms").to_pylist()
        grouped: defaultdict[EntityKey, list[int]] = defaultdict(list)
        for i, key in enumerate(entities):
            grouped[key].append(i)
        return Grouped(plan.column_batch(columns, times, seqs), grouped)
