"""The second aggregation group (moments, lists, value counts, sketches, conditions, offsets
and coarse tiles) equals the brute-force definition online and offline, under out-of-order
arrival, redelivery, pending future events, eviction and any merge order; sketches are
within their stated error of exact values."""

from __future__ import annotations

import math
import random
from typing import Any

import numpy as np
import pyarrow as pa
from hypothesis import given, settings
from hypothesis import strategies as st

from headwater.connectors.online_redis import _encode as encode_state  # the stored form
from headwater.connectors.online_redis import decode_state
from headwater.schemas import sketches
from headwater.schemas.definitions import Feature, FeatureSet
from headwater.schemas.tiles import EntityState, FeatureSetPlan, arrival_seq
from headwater.serving.historical import plan_features
from tests.reference import brute_force
from tests.unit.schemas.test_tiles import SCHEMA, SOURCE, _same

R = 60_000
H = 60 * R


def _features() -> list[Feature]:
    features: list[Feature] = []
    for w, offset in ((5, None), (60, None), (30, 60), (120, 0)):
        window, off = w * R, (offset * R if offset else None)
        tag = f"{w}" + (f"_o{offset}" if offset else "")
        features += [
            Feature(
                name=f"var_{tag}",
                function="variance",
                field="amount",
                window_ms=window,
                offset_ms=off,
            ),
            Feature(
                name=f"skew_{tag}", function="skew", field="qty", window_ms=window, offset_ms=off
            ),
            Feature(
                name=f"kurt_{tag}",
                function="kurtosis",
                field="amount",
                window_ms=window,
                offset_ms=off,
            ),
            Feature(
                name=f"first2_{tag}",
                function="first_n",
                field="merchant",
                n=2,
                window_ms=window,
                offset_ms=off,
            ),
            Feature(
                name=f"lastd2_{tag}",
                function="last_distinct_n",
                field="merchant",
                n=2,
                window_ms=window,
                offset_ms=off,
            ),
            Feature(
                name=f"top2_{tag}",
                function="top_k",
                field="merchant",
                k=2,
                window_ms=window,
                offset_ms=off,
            ),
            Feature(
                name=f"hist_{tag}",
                function="histogram",
                field="qty",
                max_keys=3,
                window_ms=window,
                offset_ms=off,
            ),
            Feature(
                name=f"p_{tag}",
                function="approx_percentile",
                field="amount",
                percentiles=(0.0, 0.5, 0.9, 1.0),
                window_ms=window,
                offset_ms=off,
            ),
            Feature(
                name=f"hll_{tag}",
                function="approx_count_distinct",
                field="merchant",
                window_ms=window,
                offset_ms=off,
            ),
            Feature(
                name=f"nif_{tag}",
                function="count_if",
                where="qty > 0",
                window_ms=window,
                offset_ms=off,
            ),
            Feature(
                name=f"sif_{tag}",
                function="sum_if",
                field="amount",
                where="merchant == 'a'",
                window_ms=window,
                offset_ms=off,
            ),
            Feature(
                name=f"mean_if_{tag}",
                function="mean",
                field="qty",
                where="merchant is not null and qty < 3",
                window_ms=window,
                offset_ms=off,
            ),
        ]
    # Coarse tiles: explicit (15-minute tiles for a 2-hour window) and the sum beside it.
    features += [
        Feature(
            name="p_coarse",
            function="approx_percentile",
            field="qty",
            percentiles=(0.5,),
            window_ms=2 * H,
            resolution_ms=15 * R,
        ),
        Feature(
            name="top_coarse",
            function="top_k",
            field="merchant",
            k=1,
            window_ms=H,
            resolution_ms=30 * R,
            offset_ms=30 * R,
        ),
        Feature(name="sum_2h", function="sum", field="qty", window_ms=2 * H),
        Feature(name="p_life", function="approx_percentile", field="qty", percentiles=(0.25,)),
        Feature(name="lastd_life", function="last_distinct_n", field="merchant", n=3),
        Feature(name="skew_life", function="skew", field="amount"),
    ]
    return features


FS = FeatureSet(name="more", entity="user", source="txns", features=tuple(_features()))
PLAN = FeatureSetPlan(FS, SOURCE)
TYPES = SCHEMA.field_types

amounts = st.one_of(
    st.none(),
    st.floats(min_value=-1e6, max_value=1e6, allow_nan=False, allow_infinity=False),
    st.sampled_from([0.1, 0.2, 0.3, 1e16, -1e16, 1.0, 0.0, -2.5]),
)
events_strategy = st.lists(
    st.tuples(
        st.integers(min_value=0, max_value=4 * H),
        amounts,
        st.integers(min_value=-5, max_value=5),
        st.one_of(st.none(), st.sampled_from(["a", "b", "c", "d"])),
        st.integers(min_value=0, max_value=1),  # partition
    ),
    max_size=60,
)


