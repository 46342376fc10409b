"""Mergeable partial states of the aggregation functions.

A feature's value over a window is computed by merging per-tile partial states. The same
code builds and merges states online (stream worker, serving) and offline (point-in-time
retrieval), so the two agree by construction. Float sums keep Shewchuk's exact partials, so
a sum is the correctly rounded sum of its events whatever the merge order: online, offline
and a brute-force ``math.fsum`` give the same bits.

States are plain JSON values (ints, floats, lists) because they are stored in Redis as is.
Null values are skipped by every function except ``count`` without a field, which counts
events. ``stddev`` is the sample standard deviation (null below two values);
``count_distinct`` is exact (the distinct values are kept per tile); ``last_n`` gives the
``n`` newest values, newest first, ties in event time by arrival order.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Any, Final, Literal

from headwater.schemas.suggestions import did_you_mean

__all__ = [
    "AGGREGATION_FUNCTIONS",
    "NUMERIC_TYPES",
    "AggregationFunction",
    "Aggregator",
    "State",
    "empty_value",
    "unknown_function",
]

AggregationFunction = Literal[
    "count", "sum", "mean", "min", "max", "last", "first", "stddev", "count_distinct", "last_n"
]
AGGREGATION_FUNCTIONS: Final[tuple[str, ...]] = (
    "count",
    "sum",
    "mean",
    "min",
    "max",
    "last",
    "first",
    "stddev",
    "count_distinct",
    "last_n",
)


def unknown_function(function: str) -> str:
    """The message for a feature's function that is not one of ``AGGREGATION_FUNCTIONS``."""
    return (
        f"unknown function {function!r}; expected one of {list(AGGREGATION_FUNCTIONS)}"
        + did_you_mean(function, AGGREGATION_FUNCTIONS)
    )


NUMERIC_TYPES: Final[frozenset[str]] = frozenset({"int", "long", "float", "double", "decimal"})
"""Types ``sum``, ``mean`` and ``stddev`` take; decimals are doubles (``schemas.avro_types``)."""
_INTEGER_TYPES: Final[frozenset[str]] = frozenset({"int", "long"})

_NATIVE_KINDS: Final = frozenset({"n", "nn", "isum", "fsum", "min", "max", "last", "first"})
"""Partial kinds whose fold the native extension does too (``native/src/fold.rs``)."""

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


def _to_fraction(state: list[str] | None) -> Fraction:
    return Fraction(int(state[0]), int(state[1])) if state else Fraction(0)


def _from_fraction(value: Fraction) -> list[str]:
    # Text, not JSON numbers: the numerator of an exact sum of squares outgrows 64 bits.
    return [str(value.numerator), str(value.denominator)]


@dataclass(frozen=True)
class _Partial:
    """One partial state kept per tile: ``kind`` over ``field`` (``None`` = the event itself).

    ``n`` is the list length of ``last_n`` partials.
    """

    kind: str
    field: str | None
    n: int = 0

    @property
    def key(self) -> str:
        kind = f"{self.kind}{self.n}" if self.n else self.kind
        return kind if self.field is None else f"{kind}:{self.field}"


def _newest(items: list[list[Any]], n: int) -> list[list[Any]]:
    """The ``n`` newest ``[e, seq, value]`` items, newest first."""
    return sorted(items, key=lambda item: (item[0], item[1]), reverse=True)[:n]


def _add(kind: str, state: Any, value: Any, e: int, seq: int, n: int = 0) -> Any:
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
    if kind == "qsum":
        return _from_fraction(_to_fraction(state) + Fraction(value) ** 2)
    if kind == "distinct":
        return sorted({*(state or ()), value})
    if kind == "lastn":
        return _newest([*(state or ()), [e, seq, value]], n)
    msg = f"unknown partial kind {kind!r}"
    raise AssertionError(msg)


def _adder(kind: str, n: int) -> Any:
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
    return lambda state, value, e, seq: _add(kind, state, value, e, seq, n)


def _merger(kind: str, n: int) -> Any:
    """A function ``(a, b) -> merged`` for two present states of one partial kind.

    Specialised per kind because lookups merge every tile of every window: the hot loop of
    serving. Merging is associative and commutative.
    """
    if kind in ("n", "nn", "isum", "fsum"):
        # For fsum, a + b concatenates the exact partials: finalize's math.fsum rounds the
        # exact total once, so there is no need to re-normalise them on every merge.
        return lambda a, b: a + b
    if kind == "min":
        return min
    if kind == "max":
        return max
    if kind == "last":
        return lambda a, b: a if (a[0], a[1]) >= (b[0], b[1]) else b
    if kind == "first":
        return lambda a, b: a if (a[0], a[1]) <= (b[0], b[1]) else b
    if kind == "qsum":
        return lambda a, b: _from_fraction(_to_fraction(a) + _to_fraction(b))
    if kind == "distinct":
        return lambda a, b: sorted({*a, *b})
    if kind == "lastn":
        return lambda a, b: _newest([*a, *b], n)
    msg = f"unknown partial kind {kind!r}"
    raise AssertionError(msg)


