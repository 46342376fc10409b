"""Brute-force feature values straight from DESIGN §4, the yardstick for every test.

Deliberately naive: no tiles, no merging, just the definition applied to a list of events.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from fractions import Fraction
from typing import Any

from headwater.schemas.definitions import FeatureSet

__all__ = ["RefEvent", "brute_force", "example_events_by_user"]

RefEvent = tuple[Mapping[str, Any], int, int]
"""(row, event time ms, arrival order)"""


def _value(
    function: str, field: str | None, events: list[RefEvent], integer: bool, n: int | None = None
) -> Any:
    if field is None:
        return len(events)
    present = [(row[field], e, seq) for row, e, seq in events if row.get(field) is not None]
    values = [v for v, _, _ in present]
    if function == "count":
        return len(values)
    if function == "count_distinct":
        return len(set(values))
    if function == "last_n" and not values:
        return []
    if function == "sum":
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
    if function == "stddev":
        if len(values) < 2:
            return None
        exact = [Fraction(v) for v in values]
        mean = sum(exact, Fraction(0)) / len(exact)
        return math.sqrt(
            float(sum(((v - mean) ** 2 for v in exact), Fraction(0)) / (len(exact) - 1))
        )
    if function == "count_distinct":
        return len(set(values))
    if function == "last_n":
        newest = sorted(present, key=lambda p: (p[1], p[2]), reverse=True)[:n]
        return [v for v, _, _ in newest]
    raise AssertionError(function)


def brute_force(
    feature_set: FeatureSet, field_types: Mapping[str, str], events: Sequence[RefEvent], t: int
) -> tuple[list[Any], str]:
    """Values and status of one entity at ``t`` from its raw events."""
    r = feature_set.resolution_ms
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
        if status != "PRESENT":
            window: list[RefEvent] = []
        elif f.window_ms is None:
            window = seen
        else:
            low = t // r - f.window_ms // r
            window = [ev for ev in seen if ev[1] // r > low]
        values.append(_value(f.function, f.field, window, integer, f.n))
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