def _rows(
    raw: list[tuple[int, float | None, int, str | None, int]],
) -> list[tuple[dict[str, Any], int, int]]:
    return [
        ({"amount": a, "qty": q, "merchant": m}, e, arrival_seq(p, i))
        for i, (e, a, q, m, p) in enumerate(raw)
    ]


def _conditions(row: dict[str, Any]) -> dict[str, Any]:
    """``row`` with the condition columns the worker adds per batch."""
    table = PLAN.with_conditions(pa.Table.from_pylist([row], schema=_SCHEMA))
    return table.to_pylist()[0]


def _differences(got: list[Any], want: list[Any]) -> list[tuple[str, Any, Any]]:
    """(feature, got, wanted) of the features that differ: what a failure shows."""
    pairs = zip(FS.features, got, want, strict=True)
    return [(f.name, g, w) for f, g, w in pairs if not _same([g], [w])]


_SCHEMA = pa.schema([("amount", pa.float64()), ("qty", pa.int64()), ("merchant", pa.string())])


@settings(max_examples=150, deadline=None)
@given(
    raw=events_strategy,
    writer_now=st.integers(min_value=0, max_value=5 * H),
    later=st.integers(min_value=0, max_value=H),
    split=st.integers(min_value=0, max_value=60),
)
def test_online_state_equals_brute_force(
    raw: list[tuple[int, float | None, int, str | None, int]],
    writer_now: int,
    later: int,
    split: int,
) -> None:
    """Events out of event-time order (arrival follows offsets per partition), in two
    batches (the second re-delivering part of the first), some in the writer's future, old
    tiles evicted; read back after a Redis encoding round trip at ``t >= writer_now``."""
    events = _rows(raw)
    applied = [(_conditions(row), e, seq) for row, e, seq in events]
    state = EntityState()
    PLAN.apply(state, applied[:split], writer_now)
    PLAN.apply(state, applied[max(0, split - 3) :], writer_now)
    stored = decode_state(encode_state(state)) if state.offsets else None
    t = writer_now + later
    got, status = PLAN.evaluate(stored, t)
    want, want_status = brute_force(FS, TYPES, events, t)
    assert status.value == want_status
    assert _same(got, want), _differences(got, want)


@settings(max_examples=80, deadline=None)
@given(
    raw=events_strategy,
    labels=st.lists(st.integers(min_value=-R, max_value=5 * H), min_size=1, max_size=12),
)
def test_point_in_time_equals_brute_force(
    raw: list[tuple[int, float | None, int, str | None, int]], labels: list[int]
) -> None:
    """Offline values (conditions computed over the history, slices per window) equal the
    definition for two entities' label rows."""
    events = _rows(raw)
    users = ["u0" if i % 3 else "u1" for i in range(len(events))]
    history = pa.table(
        {
            "user_id": users,
            "event_time_ms": pa.array([e for _, e, _ in events], pa.int64()),
            "_partition": pa.array([seq >> 40 for _, _, seq in events], pa.int32()),
            "_offset": pa.array([seq & ((1 << 40) - 1) for _, _, seq in events], pa.int64()),
            "amount": pa.array([r["amount"] for r, _, _ in events], pa.float64()),
            "qty": pa.array([r["qty"] for r, _, _ in events], pa.int64()),
            "merchant": pa.array([r["merchant"] for r, _, _ in events], pa.string()),
        }
    )
    rows = [("u0" if i % 2 else "u1", t) for i, t in enumerate(labels)]
    label_table = pa.table({"user_id": [u for u, _ in rows]})
    times = np.array([t for _, t in rows], dtype=np.int64)
    columns = plan_features(PLAN, history, ("user_id",), label_table, times)
    for i, (user, t) in enumerate(rows):
        got = [column[i].as_py() for column in columns]
        mine = [ev for ev, u in zip(events, users, strict=True) if u == user]
        want, _ = brute_force(FS, TYPES, mine, t)
        assert _same(got, want), _differences(got, want)


@settings(max_examples=60, deadline=None)
@given(
    values=st.lists(st.floats(min_value=-1e9, max_value=1e9, allow_nan=False), max_size=80),
    seed=st.integers(0, 2**32),
)
def test_sketches_merge_to_the_sketch_of_the_union_in_any_grouping(
    values: list[float], seed: int
) -> None:
    rng = random.Random(seed)
    parts: list[list[float]] = [[] for _ in range(rng.randint(1, 6))]
    for v in values:
        rng.choice(parts).append(v)
    dd = [sketches.dd_from_values(p, 0.02) for p in parts]
    hll = [sketches.hll_from_values(p, 10) for p in parts]
    rng.shuffle(dd)
    merged_dd: dict[str, int] = {}
    merged_hll: dict[str, int] = {}
    for state in dd:
        merged_dd = sketches.dd_merge(merged_dd, state or {})
    for registers in hll:
        merged_hll = sketches.hll_merge(merged_hll, registers or {})
    assert merged_dd == (sketches.dd_from_values(values, 0.02) or {})
    assert merged_hll == (sketches.hll_from_values(values, 10) or {})


