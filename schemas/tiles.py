"""Per-entity tile state and the evaluation of features at a time ``t``.

For a feature set with resolution ``r``, an event at ``e`` ms belongs to tile ``k(e) = e // r``.
A window ``W`` at time ``t`` covers the events with ``e <= t`` and ``k(e) > k(t) - W/r``;
lifetime features drop the second condition. Online and offline both build an
``EntityState`` and call ``FeatureSetPlan.evaluate``, so they compute values with one piece
of code.

Invariants of ``EntityState`` (the stream worker keeps them, serving relies on them):
  * ``tiles`` and ``lifetime`` hold only events with ``e <= `` the writer's clock at the time
    of writing; events dated later wait in ``pending`` and are merged at read time once
    ``e <= t``. A reader that takes ``t`` after its read therefore never counts an event
    from its future.
  * ``offsets`` maps each Kafka partition to the offset of the last event of that partition
    folded in; an event at or below it was already applied, which makes re-delivery
    harmless. An entity's events normally share one partition (the entity is the message
    key); per-partition offsets keep it exact when a producer keyed them otherwise.
  * ``offsets`` belong to ``epoch``, the identity of the topic they are positions in (its
    Kafka topic id, plus a generation after ``headwater reset-epoch``). Offsets of another
    epoch mean nothing: a recreated topic numbers its events from 0 again, so a state of an
    older epoch starts the new one at the epoch's start offsets (-1 for a new topic) and
    every event of the new topic is applied. Its older events stay counted.
  * ``seq``, the tie-breaker between events of equal event time, is ``arrival_seq(partition,
    offset)``: arrival order within a partition, then partition number.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from headwater.schemas.aggregations import Aggregator, Spec, State
from headwater.schemas.definitions import Feature, FeatureSet, Source
from headwater.schemas.errors import DefinitionError
from headwater.schemas.expressions import Expression, compile_expression
from headwater.schemas.native import extension
from headwater.schemas.window_specs import WindowSpec, condition_column, tile_bounds, window_spec

__all__ = [
    "EXPIRY_GRACE_MS",
    "ColumnBatch",
    "EntityState",
    "FeatureSetPlan",
    "Status",
    "TopicEpoch",
    "arrival_seq",
    "arrival_seqs",
    "expires_at_ms",
    "tile_of",
]


class Status(StrEnum):
    PRESENT = "PRESENT"
    NOT_FOUND = "NOT_FOUND"
    EXPIRED = "EXPIRED"


_KEPT_VALUES = 20_000
"""Most states whose values a plan keeps for ``evaluate(reuse=True)``."""

_OFFSET_BITS = 40
_OFFSET_MASK = (1 << _OFFSET_BITS) - 1


def arrival_seq(partition: int, offset: int) -> int:
    """One integer ordering events by partition, then offset; the tie-breaker of ``last``."""
    return (partition << _OFFSET_BITS) | offset


def arrival_seqs(partitions: pa.ChunkedArray, offsets: pa.ChunkedArray) -> list[int]:
    """``arrival_seq`` of a whole batch at once."""
    shifted = pc.shift_left(pc.cast(partitions, pa.int64()), _OFFSET_BITS)
    seqs: list[int] = pc.bit_wise_or(shifted, offsets).to_pylist()
    return seqs


def tile_of(e_ms: int, resolution_ms: int) -> int:
    """The tile of an event: floor division, also right for times before 1970."""
    return e_ms // resolution_ms


@dataclass(frozen=True)
class TopicEpoch:
    """The identity of a source topic that stored positions refer to.

    ``name`` is the Kafka topic id, with ``~<generation>`` after a ``headwater reset-epoch``;
    ``start`` maps partitions to the offset of the last event treated as already applied
    when the epoch began (absent: -1, every event of the partition is new).
    """

    name: str
    start: Mapping[int, int] = field(default_factory=dict)


@dataclass
class EntityState:
    """Everything kept about one entity of one feature set (see the module invariants)."""

    tiles: dict[int, State] = field(default_factory=dict)
    lifetime: State = field(default_factory=dict)
    newest: int | None = None
    pending: list[list[Any]] = field(default_factory=list)
    offsets: dict[int, int] = field(default_factory=dict)
    epoch: str | None = None
    """The topic epoch ``offsets`` are positions in (``None``: written before epochs were kept)."""
    stored: Any = field(default=None, compare=False, repr=False)
    """The store's encoding of this state as last read or written (``None``: unknown).
    Lets a writer diff against what is stored without encoding the old state again."""
    changed: set[int] = field(default_factory=set, compare=False, repr=False)
    """Tiles folded into or dropped since ``stored``: all that a writer updating this state
    in place has to send of its tiles (an entity keeps up to a week of them)."""


EXPIRY_GRACE_MS = 3_600_000
"""How much longer than it matters a state is kept: room for the clocks of Redis, workers and
API servers to disagree (an hour; ``max_future_skew`` allows five minutes)."""


def expires_at_ms(feature_set: FeatureSet, state: EntityState) -> int | None:
    """When (epoch ms) a stored state stops mattering to any lookup, or ``None``: never.

    Once the newest event of an entity (pending ones included) is older than the set's
    longest window, every windowed feature has its empty-window value at every later ``t``,
    and a later event rebuilds the very same state from nothing: the writer would drop the
    old tiles anyway, since online keeps the tiles of the longest window. While a TTL
    longer than the windows has not passed, the state still decides ``PRESENT`` over
    ``EXPIRED``, so the later of the two counts, plus ``EXPIRY_GRACE_MS``.

    Lifetime features (no window) need their state forever, and so do the states of their
    sets: ``None``. After expiry a lookup finds no state: the values are the ones the state
    would give (empty windows), the status reads ``NOT_FOUND`` instead of ``EXPIRED``.
    """
    if any(f.window_ms is None for f in feature_set.features):
        return None
    times: list[int] = [int(p[0]) for p in state.pending]
    if state.newest is not None:
        times.append(state.newest)
    if not times:
        return None
    useful_ms = max(feature_set.reach_ms, feature_set.ttl_ms or 0)
    return max(times) + useful_ms + EXPIRY_GRACE_MS


@dataclass
class ColumnBatch:
    """The events of a batch by column, for ``FeatureSetPlan.apply_columns``: the values of
    the plan's ``fields``, event times and ``arrival_seq``s, one item per event."""

    fields: list[str]
    columns: list[list[Any]]
    times: list[int]
    seqs: list[int]
    native: Any = field(default=None, repr=False)
    """The same columns for the native fold (made once per batch, when the plan has one)."""

    def event(self, i: int) -> tuple[dict[str, Any], int, int]:
        """Event ``i`` as ``apply`` takes it: ``(row, e, seq)``."""
        row = {f: column[i] for f, column in zip(self.fields, self.columns, strict=True)}
        return row, self.times[i], self.seqs[i]


