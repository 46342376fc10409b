"""The partial states kept per tile: one kind per piece of state, each with its fold of one
event (``adder``) and its merge of two states (``merger``).

``schemas.aggregations`` decides which partials a feature needs and how to finish a value
from them; this module owns how each partial grows and merges. Every merge is associative
and commutative and never changes its inputs (a lookup merges the tiles of a stored state
into a fresh one), so a window's merged partial is the partial of its events, whatever the
order in which they arrived or were grouped into tiles.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction
from typing import Any, Final

from headwater.schemas import moments, sketches

__all__ = ["NATIVE_KINDS", "Partial", "adder", "merger", "top_counts", "value_counts"]

NATIVE_KINDS: Final = frozenset({"n", "nn", "isum", "fsum", "min", "max", "last", "first"})
"""Partial kinds whose fold the native extension does too (``native/src/fold.rs``)."""


def _grow(partials: list[float], x: float) -> list[float]:
    """Add ``x`` to Shewchuk's non-overlapping partials, keeping the sum exact."""
    i = 0
    for y in partials:
        if abs(x) < abs(y):
            x, y = y, x
        hi = x + y
        lo = y - (hi - x)
        if lo:
            partials[i] = lo
            i += 1
        x = hi
    del partials[i:]
    partials.append(x)
    return partials


@dataclass(frozen=True)
class Partial:
    """One partial state kept per tile: ``kind`` over ``field`` (``None`` = the event itself).

    ``n`` is the list length of ``last_n``-like partials; ``param`` the sketch parameter;
    ``where`` the condition column an event must have true; ``tile_ms`` the tile length of a
    coarse partial (``None``: the set's). Each goes into the key, so partials differing in
    any of them never share state.
    """

    kind: str
    field: str | None
    n: int = 0
    param: str = ""
    where: str | None = None
    tile_ms: int | None = None

    @property
    def key(self) -> str:
        kind = f"{self.kind}{self.n}" if self.n else f"{self.kind}{self.param}"
        key = kind if self.field is None else f"{kind}:{self.field}"
        if self.where is not None:
            key += f"?{self.where}"
        if self.tile_ms is not None:
            key += f"@{self.tile_ms}"
        return key


def _newest(items: list[list[Any]], n: int) -> list[list[Any]]:
    """The ``n`` newest ``[e, seq, value]`` items, newest first."""
    return sorted(items, key=lambda item: (item[0], item[1]), reverse=True)[:n]


def _oldest(items: list[list[Any]], n: int) -> list[list[Any]]:
    """The ``n`` oldest ``[e, seq, value]`` items, oldest first."""
    return sorted(items, key=lambda item: (item[0], item[1]))[:n]


def _newest_distinct(items: list[list[Any]], n: int) -> list[list[Any]]:
    """The newest occurrence of each value, for the ``n`` values seen most recently, newest
    first. Exactly mergeable: a value among the ``n`` newest of a union is among the ``n``
    newest of the part holding its newest occurrence."""
    kept: list[list[Any]] = []
    seen: set[Any] = set()
    for item in _newest(items, len(items)):
        value = _hashable(item[2])
        if value not in seen:
            seen.add(value)
            kept.append(item)
            if len(kept) == n:
                break
    return kept


def _hashable(value: Any) -> Any:
    return tuple(map(_hashable, value)) if isinstance(value, list) else value


def _count_into(counts: list[list[Any]] | None, other: list[list[Any]]) -> list[list[Any]]:
    """Exact value counts ``[[value, count], ...]`` of both, sorted by value."""
    total: dict[Any, int] = {v: c for v, c in counts} if counts else {}
    for v, c in other:
        total[v] = total.get(v, 0) + c
    return [[v, c] for v, c in sorted(total.items(), key=lambda item: item[0])]


def _add(kind: str, state: Any, value: Any, e: int, seq: int, n: int = 0, param: str = "") -> Any:
    if kind in ("n", "nn", "isum"):
        return (state or 0) + (1 if kind != "isum" else value)
    if kind == "fsum":
        return _grow(list(state) if state else [], float(value))
    if kind == "min":
        return value if state is None or value < state else state
    if kind == "max":
        return value if state is None or value > state else state
    if kind == "last":
        return [e, seq, value] if state is None or (e, seq) >= (state[0], state[1]) else state
    if kind == "first":
        return [e, seq, value] if state is None or (e, seq) < (state[0], state[1]) else state
    if kind in ("qsum", "csum", "q4sum"):
        power = {"qsum": 2, "csum": 3, "q4sum": 4}[kind]
        return moments.text_of(moments.as_fraction(state) + Fraction(value) ** power)
    if kind == "distinct":
        return sorted({*(state or ()), value})
    if kind == "lastn":
        return _newest([*(state or ()), [e, seq, value]], n)
    if kind == "firstn":
        return _oldest([*(state or ()), [e, seq, value]], n)
    if kind == "lastdn":
        return _newest_distinct([*(state or ()), [e, seq, value]], n)
    if kind == "counts":
        if isinstance(value, float) and math.isnan(value):
            return state  # NaN equals nothing, itself included: it has no count
        return _count_into(state, [[value, 1]])
    if kind == "dd":
        return sketches.dd_add(state, value, float(param))
    if kind == "hll":
        return sketches.hll_add(state, value, int(param))
    msg = f"unknown partial kind {kind!r}"
    raise AssertionError(msg)


