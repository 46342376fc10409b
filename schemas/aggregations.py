"""Mergeable partial states of the aggregation functions.

A feature's value over a window is computed by merging per-tile partial states. The same
code builds and merges states online (stream worker, serving) and offline (point-in-time
retrieval), so the two agree by construction. Float sums keep Shewchuk's exact partials, so
a sum is the correctly rounded sum of its events whatever the merge order: online, offline
and a brute-force ``math.fsum`` give the same bits.

States are plain JSON values (ints, floats, lists) because they are stored in Redis as is.
Null values are skipped by every function except ``count`` without a field, which counts
events.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal

__all__ = [
    "AGGREGATION_FUNCTIONS",
    "NUMERIC_TYPES",
    "Aggregator",
    "AggregationFunction",
    "State",
    "empty_value",
]

AggregationFunction = Literal["count", "sum", "mean", "min", "max", "last", "first"]
AGGREGATION_FUNCTIONS: Final[tuple[str, ...]] = (
    "count",
    "sum",
    "mean",
    "min",
    "max",
    "last",
    "first",
)
NUMERIC_TYPES: Final[frozenset[str]] = frozenset({"int", "long", "float", "double"})
_INTEGER_TYPES: Final[frozenset[str]] = frozenset({"int", "long"})

State = dict[str, Any]
"""Partial states of one tile (or of the lifetime), keyed by partial name."""


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
class _Partial:
    """One partial state kept per tile: ``kind`` over ``field`` (``None`` = the event itself)."""

    kind: str
    field: str | None

    @property
    def key(self) -> str:
        return self.kind if self.field is None else f"{self.kind}:{self.field}"


def _add(kind: str, state: Any, value: Any, e: int, seq: int) -> Any:
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
    msg = f"unknown partial kind {kind!r}"
    raise AssertionError(msg)


def _merge(kind: str, a: Any, b: Any) -> Any:
    if a is None:
        return b
    if b is None:
        return a
    if kind in ("n", "nn", "isum"):
        return a + b
    if kind == "fsum":
        merged = list(a)
        for x in b:
            _grow(merged, x)
        return merged
    if kind == "min":
        return min(a, b)
    if kind == "max":
        return max(a, b)
    if kind == "last":
        return a if (a[0], a[1]) >= (b[0], b[1]) else b
    if kind == "first":
        return a if (a[0], a[1]) <= (b[0], b[1]) else b
    msg = f"unknown partial kind {kind!r}"
    raise AssertionError(msg)


def empty_value(function: str, field_type: str | None) -> Any:
    """The value of ``function`` over an empty window: 0 for count and sum, else null."""
    if function == "count":
        return 0
    if function == "sum":
        return 0 if field_type in _INTEGER_TYPES else 0.0
    return None


class Aggregator:
    """Compiled aggregation plan of one feature set: which partials to keep, how to finish.

    Args:
        functions: one ``(function, field)`` pair per feature, in feature order.
        field_types: Avro primitive type of each field used, to keep integer sums exact ints.
    """

    def __init__(
        self, functions: Sequence[tuple[str, str | None]], field_types: Mapping[str, str]
    ) -> None:
        self._functions = tuple(functions)
        self._field_types = dict(field_types)
        partials: dict[str, _Partial] = {}
        self._needs: list[tuple[str, ...]] = []
        for function, field in self._functions:
            needed = [partials.setdefault(p.key, p) for p in self._partials_of(function, field)]
            self._needs.append(tuple(p.key for p in needed))
        self._partials = tuple(partials.values())

    def _partials_of(self, function: str, field: str | None) -> list[_Partial]:
        if field is None:
            if function != "count":
                msg = f"function {function!r} needs a field"
                raise ValueError(msg)
            return [_Partial("n", None)]
        integer = self._field_types.get(field) in _INTEGER_TYPES
        total = _Partial("isum" if integer else "fsum", field)
        match function:
            case "count":
                return [_Partial("nn", field)]
            case "sum":
                return [total]
            case "mean":
                return [_Partial("nn", field), total]
            case "min" | "max" | "last" | "first":
                return [_Partial(function, field)]
        msg = f"unknown aggregation function {function!r}; expected one of {AGGREGATION_FUNCTIONS}"
        raise ValueError(msg)

    @property
    def partial_keys(self) -> frozenset[str]:
        """Names of the partial states kept per tile; equal keys mean reusable state."""
        return frozenset(p.key for p in self._partials)

    @property
    def fields(self) -> tuple[str, ...]:
        """The event fields the partials read, in a stable order."""
        return tuple(dict.fromkeys(p.field for p in self._partials if p.field is not None))

    def add(self, state: State, row: Mapping[str, Any], e: int, seq: int) -> State:
        """Fold one event (event time ``e`` ms, arrival order ``seq``) into ``state`` in place."""
        for p in self._partials:
            value = row if p.field is None else row.get(p.field)
            if value is None:
                continue
            state[p.key] = _add(p.kind, state.get(p.key), value, e, seq)
        return state

    def merge(self, into: State, other: Mapping[str, Any]) -> State:
        """Merge ``other`` into ``into`` in place; merging is associative and commutative."""
        for p in self._partials:
            b = other.get(p.key)
            if b is not None:
                into[p.key] = _merge(p.kind, into.get(p.key), b)
        return into

    def finalize(self, index: int, state: Mapping[str, Any]) -> Any:
        """The value of feature ``index`` from merged ``state`` (empty-window rules applied)."""
        function, field = self._functions[index]
        needs = self._needs[index]
        field_type = self._field_types.get(field) if field else None
        first = state.get(needs[0])
        if first is None:
            return empty_value(function, field_type)
        match function:
            case "count" | "min" | "max":
                return first
            case "sum":
                return math.fsum(first) if isinstance(first, list) else first
            case "mean":
                total = state[needs[1]]
                exact = math.fsum(total) if isinstance(total, list) else total
                return exact / first
            case _:  # last, first
                return first[2]
