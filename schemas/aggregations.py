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

The second group serves fraud, ranking and risk models: ``variance``, ``skew`` and
``kurtosis`` from exact power sums (rational arithmetic, like ``stddev``); ``first_n`` and
``last_distinct_n``; ``top_k`` and ``histogram`` from exact value counts; and the sketches
``approx_percentile`` (DDSketch) and ``approx_count_distinct`` (HyperLogLog) of
``schemas.sketches``, which merge exactly, so they too agree online, offline and with a sketch
built straight from the events. ``count_if`` and ``sum_if`` are ``count`` and ``sum`` of the
events for which the feature's ``where`` condition is true (any function takes ``where``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal, get_args

from headwater.schemas import moments, sketches
from headwater.schemas.partials import (
    NATIVE_KINDS,
    Partial,
    adder,
    merger,
    top_counts,
    value_counts,
)
from headwater.schemas.suggestions import did_you_mean

__all__ = [
    "AGGREGATION_FUNCTIONS",
    "BULKY_FUNCTIONS",
    "DEFAULT_MAX_KEYS",
    "NUMERIC_TYPES",
    "N_FUNCTIONS",
    "AggregationFunction",
    "Aggregator",
    "Spec",
    "State",
    "empty_value",
    "unknown_function",
]

AggregationFunction = Literal[
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
    "variance",
    "skew",
    "kurtosis",
    "first_n",
    "last_distinct_n",
    "top_k",
    "histogram",
    "approx_percentile",
    "approx_count_distinct",
    "count_if",
    "sum_if",
]
AGGREGATION_FUNCTIONS: Final[tuple[str, ...]] = get_args(AggregationFunction)
N_FUNCTIONS: Final[frozenset[str]] = frozenset({"last_n", "first_n", "last_distinct_n"})
"""Functions that keep ``n`` values."""
BULKY_FUNCTIONS: Final[frozenset[str]] = frozenset(
    {"approx_percentile", "approx_count_distinct", "top_k", "histogram"}
)
"""Functions whose state per tile grows with the values seen (sketches, value counts): their
long windows use coarser tiles (``FeatureSet.tile_ms``) so an entity's state stays bounded."""


def unknown_function(function: str) -> str:
    """The message for a feature's function that is not one of ``AGGREGATION_FUNCTIONS``."""
    return (
        f"unknown function {function!r}; expected one of {list(AGGREGATION_FUNCTIONS)}"
        + did_you_mean(function, AGGREGATION_FUNCTIONS)
    )


NUMERIC_TYPES: Final[frozenset[str]] = frozenset({"int", "long", "float", "double", "decimal"})
"""Types ``sum``, ``mean`` and ``stddev`` take; decimals are doubles (``schemas.avro_types``)."""
_INTEGER_TYPES: Final[frozenset[str]] = frozenset({"int", "long"})
DEFAULT_MAX_KEYS: Final = 100
"""The keys a ``histogram`` value holds when its feature does not say (``max_keys``)."""

State = dict[str, Any]
"""Partial states of one tile (or of the lifetime), keyed by partial name."""


@dataclass(frozen=True)
class Spec:
    """What one feature aggregates: the function, its field and parameters, the condition
    column of its ``where`` (computed by ``FeatureSetPlan``) and its tile length when it is
    not the feature set's resolution."""

    function: str
    field: str | None = None
    n: int | None = None
    percentiles: tuple[float, ...] = ()
    accuracy: float | None = None
    precision: int | None = None
    k: int | None = None
    max_keys: int | None = None
    where: str | None = None
    tile_ms: int | None = None


def empty_value(function: str, field_type: str | None) -> Any:
    """The value of ``function`` over an empty window: 0 for counts and sums, an empty list
    (or map) for the list-valued functions, else null."""
    if function in ("count", "count_distinct", "count_if", "approx_count_distinct"):
        return 0
    if function in N_FUNCTIONS or function in ("top_k", "histogram"):
        return []
    if function in ("sum", "sum_if"):
        return 0 if field_type in _INTEGER_TYPES else 0.0
    return None


