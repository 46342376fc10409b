"""Column statistics against exact numpy computations on generated data: merged partial
profiles give the exact count, nulls, min, max, mean and stddev of one pass, and quantiles,
distinct counts and frequent values within the error bounds the module states."""

from __future__ import annotations

import math

import numpy as np
import pyarrow as pa
import pytest

from headwater.serving.stats_profile import (
    DISTINCT_RELATIVE_ERROR,
    QUANTILE_RANK_ERROR,
    QUANTILES,
    ColumnProfile,
    profile_table,
)


def _merged(parts: list[pa.Array], kind: str) -> ColumnProfile:
    """Profiles of each part, stored and read back as rows, then merged: the path that
    time ranges take over per-file partials."""
    merged = ColumnProfile(kind)  # type: ignore[arg-type]
    for part in parts:
        row = ColumnProfile.of(part, kind).to_row()  # type: ignore[arg-type]
        merged.merge(ColumnProfile.from_row(row))
    return merged


def test_numbers_merged_from_parts_match_numpy() -> None:
    rng = np.random.default_rng(7)
    values = rng.lognormal(mean=3.0, sigma=1.1, size=200_000)
    mask = rng.random(values.size) < 0.03  # 3 % missing
    array = pa.array(values, mask=mask)
    parts = [array.slice(i, 37_000) for i in range(0, len(array), 37_000)]
    profile = _merged(parts, "number")
    present = values[~mask]
    assert profile.count == present.size
    assert profile.nulls == int(mask.sum())
    assert profile.minimum == present.min() and profile.maximum == present.max()
    assert profile.mean == pytest.approx(present.mean(), rel=1e-12)
    assert profile.stddev == pytest.approx(present.std(), rel=1e-9)
    ordered = np.sort(present)
    for q in QUANTILES:
        estimate = profile.quantile(q)
        assert estimate is not None
        rank = np.searchsorted(ordered, estimate, side="right") / ordered.size
        assert abs(rank - q) <= QUANTILE_RANK_ERROR, (q, rank)
    distinct = np.unique(present).size
    summary = profile.summary("amount")
    assert abs(summary["distinct"] - distinct) / distinct <= 3 * DISTINCT_RELATIVE_ERROR
    low, high = summary["distinct_bounds"]
    assert low <= distinct <= high
    histogram = summary["histogram"]
    exact, _ = np.histogram(present, bins=np.array(histogram["edges"]))
    # Each bin count is within the rank error of all values (twice: two edges per bin).
    tolerance = 2 * QUANTILE_RANK_ERROR * present.size
    assert all(abs(a - b) <= tolerance for a, b in zip(histogram["counts"], exact, strict=True))
    assert sum(histogram["counts"]) == pytest.approx(present.size, abs=len(exact))


def test_strings_exact_below_the_sketch_capacity() -> None:
    rng = np.random.default_rng(3)
    words = np.array([f"merchant-{i}" for i in range(300)])
    weights = rng.zipf(1.6, size=300).astype(float)
    picks = rng.choice(words, size=50_000, p=weights / weights.sum())
    array = pa.array(picks.tolist())
    profile = _merged([array.slice(0, 20_000), array.slice(20_000)], "string")
    names, counts = np.unique(picks, return_counts=True)
    exact_top = sorted(
        zip(names.tolist(), counts.tolist(), strict=True), key=lambda t: (-t[1], t[0])
    )
    assert profile.top(10) == exact_top[:10]
    assert profile.summary("m")["distinct"] == pytest.approx(names.size, rel=0.01)
    assert profile.mean == 0.0 and profile.summary("m")["quantiles"] == []


def test_nan_is_missing_and_merge_of_empty_parts_is_neutral() -> None:
    profile = _merged(
        [pa.array([1.0, float("nan"), None]), pa.array([], pa.float64()), pa.array([3.0])],
        "number",
    )
    assert (profile.count, profile.nulls) == (2, 2)
    assert profile.mean == 2.0 and profile.stddev == 1.0
    assert profile.summary("x")["null_rate"] == 0.5


def test_nested_records_timestamps_and_booleans() -> None:
    table = pa.table(
        {
            "ship_to": pa.array([{"city": "Oslo"}, {"city": "Lyon"}, {"city": "Oslo"}]),
            "at": pa.array([1_000, 2_000, 4_000], pa.timestamp("ms", tz="UTC")),
            "ok": pa.array([True, False, True]),
            "tags": pa.array([["a"], [], ["b"]]),
        }
    )
    profiles = profile_table(table, skip=frozenset({"ok"}))
    assert sorted(profiles) == ["at", "ship_to.city"]
    assert profiles["ship_to.city"].top() == [("Oslo", 2), ("Lyon", 1)]
    at = profiles["at"]
    assert (at.minimum, at.maximum, at.mean) == (1000.0, 4000.0, pytest.approx(7000 / 3))
    assert profile_table(table)["ok"].top() == [("true", 2), ("false", 1)]
    assert math.isclose(QUANTILE_RANK_ERROR, 0.0133, abs_tol=0.0002)