def _sample_stddev(n: int, total: Any, squares: list[str] | None) -> float | None:
    """Sample standard deviation from exact sums: sqrt of the correctly rounded variance.

    The variance ``(sum(x^2) - sum(x)^2 / n) / (n - 1)`` is computed in exact rational
    arithmetic (the partials hold exact sums), so it is the same whatever the order or
    grouping of the events; cancellation cannot creep in.
    """
    if n < 2:
        return None
    exact_total = (
        sum((Fraction(p) for p in total), Fraction(0))
        if isinstance(total, list)
        else Fraction(total)
    )
    variance = (_to_fraction(squares) - exact_total * exact_total / n) / (n - 1)
    return math.sqrt(float(variance))


def empty_value(function: str, field_type: str | None) -> Any:
    """The value of ``function`` over an empty window: 0 for count, count_distinct and sum,
    an empty list for last_n, else null."""
    if function in ("count", "count_distinct"):
        return 0
    if function == "last_n":
        return []
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
        self,
        functions: Sequence[tuple[str, str | None] | tuple[str, str | None, int | None]],
        field_types: Mapping[str, str],
    ) -> None:
        self._functions = tuple((f[0], f[1], f[2] if len(f) > 2 else None) for f in functions)
        self._field_types = dict(field_types)
        partials: dict[str, _Partial] = {}
        self._needs: list[tuple[str, ...]] = []
        for function, field, n in self._functions:
            needed = [partials.setdefault(p.key, p) for p in self._partials_of(function, field, n)]
            self._needs.append(tuple(p.key for p in needed))
        self._partials = tuple(partials.values())
        self._adders = tuple((p.key, p.field, _adder(p.kind, p.n)) for p in self._partials)
        self._mergers = tuple((p.key, _merger(p.kind, p.n)) for p in self._partials)

    def _partials_of(
        self, function: str, field: str | None, n: int | None = None
    ) -> list[_Partial]:
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
            case "stddev":
                return [_Partial("nn", field), total, _Partial("qsum", field)]
            case "count_distinct":
                return [_Partial("distinct", field)]
            case "last_n":
                if not n or n < 1:
                    msg = "last_n needs n >= 1, e.g. {function: last_n, field: merchant_id, n: 5}"
                    raise ValueError(msg)
                return [_Partial("lastn", field, n)]
        raise ValueError(unknown_function(function))

    def native_adders(self, fields: Sequence[str]) -> list[tuple[str, int, str]] | None:
        """The partials as the native fold takes them (``headwater_native.TileFolder``):
        ``(key, index of the field in fields or -1 for the event itself, kind)``; ``None``
        when some kind has only the Python fold (exact squares, distinct sets, last_n)."""
        if any(p.kind not in _NATIVE_KINDS for p in self._partials):
            return None
        return [
            (p.key, -1 if p.field is None else fields.index(p.field), p.kind)
            for p in self._partials
        ]

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
        get = state.get
        for key, field, add in self._adders:
            value = row if field is None else row.get(field)
            if value is not None:
                state[key] = add(get(key), value, e, seq)
        return state

    def add_both(
        self, first: State, second: State, row: Mapping[str, Any], e: int, seq: int
    ) -> None:
        """``add`` into two states (an event's tile and the lifetime) in one pass."""
        for key, field, add in self._adders:
            value = row if field is None else row.get(field)
            if value is not None:
                first[key] = add(first.get(key), value, e, seq)
                second[key] = add(second.get(key), value, e, seq)

    def merge(self, into: State, other: Mapping[str, Any]) -> State:
        """Merge ``other`` into ``into`` in place; merging is associative and commutative."""
        for key, merge in self._mergers:
            b = other.get(key)
            if b is not None:
                a = into.get(key)
                into[key] = b if a is None else merge(a, b)
        return into

    def finalize(self, index: int, state: Mapping[str, Any]) -> Any:
        """The value of feature ``index`` from merged ``state`` (empty-window rules applied)."""
        function, field, _ = self._functions[index]
        needs = self._needs[index]
        field_type = self._field_types.get(field) if field else None
        first = state.get(needs[0])
        if first is None:
            return empty_value(function, field_type)
        match function:
            case "count" | "min" | "max":
                return first
            case "count_distinct":
                return len(first)
            case "last_n":
                return [item[2] for item in first]
            case "stddev":
                return _sample_stddev(first, state[needs[1]], state.get(needs[2]))
            case "sum":
                return math.fsum(first) if isinstance(first, list) else first
            case "mean":
                total = state[needs[1]]
                exact = math.fsum(total) if isinstance(total, list) else total
                return exact / first
            case _:  # last, first
                return first[2]
