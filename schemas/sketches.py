"""Deterministic, exactly mergeable sketches: DDSketch quantiles and HyperLogLog counts.

A sketch feature keeps one sketch per tile and merges the tiles of a window at lookup time,
while point-in-time retrieval builds one sketch from a window's events. Both must give the
same bits, so each sketch here is a *function of the multiset of its values*: merging two
sketches gives exactly the sketch of the union, whatever the order or grouping. Randomised
sketches (KLL) and order-dependent estimators (DataSketches' HIP) cannot promise that.

* DDSketch (Masson, Rim, Lee, VLDB 2019): a value ``x > 0`` falls in bin
  ``ceil(log_gamma(x))`` of the ``ddsketch`` library's ``LogarithmicMapping`` (negatives in a
  second store by ``|x|``, near-zero values counted apart). Bins hold integer counts, so
  merging adds them exactly; a quantile is read from the cumulative counts as
  ``ddsketch.DDSketch.get_quantile_value`` reads it, and is within the relative accuracy
  ``alpha`` of an exact quantile of the same rank. A store spans at most ``BIN_LIMIT`` keys:
  lower bins fold into the lowest kept one (the library's collapsing-lowest rule, which only
  touches the smallest magnitudes). Folding is decided by the highest bin alone, so
  ``fold(merge(fold(a), fold(b))) == fold(a + b)``: it stays exactly mergeable.
* HyperLogLog (Flajolet et al. 2007) with 2**p registers filled from a 64-bit BLAKE2b hash
  of the value's canonical text; registers merge by maximum. The estimate is Ertl's improved
  raw estimator (arXiv:1702.01284), a function of the register histogram alone, accurate from
  0 to beyond 10**9 distinct values without bias tables: standard error ``1.04 / sqrt(2**p)``.

States are JSON values (they are stored in Redis as they are): a DDSketch is a dict of bin
name (``"p12"``, ``"n-3"``, ``"z"``) to count, an HLL a dict of register index (as text) to
its value; only non-zero registers are kept, so the sketch of a quiet tile stays small.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable, Mapping, Sequence
from functools import cache
from typing import Any, Final

from ddsketch.mapping import LogarithmicMapping

__all__ = [
    "BIN_LIMIT",
    "DEFAULT_ACCURACY",
    "DEFAULT_PRECISION",
    "dd_add",
    "dd_bin_names",
    "dd_from_bins",
    "dd_from_values",
    "dd_merge",
    "dd_merge_into",
    "dd_quantiles",
    "hll_add",
    "hll_estimate",
    "hll_from_values",
    "hll_merge",
    "hll_merge_into",
    "hll_register",
]

DEFAULT_ACCURACY: Final = 0.01
"""Relative accuracy of ``approx_percentile`` unless a feature sets ``accuracy``."""
DEFAULT_PRECISION: Final = 12
"""HyperLogLog precision ``p`` (2**12 registers, 1.6 % standard error) unless set."""
BIN_LIMIT: Final = 2048
"""Most bins a DDSketch store keeps; at 1 % accuracy they span a ratio of about 10**17."""

DDState = dict[str, int]
HLLState = dict[str, int]


@cache
def _mapping(accuracy: float) -> LogarithmicMapping:
    return LogarithmicMapping(accuracy)


def _bin(mapping: LogarithmicMapping, value: float) -> str:
    if value > mapping.min_possible:
        return f"p{mapping.key(value)}"
    if value < -mapping.min_possible:
        return f"n{mapping.key(-value)}"
    return "z"


def _fold_lowest(state: DDState) -> DDState:
    """Keep each sign's bins within a span of ``BIN_LIMIT`` keys: bins more than
    ``BIN_LIMIT - 1`` below the highest fold into the lowest kept bin. The span, not the
    number of bins, decides (as in the library's dense stores), so the result is a function
    of the highest bin alone and folding parts before merging them changes nothing."""
    for sign in ("p", "n"):
        keys = [int(k[1:]) for k in state if k[0] == sign]
        if not keys or max(keys) - min(keys) < BIN_LIMIT:
            continue
        floor = max(keys) - BIN_LIMIT + 1
        folded = sum(state.pop(f"{sign}{k}") for k in keys if k < floor)
        name = f"{sign}{floor}"
        state[name] = state.get(name, 0) + folded
    return state


def dd_add(state: DDState | None, value: float, accuracy: float) -> DDState | None:
    """``state`` with ``value`` added (a new dict; NaN is skipped like a null)."""
    if isinstance(value, float) and math.isnan(value):
        return state
    name = _bin(_mapping(accuracy), float(value))
    grown = dict(state) if state else {}
    if name in grown:  # no new bin: the span, and so the folding, cannot change
        grown[name] += 1
        return grown
    grown[name] = 1
    return _fold_lowest(grown) if len(grown) > 1 else grown


def dd_merge_into(a: DDState, b: DDState) -> DDState:
    """Add ``b``'s bins to ``a`` in place, without folding (folding is a function of the
    final bins: ``dd_quantiles`` folds once); the lookups' accumulator."""
    for name, count in b.items():
        a[name] = a.get(name, 0) + count
    return a


def dd_merge(a: DDState, b: DDState) -> DDState:
    """The sketch of both states' values (a new dict)."""
    merged = dd_merge_into(dict(a), b)
    return _fold_lowest(merged) if len(merged) > 1 else merged