def adder(kind: str, n: int, param: str) -> Any:
    """A function ``(state, value, e, seq) -> state`` for one partial kind.

    Specialised per kind because this runs once per event and partial: the hot loop of a
    worker. Each must agree with ``_add`` (the unit tests check both against brute force).
    """
    if kind in ("n", "nn"):
        return lambda state, value, e, seq: 1 if state is None else state + 1
    if kind == "isum":
        return lambda state, value, e, seq: value if state is None else state + value
    if kind == "fsum":
        return lambda state, value, e, seq: _grow(list(state) if state else [], float(value))
    if kind == "last":
        return lambda state, value, e, seq: (
            [e, seq, value] if state is None or (e, seq) >= (state[0], state[1]) else state
        )
    if kind == "min":
        return lambda state, value, e, seq: value if state is None or value < state else state
    if kind == "max":
        return lambda state, value, e, seq: value if state is None or value > state else state
    return lambda state, value, e, seq: _add(kind, state, value, e, seq, n, param)


def merger(kind: str, n: int, param: str) -> tuple[Any, Any]:
    """``(merge, own)`` for one partial kind: ``merge(a, b)`` gives the merged state of two
    present states; ``own(b)`` (``None`` when states are immutable values) copies a stored
    state into an accumulator that ``merge`` may then grow in place.

    Specialised per kind because lookups merge every tile of every window: the hot loop of
    serving. Merging is associative and commutative and never changes ``b``; it changes
    ``a`` only when ``a`` came from ``own`` (an accumulator never stored). Accumulators may
    take another form than stored states (a set, a dict of counts, an exact ``Fraction``):
    ``Aggregator.finalize`` reads both.
    """
    if kind in ("n", "nn", "isum"):
        return (lambda a, b: a + b), None
    if kind == "fsum":
        # The exact partials concatenated: finalize's math.fsum rounds the exact total once,
        # so there is no need to re-normalise them on every merge.
        return _extend, list
    if kind == "min":
        return min, None
    if kind == "max":
        return max, None
    if kind == "last":
        return (lambda a, b: a if (a[0], a[1]) >= (b[0], b[1]) else b), None
    if kind == "first":
        return (lambda a, b: a if (a[0], a[1]) <= (b[0], b[1]) else b), None
    if kind in ("qsum", "csum", "q4sum"):
        return moments.add_dyadic, moments.dyadic
    if kind == "distinct":
        return _update, set
    if kind == "lastn":
        return (lambda a, b: _newest([*a, *b], n)), None
    if kind == "firstn":
        return (lambda a, b: _oldest([*a, *b], n)), None
    if kind == "lastdn":
        return (lambda a, b: _newest_distinct([*a, *b], n)), None
    if kind == "counts":
        return _add_counts, _count_dict
    if kind == "dd":
        return sketches.dd_merge_into, dict
    if kind == "hll":
        return sketches.hll_merge_into, dict
    msg = f"unknown partial kind {kind!r}"
    raise AssertionError(msg)


def _extend(a: list[float], b: list[float]) -> list[float]:
    a.extend(b)
    return a


def _update(a: set[Any], b: list[Any]) -> set[Any]:
    a.update(b)
    return a


def _count_dict(b: list[list[Any]] | dict[Any, int]) -> dict[Any, int]:
    return dict(b) if isinstance(b, dict) else {v: c for v, c in b}


def _add_counts(a: dict[Any, int], b: list[list[Any]] | dict[Any, int]) -> dict[Any, int]:
    for v, c in b.items() if isinstance(b, dict) else b:
        a[v] = a.get(v, 0) + c
    return a


def value_counts(state: list[list[Any]] | dict[Any, int]) -> list[list[Any]]:
    """``[[value, count], ...]`` sorted by value, from a stored or accumulated state."""
    if isinstance(state, dict):
        return [[v, c] for v, c in sorted(state.items(), key=lambda item: item[0])]
    return state


def top_counts(counts: list[list[Any]], k: int) -> list[list[Any]]:
    """The ``k`` most frequent ``[value, count]``, most frequent first, equal counts by value."""
    return sorted(counts, key=lambda item: -item[1])[:k]
