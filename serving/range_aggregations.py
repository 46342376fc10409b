"""The aggregation functions over slices ``[lo, hi)`` of a sorted event column, vectorised.

Each function returns exactly what ``schemas.aggregations`` gives for the same events (the
online path): counts and integer sums from prefix sums, min/max with ``reduceat``, first/last
by index, and float sums, means and standard deviations exactly (``math.fsum`` per slice,
rational variance), because a training set must hold the bits a model will see online.
Nulls are skipped as online: every slice is taken over the non-null values only.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from headwater.schemas import moments
from headwater.schemas.aggregations import empty_value
from headwater.schemas.definitions import Feature
from headwater.schemas.native import extension
from headwater.serving.range_values import SLICED_FUNCTIONS, power_sums, slice_values

__all__ = ["RangeColumn", "aggregate_ranges", "output_type"]

_INTEGER_TYPES = {"int", "long"}
_EXACT_INT_BOUND = 2**53


def output_type(
    function: str, field_type: pa.DataType | None, avro_type: str | None
) -> pa.DataType:
    """The Arrow type of a feature column: fixed per function and field, never inferred."""
    if function in ("count", "count_distinct", "count_if", "approx_count_distinct"):
        return pa.int64()
    if function in ("sum", "sum_if"):
        return pa.int64() if avro_type in _INTEGER_TYPES else pa.float64()
    if function in ("mean", "stddev", "variance", "skew", "kurtosis"):
        return pa.float64()
    if function == "approx_percentile":
        return pa.list_(pa.float64())
    assert field_type is not None
    if function in ("last_n", "first_n", "last_distinct_n"):
        return pa.list_(field_type)
    if function in ("top_k", "histogram"):
        return pa.list_(pa.struct([("value", field_type), ("count", pa.int64())]))
    return field_type


class RangeColumn:
    """One field of the sorted history, with its nulls removed and prefix counts kept.

    A slice ``[lo, hi)`` of the history maps to ``[nn[lo], nn[hi])`` of ``values``.
    """

    def __init__(self, column: pa.ChunkedArray | pa.Array, avro_type: str) -> None:
        array = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
        valid = pc.is_valid(array).to_numpy(zero_copy_only=False)
        self.avro_type = avro_type
        self.type = array.type
        self.values = array.filter(pa.array(valid))
        self.nn = np.concatenate(([0], np.cumsum(valid, dtype=np.int64)))
        self._numpy: np.ndarray | None = None
        self._list: list[Any] | None = None

    @property
    def numpy(self) -> np.ndarray:
        if self._numpy is None:
            self._numpy = self.values.to_numpy(zero_copy_only=False)
        return self._numpy

    @property
    def list(self) -> list[Any]:
        if self._list is None:
            self._list = self.values.to_pylist()
        return self._list

    @property
    def is_integer(self) -> bool:
        return self.avro_type in _INTEGER_TYPES


def _empty(function: str, column: RangeColumn | None, rows: int, out_type: pa.DataType) -> pa.Array:
    value = empty_value(function, column.avro_type if column else None)
    return pa.array([value] * rows, type=out_type)


def _prefix_sums(column: RangeColumn) -> np.ndarray | None:
    """Exact int64 prefix sums of an integer column, or ``None`` if they could overflow."""
    values = column.numpy.astype(np.int64)
    if len(values) and int(np.abs(values).max()) * len(values) >= 2**63:
        return None
    return np.concatenate(([0], np.cumsum(values)))


def _per_slice(
    values: list[Any], a: np.ndarray, b: np.ndarray, fn: Callable[[list[Any]], Any]
) -> list[Any]:
    return [fn(values[i:j]) for i, j in zip(a.tolist(), b.tolist(), strict=True)]


def _fsum_ranges(column: RangeColumn, a: np.ndarray, b: np.ndarray) -> np.ndarray | None:
    """``math.fsum`` of every slice ``[a, b)`` of a float column, natively (the same bits);
    ``None`` without the extension, for non-float columns, or when Python's special cases
    (infinities, NaN, overflow) apply."""
    if extension is None or column.numpy.dtype.kind != "f":
        return None
    values = np.ascontiguousarray(column.numpy, dtype=np.float64).tobytes()
    sums = extension.fsum_ranges(values, a.tolist(), b.tolist())
    return None if sums is None else np.frombuffer(sums, dtype=np.float64)


def _stddev(column: RangeColumn, a: np.ndarray, b: np.ndarray) -> list[float | None]:
    """Sample standard deviation from the exact rational variance, as online."""
    sums = power_sums(column.numpy, column.is_integer, a, b, 2)
    out: list[float | None] = []
    for i, j, (s1, s2) in zip(a.tolist(), b.tolist(), sums, strict=True):
        variance = moments.variance(j - i, s1, s2)
        out.append(None if variance is None else math.sqrt(variance))
    return out


def _reduce(ufunc: np.ufunc, column: RangeColumn, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``ufunc.reduce`` over every slice ``[a, b)`` (slices with ``a == b`` give junk)."""
    values = column.numpy
    extended = np.concatenate((values, values[:1]))
    bounds = np.empty(2 * len(a), dtype=np.int64)
    bounds[0::2] = a
    bounds[1::2] = b
    return ufunc.reduceat(extended, bounds)[0::2]