def dd_bin_names(values: Iterable[Any], accuracy: float) -> list[str | None]:
    """Each value's bin name (``None`` for nulls and NaN): computed once for a column that
    many windows slice (point-in-time retrieval), then counted per slice by ``dd_from_bins``."""
    mapping = _mapping(accuracy)
    return [
        None
        if value is None or (isinstance(value, float) and math.isnan(value))
        else _bin(mapping, float(value))
        for value in values
    ]


def dd_from_bins(names: Iterable[str | None]) -> DDState | None:
    """The sketch of the values whose bin names are ``names``; ``None`` if there are none."""
    state: DDState = {}
    for name in names:
        if name is not None:
            state[name] = state.get(name, 0) + 1
    return _fold_lowest(state) if state else None


def dd_from_values(values: Iterable[Any], accuracy: float) -> DDState | None:
    """The sketch of ``values`` (nulls and NaN skipped) built in one pass; ``None`` if empty."""
    return dd_from_bins(dd_bin_names(values, accuracy))


def dd_quantiles(
    state: Mapping[str, int], quantiles: Sequence[float], accuracy: float
) -> list[float]:
    """The value at each quantile, as ``ddsketch.DDSketch.get_quantile_value`` gives it."""
    mapping = _mapping(accuracy)
    state = _fold_lowest(dict(state))  # bins merged without folding: fold once, here
    negative = sorted((int(k[1:]), c) for k, c in state.items() if k[0] == "n")
    positive = sorted((int(k[1:]), c) for k, c in state.items() if k[0] == "p")
    zero = state.get("z", 0)
    negative_count = sum(c for _, c in negative)
    count = negative_count + zero + sum(c for _, c in positive)
    out = []
    for q in quantiles:
        rank = q * (count - 1)
        if rank < negative_count:
            reversed_rank = negative_count - rank - 1
            out.append(-mapping.value(_key_at_rank(negative, reversed_rank, lower=False)))
        elif rank < zero + negative_count:
            out.append(0.0)
        else:
            out.append(mapping.value(_key_at_rank(positive, rank - zero - negative_count)))
    return out


def _key_at_rank(bins: list[tuple[int, int]], rank: float, *, lower: bool = True) -> int:
    running = 0
    for key, count in bins:
        running += count
        if (lower and running > rank) or (not lower and running >= rank + 1):
            return key
    return bins[-1][0]


def _canonical(value: Any) -> bytes:
    """The bytes hashed for a value: its type and text, so 1, 1.0, True and '1' differ."""
    if isinstance(value, str):
        return b"s" + value.encode()
    if isinstance(value, bool):
        return b"b1" if value else b"b0"
    if isinstance(value, int):
        return b"i%d" % value
    if isinstance(value, float):
        return b"f" + repr(value).encode()
    return b"o" + repr(value).encode()


def hll_register(value: Any, precision: int) -> tuple[str, int]:
    """``(register index as text, rank)`` of a value: the first ``precision`` bits of its hash
    choose the register, the position of the first 1 in the rest is the rank."""
    h = int.from_bytes(hashlib.blake2b(_canonical(value), digest_size=8).digest(), "big")
    rest_bits = 64 - precision
    index = h >> rest_bits
    rest = h & ((1 << rest_bits) - 1)
    rank = rest_bits - rest.bit_length() + 1
    return str(index), rank


def hll_add(state: HLLState | None, value: Any, precision: int) -> HLLState:
    """``state`` with ``value`` added (a new dict unless the register does not grow)."""
    index, rank = hll_register(value, precision)
    if state is not None and state.get(index, 0) >= rank:
        return state
    grown = dict(state) if state else {}
    grown[index] = rank
    return grown


def hll_merge_into(a: HLLState, b: HLLState) -> HLLState:
    """Register-wise maximum of ``a`` and ``b``, into ``a`` (the lookups' accumulator)."""
    for index, rank in b.items():
        if a.get(index, 0) < rank:
            a[index] = rank
    return a


def hll_merge(a: HLLState, b: HLLState) -> HLLState:
    """Register-wise maximum (a new dict)."""
    return hll_merge_into(dict(a), b)


def hll_from_values(values: Iterable[Any], precision: int) -> HLLState | None:
    """The registers of ``values`` (nulls skipped); ``None`` if there are none."""
    state: HLLState = {}
    for value in values:
        if value is None:
            continue
        index, rank = hll_register(value, precision)
        if state.get(index, 0) < rank:
            state[index] = rank
    return state or None


def _sigma(x: float) -> float:
    if x == 1.0:
        return math.inf
    y, z = 1.0, x
    while True:
        x *= x
        previous = z
        z += x * y
        y += y
        if z == previous:
            return z


def _tau(x: float) -> float:
    if x == 0.0 or x == 1.0:
        return 0.0
    y, z = 1.0, 1.0 - x
    while True:
        x = math.sqrt(x)
        previous = z
        y *= 0.5
        z -= (1.0 - x) ** 2 * y
        if z == previous:
            return z / 3.0


def hll_estimate(state: Mapping[str, int], precision: int) -> int:
    """Ertl's improved raw estimate of the distinct count, rounded to an integer."""
    m = 1 << precision
    q = 64 - precision
    histogram = [0] * (q + 2)
    for rank in state.values():
        histogram[rank] += 1
    histogram[0] = m - len(state)
    z = m * _tau(1.0 - histogram[q + 1] / m)
    for k in range(q, 0, -1):
        z = 0.5 * (z + histogram[k])
    z += m * _sigma(histogram[0] / m)
    return round(m * m / (2.0 * math.log(2.0)) / z)
