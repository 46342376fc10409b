"""Drift of a population against a reference: PSI and Jensen-Shannon per column.

Both compare the shares of values falling in the same bins:

- numbers: the bins are cut at the reference's deciles (from its quantile sketch, merged
  duplicates dropped), so each holds about a tenth of the reference; a column whose values
  moved shows up as shares piling into a few bins;
- strings and booleans: one bin per frequent value of either side (up to 10 each) and one
  for all others.

``PSI = sum((c - r) * ln(c / r))`` with shares floored at :data:`FLOOR` (an empty bin would
make it infinite); 0.1 is a small shift, 0.2 a significant one (the default limit).
``JS`` is the Jensen-Shannon divergence in bits, between 0 (same) and 1 (disjoint).
Shares come from the sketches: within their rank error (1.33 %) for numbers, exact for
columns with fewer than 768 distinct values.
"""

from __future__ import annotations

import itertools
import math
from typing import Any

from headwater.schemas.definitions import FeatureSet
from headwater.serving.stats_profile import ColumnProfile

__all__ = ["FLOOR", "column_drift", "drift_body", "js_divergence", "psi"]

FLOOR = 1e-4
_IDENTIFIER_SHARE = 0.5
"""A text column with more distinct values than this share of its rows is an identifier."""
_IDENTIFIER_MIN_ROWS = 50
"""Below this many rows, few repeats prove nothing."""
_DECILES = [i / 10 for i in range(1, 10)]


def psi(reference: list[float], current: list[float]) -> float:
    """Population stability index of two share vectors (same bins)."""
    total = 0.0
    for r, c in zip(reference, current, strict=True):
        r, c = max(r, FLOOR), max(c, FLOOR)
        total += (c - r) * math.log(c / r)
    return total


def js_divergence(reference: list[float], current: list[float]) -> float:
    """Jensen-Shannon divergence (base 2) of two share vectors."""
    total = 0.0
    for r, c in zip(reference, current, strict=True):
        m = (r + c) / 2
        if r > 0:
            total += 0.5 * r * math.log2(r / m)
        if c > 0:
            total += 0.5 * c * math.log2(c / m)
    return max(0.0, min(1.0, total))


def _fmt(x: float) -> str:
    return f"{x:.6g}"


def _number_bins(
    reference: ColumnProfile, current: ColumnProfile
) -> tuple[list[str], list[float], list[float]]:
    cuts = sorted({q for q in (reference.quantile(p) for p in _DECILES) if q is not None})
    if not cuts:
        return [], [], []

    def shares(profile: ColumnProfile) -> list[float]:
        below = [0.0, *profile.cdf(cuts), 1.0]
        return [max(0.0, b - a) for a, b in itertools.pairwise(below)]

    labels = [f"< {_fmt(cuts[0])}"]
    labels += [f"[{_fmt(a)}, {_fmt(b)})" for a, b in itertools.pairwise(cuts)]
    labels += [f">= {_fmt(cuts[-1])}"]
    return labels, shares(reference), shares(current)


def _category_bins(
    reference: ColumnProfile, current: ColumnProfile
) -> tuple[list[str], list[float], list[float]]:
    values = sorted({v for v, _ in reference.top()} | {v for v, _ in current.top()})
    ref = [reference.share_of(v) for v in values]
    cur = [current.share_of(v) for v in values]
    return (
        [*values, "(other)"],
        [*ref, max(0.0, 1 - sum(ref))],
        [*cur, max(0.0, 1 - sum(cur))],
    )


def column_drift(
    name: str,
    reference: ColumnProfile,
    current: ColumnProfile,
    limits: tuple[float, float | None],
) -> dict[str, Any]:
    """One column of ``/v1/drift``: PSI, JS, the limits, whether drifted, and the bins."""
    labels: list[str]
    ref: list[float]
    cur: list[float]
    if not reference.count or not current.count:
        labels, ref, cur = [], [], []
    elif reference.kind == "number":
        labels, ref, cur = _number_bins(reference, current)
    else:
        labels, ref, cur = _category_bins(reference, current)
    psi_limit, js_limit = limits
    value_psi = psi(ref, cur) if labels else None
    value_js = js_divergence(ref, cur) if labels else None
    drifted = (value_psi is not None and value_psi > psi_limit) or (
        js_limit is not None and value_js is not None and value_js > js_limit
    )
    return {
        "name": name,
        "type": reference.kind,
        "psi": value_psi,
        "js": value_js,
        "threshold": {"psi": psi_limit, "js": js_limit},
        "drifted": drifted,
        "reference_count": reference.count,
        "current_count": current.count,
        "bins": [
            {"label": label, "reference": r, "current": c}
            for label, r, c in zip(labels, ref, cur, strict=True)
        ],
    }


def _not_compared(name: str, reference: ColumnProfile, current: ColumnProfile) -> str | None:
    """Why a column is left out of drift, or ``None``."""
    if reference.kind != current.kind:
        return f"its type changed from {reference.kind} to {current.kind}"
    if reference.kind == "string" and reference.count >= _IDENTIFIER_MIN_ROWS:
        distinct = float(reference.hll.get_estimate())
        if distinct > _IDENTIFIER_SHARE * reference.count:
            return "an identifier (most values unique): every new value is new"
    return None


def drift_body(
    fs: FeatureSet,
    reference: dict[str, ColumnProfile],
    current: dict[str, ColumnProfile],
    described: tuple[dict[str, Any], dict[str, Any]],
    *,
    time_field: str | None = None,
) -> dict[str, Any]:
    """The JSON of ``/v1/drift/{feature_set}``: every column both populations have, with
    the limits of the feature of that name (or the set's). The source's event time
    (``time_field``) always moves, and identifiers are all new: both are listed as skipped."""
    own = {f.name: f.monitoring for f in fs.features}
    columns, skipped = [], []
    for name in sorted(set(reference) & set(current)):
        why = (
            "the event time: it moves by definition"
            if name == time_field
            else _not_compared(name, reference[name], current[name])
        )
        if why is not None:
            skipped.append({"name": name, "reason": why})
            continue
        limits = fs.monitoring.drift_limits(own.get(name))
        columns.append(column_drift(name, reference[name], current[name], limits))
    return {
        "feature_set": fs.name,
        "version": fs.version,
        "reference": described[0],
        "current": described[1],
        "drifted": [c["name"] for c in columns if c["drifted"]],
        "columns": columns,
        "skipped": skipped,
        "note": None
        if columns or skipped
        else (
            "no column in common: a training set and served values hold features, history "
            "holds the source's fields; compare like with like"
        ),
    }