def aggregate_ranges(
    feature: Feature,
    column: RangeColumn | None,
    lo: np.ndarray,
    hi: np.ndarray,
    out_type: pa.DataType,
) -> pa.Array:
    """``feature``'s function over the events ``[lo, hi)`` of every row, as an Arrow array.

    ``column`` holds the feature's field with the events its ``where`` excludes nulled.
    """
    function = {"count_if": "count", "sum_if": "sum"}.get(feature.function, feature.function)
    n = feature.n
    rows = len(lo)
    if column is None:  # count of events
        return pa.array(hi - lo, type=pa.int64())
    a, b = column.nn[lo], column.nn[hi]
    count = b - a
    empty = count == 0
    if rows == 0:
        return pa.array([], type=out_type)
    if len(column.values) == 0:
        return _empty(function, column, rows, out_type)
    if function == "count":
        return pa.array(count, type=pa.int64())
    if function in ("last", "first"):
        picked = column.values.take(
            pa.array(np.where(empty, 0, b - 1 if function == "last" else a))
        )
        return pc.if_else(pa.array(empty), pa.scalar(None, out_type), picked)
    if function in ("min", "max"):
        if column.numpy.dtype == object:
            pick = min if function == "min" else max
            values = column.list
            result = [
                None if j == i else pick(values[i:j])
                for i, j in zip(a.tolist(), b.tolist(), strict=True)
            ]
            return pa.array(result, type=out_type)
        reduced = _reduce(np.minimum if function == "min" else np.maximum, column, a, b)
        return pa.array(reduced, type=out_type, mask=empty)
    if function in ("sum", "mean") and column.is_integer:
        prefix = _prefix_sums(column)
        if prefix is None:
            totals: Any = _per_slice(column.list, a, b, sum)
            if function == "sum":
                return pa.array(totals, type=out_type)
            return pa.array(
                [None if c == 0 else t / c for t, c in zip(totals, count.tolist(), strict=True)],
                type=out_type,
            )
        sums = prefix[b] - prefix[a]
        if function == "sum":
            return pa.array(sums, type=out_type)
        if len(sums) and int(np.abs(sums).max()) >= _EXACT_INT_BOUND:
            # Beyond 2**53 a float conversion rounds first; divide exactly as Python does.
            quotients = [
                None if c == 0 else s / c
                for s, c in zip(sums.tolist(), count.tolist(), strict=True)
            ]
            return pa.array(quotients, type=out_type)
        return pa.array(sums / np.where(empty, 1, count), type=out_type, mask=empty)
    if function in ("sum", "mean"):
        exact = _fsum_ranges(column, a, b)
        if exact is not None:
            if function == "sum":
                return pa.array(exact, type=out_type)
            return pa.array(exact / np.where(empty, 1, count), type=out_type, mask=empty)
        totals = _per_slice(column.list, a, b, math.fsum)
        if function == "sum":
            return pa.array(totals, type=out_type)
        return pa.array(
            [None if c == 0 else t / c for t, c in zip(totals, count.tolist(), strict=True)],
            type=out_type,
        )
    if function == "stddev":
        return pa.array(_stddev(column, a, b), type=out_type)
    if function == "count_distinct":
        return pa.array(_per_slice(column.list, a, b, lambda s: len(set(s))), type=out_type)
    if function in SLICED_FUNCTIONS:
        numbers = column.numpy if function in ("variance", "skew", "kurtosis") else None
        values = slice_values(feature, column.list, numbers, column.is_integer, a, b)
        return pa.array(values, type=out_type)
    if function == "last_n":
        assert n is not None
        values = column.list
        newest = [
            values[max(i, j - n) : j][::-1] for i, j in zip(a.tolist(), b.tolist(), strict=True)
        ]
        return pa.array(newest, type=out_type)
    msg = f"unknown aggregation function {function!r}"
    raise AssertionError(msg)
