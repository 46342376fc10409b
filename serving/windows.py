"""Where each label row's windows lie in an entity-sorted event history.

Point-in-time retrieval turns "the events of entity ``id`` with ``e <= t`` and
``k(e) > k(t) - W/r``" (DESIGN §4) into index ranges: once the history is sorted by
(entity, event time, arrival order), every window of every label row is one contiguous slice
``[lo, hi)``. Finding all slices is a handful of ``searchsorted`` calls over one int64 key per
event, so the cost is a sort of the history plus O(labels · log events), with no per-event
Python.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import cache
from typing import TypeVar

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from headwater.schemas.definitions import KEY_SEPARATOR
from headwater.schemas.tiles import FeatureSetPlan
from headwater.schemas.window_specs import WindowSpec, tile_bounds
from headwater.serving.errors import BadRequestError

__all__ = [
    "SortedHistory",
    "WindowRanges",
    "check_label_keys",
    "entity_keys",
    "sort_history",
    "window_ranges",
]

_OFFSET_BITS = 40  # as schemas.tiles.arrival_seq
_SPLIT_ROWS = 1_000_000
"""Histories of at least this many rows are matched, sorted and gathered in one part per core."""

_T = TypeVar("_T")
_R = TypeVar("_R")


@cache
def _pool() -> ThreadPoolExecutor:
    return ThreadPoolExecutor(os.cpu_count() or 1, thread_name_prefix="pit")


def _parts() -> int:
    return max(1, min(os.cpu_count() or 1, 8))


def _each(fn: Callable[[_T], _R], items: Sequence[_T]) -> list[_R]:
    """``fn`` over ``items``, on the cores when there are several.

    Arrow's hash lookups, filters and takes and numpy's sorts release the GIL but each runs on
    one core; DuckDB uses them all. A few large parts, not many small ones: ``index_in``
    rebuilds its hash table of the wanted entities for every call.
    """
    if len(items) < 2:
        return [fn(item) for item in items]
    return list(_pool().map(fn, items))


def entity_keys(table: pa.Table, key_names: Sequence[str]) -> pa.Array:
    """One string per row identifying its entity (several key fields are joined).

    The text is Python's ``str`` of the value, as the online store's keys are.
    """
    columns = [_as_text(table.column(k)) for k in key_names]
    if len(columns) == 1:
        return columns[0]
    return pc.binary_join_element_wise(*columns, KEY_SEPARATOR)


def check_label_keys(labels: pa.Table, key_names: Sequence[str]) -> None:
    """Refuse label keys that ``Entity.key_from_parts`` refuses for events and lookups.

    Raises:
        BadRequestError: a field of a several-field key holds ``KEY_SEPARATOR``.
    """
    if len(key_names) < 2:
        return
    for name in key_names:
        if pc.any(pc.match_substring(_as_text(labels.column(name)), KEY_SEPARATOR)).as_py():
            msg = (
                f"labels: key column {name!r} has a value containing the character U+001F, "
                "which joins the fields of the entity key; remove it from the value"
            )
            raise BadRequestError(msg)


def _as_text(column: pa.ChunkedArray) -> pa.Array:
    if (
        pa.types.is_string(column.type)
        or pa.types.is_large_string(column.type)
        or pa.types.is_integer(column.type)
    ):
        return pc.cast(column, pa.string()).combine_chunks()
    return pa.array([None if v is None else str(v) for v in column.to_pylist()], pa.string())


@dataclass(frozen=True)
class SortedHistory:
    """The events of the labelled entities, sorted by (entity code, event time, arrival)."""

    table: pa.Table
    """The rows, sorted; only the entities that some label row asks for."""
    key: np.ndarray
    """int64 per event: ``code * span + (time rank)``, ascending."""
    event_time: np.ndarray
    label_key: np.ndarray
    """int64 per label row, the same encoding as ``key`` for its entity (``-1``: unknown)."""
    span: int
    time_origin: int
    ranks: np.ndarray | None
    """Sorted distinct times when times are ranked instead of offset (huge time spans)."""

    def encode(self, codes: np.ndarray, times: np.ndarray, *, upper: bool) -> np.ndarray:
        """Search keys for (entity, time): ``upper`` finds past every event at ``time``."""
        if self.ranks is not None:
            if upper:
                offset = np.searchsorted(self.ranks, times, side="right") - 1
            else:
                offset = np.searchsorted(self.ranks, times, side="left")
        else:
            offset = times - self.time_origin
        offset = np.clip(offset, -1, self.span - 1)
        keys: np.ndarray = codes * self.span + offset
        return keys


def _order(key: np.ndarray, seq: np.ndarray) -> np.ndarray:
    """Indexes sorting by (key, seq): a fast unstable sort, then ties re-sorted by seq."""
    order = np.argsort(key)
    sorted_key = key[order]
    tied = np.flatnonzero(sorted_key[1:] == sorted_key[:-1])
    if len(tied):
        positions = np.union1d(tied, tied + 1)
        members = order[positions]
        order[positions] = members[np.lexsort((seq[members], key[members]))]
    return order


def _split_order(key: np.ndarray, seq: np.ndarray, n_codes: int, span: int) -> list[np.ndarray]:
    """``_order`` in one part per core, the parts split by entity code so that they follow
    each other: their concatenation is the whole order."""
    parts = _parts() if len(key) >= _SPLIT_ROWS else 1
    if parts == 1:
        return [_order(key, seq)]
    bounds = [(n_codes * i // parts) * span for i in range(parts + 1)]
    bounds[-1] = np.iinfo(np.int64).max
    members = [np.flatnonzero((key >= lo) & (key < hi)) for lo, hi in itertools.pairwise(bounds)]
    return _each(lambda m: m[_order(key[m], seq[m])], members)


def _match(
    history: pa.Table, key_names: Sequence[str], wanted: pa.Array
) -> tuple[pa.Table, np.ndarray]:
    """The rows of entities in ``wanted`` and their codes (index in ``wanted``)."""

    def part(rows: pa.Table) -> tuple[pa.Table, pa.Array]:
        codes = pc.index_in(entity_keys(rows, key_names), value_set=wanted)
        if codes.null_count:
            keep = pc.is_valid(codes)
            return rows.filter(keep), codes.filter(keep)
        return rows, codes

    n = history.num_rows
    parts = _parts() if n >= _SPLIT_ROWS else 1
    cuts = [n * i // parts for i in range(parts + 1)]
    matched = _each(part, [history.slice(lo, hi - lo) for lo, hi in itertools.pairwise(cuts)])
    rows = pa.concat_tables([m[0] for m in matched])
    codes = np.concatenate([m[1].to_numpy(zero_copy_only=False).astype(np.int64) for m in matched])
    return rows, codes


def sort_history(
    history: pa.Table, key_names: Sequence[str], labels: pa.Table, fields: Sequence[str]
) -> SortedHistory:
    """Keep the events of entities that ``labels`` asks for, sorted for range searches.

    The returned table holds only ``fields``; keys and times live in the numpy arrays.
    """
    check_label_keys(labels, key_names)
    label_entities = entity_keys(labels, key_names)
    wanted = pc.unique(label_entities).drop_null()
    label_codes = pc.index_in(label_entities, value_set=wanted)
    label_codes_np = label_codes.fill_null(-1).to_numpy(zero_copy_only=False).astype(np.int64)
    history, code = _match(
        history.select([*key_names, "event_time_ms", "_partition", "_offset", *fields]),
        key_names,
        wanted,
    )
    e = history.column("event_time_ms").to_numpy().astype(np.int64)
    seq = (
        history.column("_partition").to_numpy().astype(np.int64) << _OFFSET_BITS
    ) | history.column("_offset").to_numpy().astype(np.int64)
    n_codes = max(len(wanted), 1)
    ranks: np.ndarray | None = None
    if len(e):
        origin = int(e.min())
        span = int(e.max()) - origin + 2
    else:
        origin, span = 0, 2
    if n_codes * span >= 2**62:
        # Times spread over more than the int64 key can hold next to the entity code: use
        # their ranks among the event times instead (exact, one more sort).
        ranks = np.unique(e)
        origin, span = 0, len(ranks) + 2
        e_key = np.searchsorted(ranks, e)
    else:
        e_key = e - origin
    key = code * span + e_key
    orders = _split_order(key, seq, n_codes, span)
    values = history.select(list(fields))
    taken = _each(lambda o: values.take(pa.array(o)), orders)
    order = np.concatenate(orders) if len(orders) > 1 else orders[0]
    return SortedHistory(
        table=pa.concat_tables(taken) if len(taken) > 1 else taken[0],
        key=key[order],
        event_time=e[order],
        label_key=label_codes_np,
        span=span,
        time_origin=origin,
        ranks=ranks,
    )


@dataclass(frozen=True)
class WindowRanges:
    """Per label row: ``hi`` (one past the last event at or before ``t``) and, per window
    (``None`` = lifetime), its slice ``[lo, hi)``. Rows whose entity has no event at or before
    ``t``, or whose newest one is older than the TTL, have empty ranges: every aggregation
    then gives its empty-window value."""

    hi: np.ndarray
    lo: dict[WindowSpec | None, np.ndarray]
    ends: dict[WindowSpec | None, np.ndarray]
    """One past the last event of each window: ``hi``, or earlier for an offset window."""


def window_ranges(
    plan: FeatureSetPlan, history: SortedHistory, codes: np.ndarray, times: np.ndarray
) -> WindowRanges:
    """The slices of ``history`` that label rows (entity ``codes``, ``times``) cover.

    Rows sorted by (code, time) make the slices move forward, which keeps ``reduceat``
    linear; any order gives the same values. Window bounds come from
    ``schemas.window_specs.tile_bounds``, as online.
    """
    unknown = codes < 0
    safe_codes = np.where(unknown, 0, codes)
    first = np.searchsorted(history.key, safe_codes * history.span - 1, side="right")
    hi = np.searchsorted(history.key, history.encode(safe_codes, times, upper=True), side="right")
    hi = np.where(unknown, first, hi)
    ttl = plan.feature_set.ttl_ms
    if ttl is not None and len(history.event_time):
        newest = history.event_time[np.maximum(hi - 1, 0)]
        hi = np.where((hi > first) & (newest < times - ttl), first, hi)  # expired: empty
    r = plan.resolution_ms
    lo: dict[WindowSpec | None, np.ndarray] = {}
    ends: dict[WindowSpec | None, np.ndarray] = {}
    k_t = times // r
    for window in plan.by_window:
        if window is None:
            lo[window], ends[window] = first, hi
            continue
        low_tile, high_tile = tile_bounds(window, k_t, r)
        low = np.searchsorted(
            history.key, history.encode(safe_codes, low_tile * r, upper=False), side="left"
        )
        end = hi
        if window[2]:  # an offset: the window ends before the tile of t
            last = (high_tile + 1) * r - 1
            end = np.minimum(
                np.searchsorted(
                    history.key, history.encode(safe_codes, last, upper=True), side="right"
                ),
                hi,
            )
        ends[window] = end
        lo[window] = np.minimum(np.maximum(low, first), end)  # an empty row stays empty
    return WindowRanges(hi=hi, lo=lo, ends=ends)