def _spec(item: Spec | tuple[str, str | None] | tuple[str, str | None, int | None]) -> Spec:
    if isinstance(item, Spec):
        return item
    return Spec(item[0], item[1], item[2] if len(item) > 2 else None)


class Aggregator:
    """Compiled aggregation plan of one feature set: which partials to keep, how to finish.

    Args:
        functions: one ``Spec`` (or ``(function, field[, n])``) per feature, in feature order.
        field_types: Avro primitive type of each field used, to keep integer sums exact ints.
    """

    def __init__(
        self,
        functions: Sequence[Spec | tuple[str, str | None] | tuple[str, str | None, int | None]],
        field_types: Mapping[str, str],
    ) -> None:
        self._specs = tuple(_spec(f) for f in functions)
        self._field_types = dict(field_types)
        partials: dict[str, Partial] = {}
        self._needs: list[tuple[str, ...]] = []
        for spec in self._specs:
            needed = [
                partials.setdefault(p.key, p)
                for p in (
                    Partial(p.kind, p.field, p.n, p.param, spec.where, spec.tile_ms)
                    for p in self._partials_of(spec)
                )
            ]
            self._needs.append(tuple(p.key for p in needed))
        self._partials = tuple(partials.values())
        self._adders = self._adders_of(None)
        self.grids: tuple[int, ...] = tuple(
            sorted({p.tile_ms for p in self._partials if p.tile_ms is not None})
        )
        """Tile lengths of the coarse partials (``FeatureSetPlan.fold`` places them)."""
        self._grid_adders = {tile: self._adders_of(tile) for tile in self.grids}
        self._mergers = tuple((p.key, *merger(p.kind, p.n, p.param)) for p in self._partials)

    def _adders_of(
        self, tile_ms: int | None
    ) -> tuple[tuple[str, str | None, str | None, Any], ...]:
        return tuple(
            (p.key, p.field, p.where, adder(p.kind, p.n, p.param))
            for p in self._partials
            if p.tile_ms == tile_ms
        )

    def _partials_of(self, spec: Spec) -> list[Partial]:
        function, field, n = spec.function, spec.field, spec.n
        if field is None:
            if function not in ("count", "count_if"):
                msg = f"function {function!r} needs a field"
                raise ValueError(msg)
            return [Partial("n", None)]
        integer = self._field_types.get(field) in _INTEGER_TYPES
        total = Partial("isum" if integer else "fsum", field)
        squares = Partial("qsum", field)
        match function:
            case "count" | "count_if":
                return [Partial("nn", field)]
            case "sum" | "sum_if":
                return [total]
            case "mean":
                return [Partial("nn", field), total]
            case "min" | "max" | "last" | "first":
                return [Partial(function, field)]
            case "stddev" | "variance":
                return [Partial("nn", field), total, squares]
            case "skew":
                return [Partial("nn", field), total, squares, Partial("csum", field)]
            case "kurtosis":
                cubes, fourth = Partial("csum", field), Partial("q4sum", field)
                return [Partial("nn", field), total, squares, cubes, fourth]
            case "count_distinct":
                return [Partial("distinct", field)]
            case "top_k" | "histogram":
                return [Partial("counts", field)]
            case "approx_percentile":
                accuracy = spec.accuracy or sketches.DEFAULT_ACCURACY
                return [Partial("dd", field, param=repr(float(accuracy)))]
            case "approx_count_distinct":
                precision = spec.precision or sketches.DEFAULT_PRECISION
                return [Partial("hll", field, param=str(precision))]
            case "last_n" | "first_n" | "last_distinct_n":
                if not n or n < 1:
                    msg = f"{function} needs n >= 1, e.g. {{function: {function}, field: merchant_id, n: 5}}"
                    raise ValueError(msg)
                kind = {"last_n": "lastn", "first_n": "firstn", "last_distinct_n": "lastdn"}
                return [Partial(kind[function], field, n)]
        raise ValueError(unknown_function(function))

    def native_adders(self, fields: Sequence[str]) -> list[tuple[str, int, str]] | None:
        """The partials as the native fold takes them (``headwater_native.TileFolder``):
        ``(key, index of the field in fields or -1 for the event itself, kind)``; ``None``
        when some partial has only the Python fold (exact powers, sets, lists, sketches,
        conditions, coarse tiles)."""
        if any(
            p.kind not in NATIVE_KINDS or p.where is not None or p.tile_ms is not None
            for p in self._partials
        ):
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
        """The event fields (and condition columns) the partials read, in a stable order."""
        read = [p.field for p in self._partials] + [p.where for p in self._partials]
        return tuple(dict.fromkeys(f for f in read if f is not None))

    def add(
        self, state: State, row: Mapping[str, Any], e: int, seq: int, tile_ms: int | None = None
    ) -> State:
        """Fold one event (event time ``e`` ms, arrival order ``seq``) into ``state`` in place:
        the partials of the set's tiles, or of the coarse tiles of ``tile_ms``."""
        get = state.get
        adders = self._adders if tile_ms is None else self._grid_adders[tile_ms]
        for key, field, where, add in adders:
            if where is not None and row.get(where) is not True:
                continue
            value = row if field is None else row.get(field)
            if value is not None:
                state[key] = add(get(key), value, e, seq)
        return state

    def add_both(
        self, first: State, second: State, row: Mapping[str, Any], e: int, seq: int
    ) -> None:
        """``add`` into two states (an event's tile and the lifetime) in one pass."""
        for key, field, where, add in self._adders:
            if where is not None and row.get(where) is not True:
                continue
            value = row if field is None else row.get(field)
            if value is not None:
                first[key] = add(first.get(key), value, e, seq)
                second[key] = add(second.get(key), value, e, seq)

    def merge(self, into: State, other: Mapping[str, Any]) -> State:
        """Merge ``other`` into the accumulator ``into`` in place; merging is associative and
        commutative. ``into`` must be a state built only by ``merge`` (start from ``{}``): its
        partials may be grown in place, ``other``'s are never changed."""
        for key, merge, own in self._mergers:
            b = other.get(key)
            if b is not None:
                a = into.get(key)
                if a is None:
                    into[key] = b if own is None else own(b)
                else:
                    into[key] = merge(a, b)
        return into

    def finalize(self, index: int, state: Mapping[str, Any]) -> Any:
        """The value of feature ``index`` from merged ``state`` (empty-window rules applied)."""
        spec = self._specs[index]
        function = spec.function
        needs = self._needs[index]
        field_type = self._field_types.get(spec.field) if spec.field else None
        first = state.get(needs[0])
        if first is None:
            return empty_value(function, field_type)
        match function:
            case "count" | "count_if" | "min" | "max":
                return first
            case "count_distinct":
                return len(first)
            case "last_n" | "first_n" | "last_distinct_n":
                return [item[2] for item in first]
            case "stddev" | "variance":
                exact = moments.variance(
                    first,
                    moments.as_fraction(state.get(needs[1])),
                    moments.as_fraction(state.get(needs[2])),
                )
                if function == "variance" or exact is None:
                    return exact
                return math.sqrt(exact)
            case "skew" | "kurtosis":
                sums = [moments.as_fraction(state.get(key)) for key in needs[1:]]
                return (moments.skew if function == "skew" else moments.kurtosis)(first, sums)
            case "sum" | "sum_if":
                return math.fsum(first) if isinstance(first, list) else first
            case "mean":
                total = state[needs[1]]
                exact_total = math.fsum(total) if isinstance(total, list) else total
                return exact_total / first
            case "top_k":
                assert spec.k is not None
                counts = value_counts(first)
                return [{"value": v, "count": c} for v, c in top_counts(counts, spec.k)]
            case "histogram":
                kept = top_counts(value_counts(first), spec.max_keys or DEFAULT_MAX_KEYS)
                return [{"value": v, "count": c} for v, c in sorted(kept, key=lambda i: i[0])]
            case "approx_percentile":
                accuracy = spec.accuracy or sketches.DEFAULT_ACCURACY
                return sketches.dd_quantiles(first, spec.percentiles, accuracy)
            case "approx_count_distinct":
                return sketches.hll_estimate(first, spec.precision or sketches.DEFAULT_PRECISION)
            case _:  # last, first
                return first[2]
