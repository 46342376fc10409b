"""The value-hungry aggregations over slices ``[a, b)`` of a non-null value column.

Higher moments, first/last-distinct lists, value counts and sketches cannot be read off
prefix sums, so each slice is walked. Every one finishes with the very function the online
path finishes with (``schemas.moments``, ``schemas.partials.top_counts``,
``schemas.sketches``), from the same exact sums, counts, bins or registers that merging the
window's tiles gives, so a training set holds the bits a model sees online. The slices come
from an entity-sorted history (event time, then arrival), so "first" and "newest" are the
online order too.
"""

from __future__ import annotations

import math
from collections import Counter
from fractions import Fraction
from typing import Any

import numpy as np

from headwater.schemas import moments, sketches
from headwater.schemas.aggregations import DEFAULT_MAX_KEYS
from headwater.schemas.definitions import Feature
from headwater.schemas.partials import top_counts

__all__ = ["SLICED_FUNCTIONS", "power_sums", "slice_values"]

SLICED_FUNCTIONS = frozenset(
    {"variance", "skew", "kurtosis", "first_n", "last_distinct_n", "top_k", "histogram"}
    | {"approx_percentile", "approx_count_distinct"}
)
"""The functions ``slice_values`` computes (the others have vectorised forms)."""


def _exact_scaled(values: np.ndarray, integer: bool) -> tuple[list[int], int]:
    """Each value as an integer times ``2**shift`` (exact), for rational arithmetic."""
    if integer:
        return [int(v) for v in values.tolist()], 0
    mantissa, exponent = np.frexp(values.astype(np.float64))
    m = (mantissa * 2.0**53).astype(np.int64)
    e = exponent.astype(np.int64) - 53
    nonzero = m != 0
    shift = int(e[nonzero].min()) if nonzero.any() else 0
    scaled = [
        int(mi) << int(ei - shift) if mi else 0
        for mi, ei in zip(m.tolist(), e.tolist(), strict=True)
    ]
    return scaled, shift


def power_sums(
    values: np.ndarray, integer: bool, a: np.ndarray, b: np.ndarray, powers: int
) -> list[list[Fraction]]:
    """Per slice, the exact ``sum(x**k)`` for k = 1..``powers``."""
    scaled, shift = _exact_scaled(values, integer)
    columns = [scaled]
    for _ in range(powers - 1):
        columns.append([x * s for x, s in zip(columns[-1], scaled, strict=True)])
    scale = [Fraction(2) ** (shift * k) for k in range(1, powers + 1)]
    return [
        [sum(column[i:j]) * scale[k] for k, column in enumerate(columns)]
        for i, j in zip(a.tolist(), b.tolist(), strict=True)
    ]


def _moment(feature: Feature, n: int, sums: list[Fraction]) -> float | None:
    if feature.function == "variance":
        return moments.variance(n, sums[0], sums[1])
    if feature.function == "skew":
        return moments.skew(n, sums)
    return moments.kurtosis(n, sums)


def _last_distinct(values: list[Any], i: int, j: int, n: int) -> list[Any]:
    kept: list[Any] = []
    seen: set[Any] = set()
    for position in range(j - 1, i - 1, -1):
        value = values[position]
        key = tuple(value) if isinstance(value, list) else value
        if key not in seen:
            seen.add(key)
            kept.append(value)
            if len(kept) == n:
                break
    return kept


def _counts(values: list[Any]) -> list[list[Any]]:
    """Exact value counts sorted by value, NaN skipped (it equals nothing, itself included)."""
    counted = Counter(v for v in values if not (isinstance(v, float) and math.isnan(v)))
    return [[v, c] for v, c in sorted(counted.items(), key=lambda item: item[0])]


def _registers(values: list[Any]) -> dict[str, int]:
    state: dict[str, int] = {}
    for index, rank in values:
        if state.get(index, 0) < rank:
            state[index] = rank
    return state


def slice_values(
    feature: Feature,
    values: list[Any],
    numbers: np.ndarray | None,
    integer: bool,
    a: np.ndarray,
    b: np.ndarray,
) -> list[Any]:
    """``feature``'s function over every slice ``[a, b)`` of ``values`` (non-null, in
    history order; ``numbers`` is the same column as numpy, for the moments)."""
    bounds = list(zip(a.tolist(), b.tolist(), strict=True))
    f = feature.function
    if f in ("variance", "skew", "kurtosis"):
        assert numbers is not None
        powers = {"variance": 2, "skew": 3, "kurtosis": 4}[f]
        sums = power_sums(numbers, integer, a, b, powers)
        return [_moment(feature, j - i, s) for (i, j), s in zip(bounds, sums, strict=True)]
    if f == "first_n":
        assert feature.n is not None
        return [values[i : min(j, i + feature.n)] for i, j in bounds]
    if f == "last_distinct_n":
        assert feature.n is not None
        return [_last_distinct(values, i, j, feature.n) for i, j in bounds]
    if f in ("top_k", "histogram"):
        out = []
        for i, j in bounds:
            counts = _counts(values[i:j])
            if f == "top_k":
                assert feature.k is not None
                kept = top_counts(counts, feature.k)
            else:
                kept = sorted(
                    top_counts(counts, feature.max_keys or DEFAULT_MAX_KEYS), key=lambda c: c[0]
                )
            out.append([{"value": v, "count": c} for v, c in kept])
        return out
    if f == "approx_percentile":
        accuracy = feature.accuracy or sketches.DEFAULT_ACCURACY
        names = sketches.dd_bin_names(values, accuracy)
        quantiles = []
        for i, j in bounds:
            state = sketches.dd_from_bins(names[i:j])
            quantiles.append(
                None
                if state is None
                else sketches.dd_quantiles(state, feature.percentiles, accuracy)
            )
        return quantiles
    if f == "approx_count_distinct":
        precision = feature.precision or sketches.DEFAULT_PRECISION
        registers = [sketches.hll_register(v, precision) for v in values]
        return [sketches.hll_estimate(_registers(registers[i:j]), precision) for i, j in bounds]
    msg = f"unknown aggregation function {f!r}"
    raise AssertionError(msg)
