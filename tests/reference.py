"""Brute-force feature values straight from DESIGN §4, the yardstick for every test.

Deliberately naive: no tiles, no merging, just the definition applied to a list of events.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from fractions import Fraction
from typing import Any

import pyarrow as pa
from ddsketch import LogCollapsingLowestDenseDDSketch

from headwater.schemas import sketches
from headwater.schemas.definitions import Feature, FeatureSet
from headwater.schemas.expressions import compile_expression

__all__ = ["RefEvent", "brute_force", "example_events_by_user"]

RefEvent = tuple[Mapping[str, Any], int, int]
"""(row, event time ms, arrival order)"""


def _central(values: list[Any]) -> tuple[int, Fraction, Fraction, Fraction]:
    exact = [Fraction(v) for v in values]
    n = len(exact)
    mean = sum(exact, Fraction(0)) / n
    return (
        n,
        sum(((v - mean) ** 2 for v in exact), Fraction(0)) / n,
        sum(((v - mean) ** 3 for v in exact), Fraction(0)) / n,
        sum(((v - mean) ** 4 for v in exact), Fraction(0)) / n,
    )


def _counted(values: list[Any]) -> list[tuple[Any, int]]:
    """(value, count), most frequent first, equal counts by value; NaN is not counted."""
    counts: dict[Any, int] = {}
    for v in values:
        if not (isinstance(v, float) and math.isnan(v)):
            counts[v] = counts.get(v, 0) + 1
    return sorted(counts.items(), key=lambda item: (-item[1], item[0]))


def _value(feature: Feature, events: list[RefEvent], integer: bool) -> Any:
    function, field, n = feature.function, feature.field, feature.n
    if field is None:
        return len(events)
    present = [(row[field], e, seq) for row, e, seq in events if row.get(field) is not None]
    values = [v for v, _, _ in present]
    if function in ("count", "count_if"):
        return len(values)
    if function == "count_distinct":
        return len(set(values))
    if function in ("last_n", "first_n", "last_distinct_n", "top_k", "histogram") and not values:
        return []
    if function == "approx_count_distinct":
        precision = feature.precision or sketches.DEFAULT_PRECISION
        registers = sketches.hll_from_values(values, precision) or {}
        return sketches.hll_estimate(registers, precision)
    if function in ("sum", "sum_if"):
        if integer:
            return sum(values)
        return math.fsum(values)
    if not values:
        return None
    if function == "mean":
        return (sum(values) if integer else math.fsum(values)) / len(values)
    if function == "min":
        return min(values)
    if function == "max":
        return max(values)
    if function == "last":
        return max(present, key=lambda p: (p[1], p[2]))[0]
    if function == "first":
        return min(present, key=lambda p: (p[1], p[2]))[0]
    if function in ("stddev", "variance"):
        if len(values) < 2:
            return None
        exact = [Fraction(v) for v in values]
        mean = sum(exact, Fraction(0)) / len(exact)
        variance = float(sum(((v - mean) ** 2 for v in exact), Fraction(0)) / (len(exact) - 1))
        return variance if function == "variance" else math.sqrt(variance)
    if function in ("skew", "kurtosis"):
        _, m2, m3, m4 = _central(values)
        if m2 == 0:
            return None
        if function == "skew":
            return math.copysign(math.sqrt(float(m3 * m3 / m2**3)), m3)
        return float(m4 / (m2 * m2) - 3)
    if function == "last_n":
        newest = sorted(present, key=lambda p: (p[1], p[2]), reverse=True)[:n]
        return [v for v, _, _ in newest]
    if function == "first_n":
        oldest = sorted(present, key=lambda p: (p[1], p[2]))[:n]
        return [v for v, _, _ in oldest]
    if function == "last_distinct_n":
        distinct: list[Any] = []
        for v, _, _ in sorted(present, key=lambda p: (p[1], p[2]), reverse=True):
            if v not in distinct:
                distinct.append(v)
        return distinct[:n]
    if function == "top_k":
        return [{"value": v, "count": c} for v, c in _counted(values)[: feature.k]]
    if function == "histogram":
        kept = _counted(values)[: feature.max_keys or 100]
        return [{"value": v, "count": c} for v, c in sorted(kept)]
    if function == "approx_percentile":
        # A sketch built straight from the events by the ddsketch library itself.
        sketch = LogCollapsingLowestDenseDDSketch(
            feature.accuracy or sketches.DEFAULT_ACCURACY, bin_limit=sketches.BIN_LIMIT
        )
        for v in values:
            if not (isinstance(v, float) and math.isnan(v)):
                sketch.add(float(v))
        if sketch.count == 0:
            return None
        return [sketch.get_quantile_value(q) for q in feature.percentiles]
    raise AssertionError(function)


def _holds(condition: str, field_types: Mapping[str, str], row: Mapping[str, Any]) -> bool:
    """A ``where`` condition on one event, through the expression language."""
    expression = compile_expression(condition, field_types)
    table = (
        pa.Table.from_pylist([{f: row.get(f) for f in expression.fields}])
        if expression.fields
        else pa.table({"_": [0]})
    )
    return expression.evaluate(table).to_pylist()[0] is True


def in_window(feature_set: FeatureSet, feature: Feature, e: int, t: int) -> bool:
    """Whether an event at ``e`` counts for ``feature`` at ``t`` (given ``e <= t``): its tile
    ``e // R`` is among the ``window / R`` tiles ending ``offset`` before the tile of ``t``."""
    if feature.window_ms is None:
        return True
    tile = feature_set.tile_ms(feature)
    offset = feature.offset_ms or 0
    k_e, k_t = e // tile, t // tile
    return k_t - (feature.window_ms + offset) // tile < k_e <= k_t - offset // tile


def brute_force(
    feature_set: FeatureSet, field_types: Mapping[str, str], events: Sequence[RefEvent], t: int
) -> tuple[list[Any], str]:
    """Values and status of one entity at ``t`` from its raw events."""
    seen = [ev for ev in events if ev[1] <= t]
    if not seen:
        status = "NOT_FOUND"
    elif feature_set.ttl_ms is not None and max(e for _, e, _ in seen) < t - feature_set.ttl_ms:
        status = "EXPIRED"
    else:
        status = "PRESENT"
    values = []
    for f in feature_set.features:
        integer = field_types.get(f.field or "") in ("int", "long")
        window: list[RefEvent] = []
        if status == "PRESENT":
            window = [ev for ev in seen if in_window(feature_set, f, ev[1], t)]
        if f.where is not None:
            window = [ev for ev in window if _holds(f.where, field_types, ev[0])]
        values.append(_value(f, window, integer))
    return values, status


def _round_half_away(x: float) -> int:
    return int(math.copysign(math.floor(abs(x) + 0.5), x))


def example_events_by_user(table: Any) -> dict[str, list[tuple[dict[str, Any], int, int]]]:
    """Rows of the example dataset (a pyarrow table) per user, as ``RefEvent``s, after the
    example feature set's filter and transforms, written out by hand in Python (not through
    the expression engine), with the row index as arrival order."""
    by_user: dict[str, list[tuple[dict[str, Any], int, int]]] = {}
    for seq, row in enumerate(table.to_pylist()):
        if row["status"] != "approved":
            continue
        row = {
            **row,
            "amount_cents": _round_half_away(row["amount"] * 100),
            "is_large": int(row["amount"] >= 100),
        }
        by_user.setdefault(row["user_id"], []).append((row, row["event_time"], seq))
    return by_user