def test_dd_bins_fold_lowest_and_stay_exactly_mergeable() -> None:
    """Past BIN_LIMIT bins the lowest fold into one; folding parts first changes nothing."""
    values = [1.0001**i for i in range(0, 60_000, 7)] + [-(1.0003**i) for i in range(0, 30_000, 5)]
    whole = sketches.dd_from_values(values, 0.0001)
    assert whole is not None
    assert sum(1 for k in whole if k[0] == "p") <= sketches.BIN_LIMIT
    halves = [
        sketches.dd_from_values(values[::2], 0.0001),
        sketches.dd_from_values(values[1::2], 0.0001),
    ]
    assert halves[0] is not None and halves[1] is not None
    assert sketches.dd_merge(halves[0], halves[1]) == whole
    assert sum(whole.values()) == len(values)


def test_percentiles_are_within_the_stated_relative_accuracy() -> None:
    rng = np.random.default_rng(7)
    for accuracy in (0.01, 0.05):
        values = np.concatenate(
            [rng.lognormal(3, 2, 20_000), -rng.lognormal(1, 1, 5_000), np.zeros(100)]
        ).tolist()
        state = sketches.dd_from_values(values, accuracy)
        assert state is not None
        quantiles = [0.0, 0.01, 0.1, 0.25, 0.5, 0.9, 0.99, 0.999, 1.0]
        got = sketches.dd_quantiles(state, quantiles, accuracy)
        ordered = sorted(values)
        for q, value in zip(quantiles, got, strict=True):
            exact = ordered[math.floor(q * (len(ordered) - 1))]
            assert abs(value - exact) <= accuracy * abs(exact) * (1 + 1e-9), (q, value, exact)


def test_distinct_counts_are_within_four_standard_errors() -> None:
    for precision in (10, 12, 14):
        error = 1.04 / math.sqrt(1 << precision)
        for n in (1, 7, 100, 1_000, 20_000, 200_000):
            state = sketches.hll_from_values((f"user-{i}" for i in range(n)), precision)
            assert state is not None
            estimate = sketches.hll_estimate(state, precision)
            assert abs(estimate - n) <= max(1, 4 * error * n), (precision, n, estimate)
    ints = sketches.hll_from_values(range(50_000), 12)
    assert ints is not None
    assert abs(sketches.hll_estimate(ints, 12) - 50_000) <= 4 * 0.01625 * 50_000
    assert sketches.hll_estimate({}, 12) == 0


def test_bulky_long_windows_get_coarse_tiles_and_bounded_state() -> None:
    """A 7-day percentile at 1-minute resolution keeps 15-minute tiles: 672, not 10,080."""
    fs = FeatureSet(
        name="week",
        entity="user",
        source="txns",
        features=(
            Feature(
                name="p7d",
                function="approx_percentile",
                field="amount",
                percentiles=(0.5,),
                window_ms=7 * 24 * H,
            ),
            Feature(name="s7d", function="sum", field="amount", window_ms=7 * 24 * H),
            Feature(
                name="p1d",
                function="approx_percentile",
                field="amount",
                percentiles=(0.5,),
                window_ms=24 * H,
            ),
            Feature(
                name="p30d",
                function="approx_count_distinct",
                field="merchant",
                window_ms=30 * 24 * H,
            ),
            Feature(name="p1h", function="top_k", field="merchant", k=3, window_ms=H),
            Feature(
                name="pw",
                function="top_k",
                field="merchant",
                k=3,
                window_ms=24 * H,
                offset_ms=7 * 24 * H,
            ),
        ),
    )
    assert [fs.tile_ms(f) // R for f in fs.features] == [15, 1, 5, 60, 1, 5]
    plan = FeatureSetPlan(fs, SOURCE)
    state = EntityState()
    now = 10 * 24 * H
    rows = [
        ({"amount": float(i % 97), "qty": 1, "merchant": str(i % 5)}, now - i * 20_000, i)
        for i in range(30_000)
    ]
    plan.apply(state, rows, now)
    coarse = [
        k for k, tile in state.tiles.items() if any(key == "dd0.01:amount@900000" for key in tile)
    ]
    assert len(coarse) <= 7 * 24 * 4 + 1
    want, _ = brute_force(fs, TYPES, rows, now)
    got, _ = plan.evaluate(state, now)
    assert _same(got, want)