class FeatureSetPlan:
    """The compiled aggregation plan of one feature set version."""

    def __init__(self, feature_set: FeatureSet, source: Source) -> None:
        self.feature_set = feature_set
        self.source = source
        types = dict(source.schema.field_types)
        # Transforms run in order, each may use the outputs of earlier ones; the filter sees
        # source fields and transform outputs. Compiled once; type errors surface here.
        self.transforms: dict[str, Expression] = {}
        for name, text in feature_set.transforms.items():
            expression = compile_expression(text, types)
            self.transforms[name] = expression
            types[name] = expression.type
        self.filter = compile_expression(feature_set.filter, types) if feature_set.filter else None
        self.history_types: dict[str, str] = types
        """Field types of the rows this version stores offline: source fields + transforms."""
        self.history_columns: dict[str, pa.DataType | str] = {
            **source.schema.arrow_types,
            **{name: expression.type for name, expression in self.transforms.items()},
        }
        """The history's columns: the source fields' Arrow types, then the transform
        outputs' type names (what ``connectors.offline_delta.history_schema`` takes)."""
        self.conditions: dict[str, Expression] = {}
        """Condition columns of the features' ``where`` (``condition_column``): computed per
        batch online and over the history offline, never stored."""
        for f in feature_set.features:
            if f.where:
                self.conditions[condition_column(f.where)] = self._condition(f, types)
        condition_types = dict.fromkeys(self.conditions, "boolean")
        self.specs = tuple(self._spec(f) for f in feature_set.features)
        """What each feature aggregates, as the aggregator was built from."""
        self.aggregator = Aggregator(self.specs, {**types, **condition_types})
        self.resolution_ms = feature_set.resolution_ms
        self.fields = self.aggregator.fields
        self.field_types = {f: {**types, **condition_types}[f] for f in self.fields}
        inputs = [f for f in self.fields if f not in self.conditions]
        for expression in self.conditions.values():
            inputs += sorted(expression.fields)
        self.stored_fields: tuple[str, ...] = tuple(dict.fromkeys(inputs))
        """The history's fields the features read, their conditions' inputs included."""
        adders = self.aggregator.native_adders(self.fields)
        self._native_fold = (
            None
            if extension is None or adders is None
            else extension.TileFolder(adders, self.resolution_ms)
        )
        # Features grouped by window so each window's tiles are merged once per lookup.
        self.by_window: dict[WindowSpec | None, list[int]] = {}
        """Feature indexes per window (``None``: lifetime), in feature order."""
        for i, f in enumerate(feature_set.features):
            self.by_window.setdefault(window_spec(feature_set, f), []).append(i)
        self._windows = [w for w in self.by_window if w is not None]
        self._kept: dict[int, tuple[EntityState, int, list[Any]]] = {}
        """Values of recently evaluated states (``evaluate(reuse=True)``), by state id."""

    def _condition(self, feature: Feature, types: Mapping[str, str]) -> Expression:
        assert feature.where is not None
        where = f"feature {feature.name!r} of feature set {self.feature_set.name!r}: where"
        try:
            expression = compile_expression(feature.where, types)
        except DefinitionError as exc:
            raise DefinitionError(f"{where}: {exc}") from exc
        if expression.type != "boolean":
            msg = (
                f"{where} {feature.where!r} is {expression.type}, not boolean; write a condition "
                "such as \"status == 'declined'\""
            )
            raise DefinitionError(msg)
        return expression

    def _spec(self, f: Feature) -> Spec:
        tile = self.feature_set.tile_ms(f)
        return Spec(
            f.function,
            f.field,
            f.n,
            percentiles=f.percentiles,
            accuracy=f.accuracy,
            precision=f.precision,
            k=f.k,
            max_keys=f.max_keys,
            where=condition_column(f.where) if f.where else None,
            tile_ms=tile
            if f.window_ms is not None and tile != self.feature_set.resolution_ms
            else None,
        )

    def with_conditions(self, table: pa.Table) -> pa.Table:
        """``table`` (events after the filter and transforms) with the condition columns."""
        for name, expression in self.conditions.items():
            if name not in table.column_names:
                table = table.append_column(name, expression.evaluate(table))
        return table

    def fold(
        self, state: EntityState, row: Mapping[str, Any], e: int, seq: int, *, keep_from: int | None
    ) -> None:
        """Merge one event into the lifetime state and, if recent enough, its tiles.

        ``keep_from`` is the oldest tile still kept (``None`` keeps every tile). Coarse
        partials go to the set's tile where their coarse tile starts.
        """
        k = tile_of(e, self.resolution_ms)
        if keep_from is None or k >= keep_from:
            self.aggregator.add_both(state.tiles.setdefault(k, {}), state.lifetime, row, e, seq)
            state.changed.add(k)
        else:
            self.aggregator.add(state.lifetime, row, e, seq)
        for tile_ms in self.aggregator.grids:
            start = e // tile_ms * (tile_ms // self.resolution_ms)
            if keep_from is None or start >= keep_from:
                self.aggregator.add(state.tiles.setdefault(start, {}), row, e, seq, tile_ms)
                state.changed.add(start)
        if state.newest is None or e > state.newest:
            state.newest = e

    def apply(
        self,
        state: EntityState,
        events: Iterable[tuple[Mapping[str, Any], int, int]],
        now: int,
        epoch: TopicEpoch | None = None,
    ) -> bool:
        """Apply ``(row, e, seq)`` events in arrival order as of the writer's clock ``now``.

        ``seq`` is ``arrival_seq(partition, offset)`` in the topic ``epoch``. Events at or
        below the state's offset of their partition are skipped (already applied). Returns
        whether the state changed.
        """
        keep_from = self._oldest_kept_tile(now)
        changed = self._enter_epoch(state, epoch)
        offsets = state.offsets
        for row, e, seq in events:
            partition, offset = seq >> _OFFSET_BITS, seq & _OFFSET_MASK
            if offset <= offsets.get(partition, -1):
                continue
            changed = True
            offsets[partition] = offset
            if e > now:
                state.pending.append([e, seq, {f: row.get(f) for f in self.fields}])
            else:
                self.fold(state, row, e, seq, keep_from=keep_from)
        return self._settle(state, now, keep_from) or changed

    def column_batch(
        self, columns: list[list[Any]], times: list[int], seqs: list[int]
    ) -> ColumnBatch:
        """A batch's columns of ``fields`` (in that order) for ``apply_columns``."""
        native = None
        if self._native_fold is not None:
            assert extension is not None  # a native fold exists only with the extension
            native = extension.FoldBatch(columns, times, seqs)
        return ColumnBatch(list(self.fields), columns, times, seqs, native)

    def apply_columns(
        self,
        state: EntityState,
        batch: ColumnBatch,
        indices: list[int],
        now: int,
        epoch: TopicEpoch | None = None,
    ) -> bool:
        """``apply`` to the events ``indices`` of ``batch`` (in arrival order): the same
        result, by the native fold when the plan has one."""
        if self._native_fold is None or batch.native is None:
            return self.apply(state, (batch.event(i) for i in indices), now, epoch)
        keep_from = self._oldest_kept_tile(now)
        changed = self._enter_epoch(state, epoch)
        folded, state.newest, future = self._native_fold.fold(
            batch.native,
            indices,
            state.tiles,
            state.lifetime,
            state.changed,
            state.offsets,
            now,
            keep_from,
            state.newest,
        )
        for i in future:
            row, e, seq = batch.event(i)
            state.pending.append([e, seq, row])
        # The native fold dropped the stale tiles; matured events only add newer ones.
        return self._mature(state, now, keep_from) or changed or folded

    def _oldest_kept_tile(self, now: int) -> int:
        """The oldest tile a state keeps at the writer's clock ``now``: the first tile of the
        window reaching furthest back (later times only move windows forward)."""
        k_now = tile_of(now, self.resolution_ms)
        return min(
            (tile_bounds(w, k_now, self.resolution_ms)[0] for w in self._windows), default=k_now
        )

    @staticmethod
    def _enter_epoch(state: EntityState, epoch: TopicEpoch | None) -> bool:
        """Move ``state`` into the topic ``epoch``; whether that changed it."""
        if epoch is None or state.epoch == epoch.name:
            return False
        # A state of another epoch (or a new one) starts this epoch at its start; a state
        # written before epochs were kept keeps its offsets (the topic is the same one).
        if state.epoch is not None or not state.offsets:
            state.offsets = dict(epoch.start)
        state.epoch = epoch.name
        return True

    def _mature(self, state: EntityState, now: int, keep_from: int) -> bool:
        """Fold the pending events that ``now`` reached; whether there were any."""
        if not state.pending or all(p[0] > now for p in state.pending):
            return False
        matured = [p for p in state.pending if p[0] <= now]
        state.pending = [p for p in state.pending if p[0] > now]
        for e, seq, row in matured:
            self.fold(state, row, e, seq, keep_from=keep_from)
        return True

    def _settle(self, state: EntityState, now: int, keep_from: int) -> bool:
        """Fold the pending events that ``now`` reached and drop tiles before ``keep_from``;
        whether that changed the state."""
        changed = self._mature(state, now, keep_from)
        stale = [k for k in state.tiles if k < keep_from]
        for k in stale:
            del state.tiles[k]
        state.changed.update(stale)
        return changed or bool(stale)

    def evaluate(
        self, state: EntityState | None, t: int, *, reuse: bool = False
    ) -> tuple[list[Any], Status]:
        """Feature values (in feature order) and the status of one entity at time ``t``.

        ``reuse``: the caller never changes ``state`` (the API's states, decoded from Redis
        and shared while their version is the stored one), so the values of a state without
        pending events are kept and given again for any ``t`` in the same tile: they depend
        on ``t`` only through its tile (status and expiry are still judged at ``t``). A
        changed entity is a new state object, which is never served old values.
        """
        if reuse and state is not None and not state.pending and state.newest is not None:
            ttl = self.feature_set.ttl_ms
            if ttl is not None and state.newest < t - ttl:
                return self._empty(), Status.EXPIRED
            k_t = tile_of(t, self.resolution_ms)
            kept = self._kept.get(id(state))
            if kept is not None and kept[0] is state and kept[1] == k_t:
                return list(kept[2]), Status.PRESENT
            fresh, status = self.evaluate(state, t)
            self._kept[id(state)] = (state, k_t, fresh)  # holds the state: ids stay unique
            if len(self._kept) > _KEPT_VALUES:
                del self._kept[next(iter(self._kept))]
            return list(fresh), status
        features = self.feature_set.features
        if state is None:
            return self._empty(), Status.NOT_FOUND
        tiles, lifetime, newest = state.tiles, state.lifetime, state.newest
        matured = [p for p in state.pending if p[0] <= t]
        if matured:
            # Merge events that were in the writer's future but are in the reader's past,
            # on copies so that the stored state stays untouched.
            extra = EntityState()
            for e, seq, row in matured:
                self.fold(extra, row, e, seq, keep_from=None)
            tiles = dict(tiles)
            for k, s in extra.tiles.items():
                tiles[k] = self.aggregator.merge(self.aggregator.merge({}, tiles.get(k, {})), s)
            lifetime = self.aggregator.merge(self.aggregator.merge({}, lifetime), extra.lifetime)
            if extra.newest is not None and (newest is None or extra.newest > newest):
                newest = extra.newest
        if newest is None:
            return self._empty(), Status.NOT_FOUND
        ttl = self.feature_set.ttl_ms
        if ttl is not None and newest < t - ttl:
            return self._empty(), Status.EXPIRED
        values: list[Any] = [None] * len(features)
        for i in self.by_window.get(None, ()):
            values[i] = self.aggregator.finalize(i, lifetime)
        # Windows without an offset are nested (all end at k(t)): walk the tiles from the
        # newest once, and finish each window's features when the walk passes its start.
        # Each tile is merged once however many windows cover it. Offset windows end
        # earlier and merge their own tiles.
        k_t = tile_of(t, self.resolution_ms)
        newest_first = sorted((k for k in tiles if k <= k_t), reverse=True)
        bounds = [(tile_bounds(w, k_t, self.resolution_ms), w) for w in self._windows]
        merged: State = {}
        position = 0
        for (low, high), window in sorted(bounds, reverse=True):
            if high == k_t:
                while position < len(newest_first) and newest_first[position] >= low:
                    self.aggregator.merge(merged, tiles[newest_first[position]])
                    position += 1
                own = merged
            else:
                own = {}
                for k in newest_first:
                    if low <= k <= high:
                        self.aggregator.merge(own, tiles[k])
            for i in self.by_window[window]:
                values[i] = self.aggregator.finalize(i, own)
        return values, Status.PRESENT

    def _empty(self) -> list[Any]:
        empty: State = {}
        return [self.aggregator.finalize(i, empty) for i in range(len(self.feature_set.features))]
