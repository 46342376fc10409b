"""The vectorised point-in-time engine equals the brute-force definition, row by row.

Random multi-entity histories (out of order, ties in event time across two partitions, nulls,
floats whose sums cancel) and random label rows, including entities with no history and
times before every event; every aggregation over several windows and the lifetime.
"""

from __future__ import annotations

from collections.abc import Sequence
from unittest import mock

import numpy as np
import pyarrow as pa
from hypothesis import given, settings
from hypothesis import strategies as st

from headwater.schemas.tiles import FeatureSetPlan, arrival_seq
from headwater.serving import windows
from headwater.serving.historical import plan_features
from tests.reference import brute_force
from tests.unit.schemas.test_tiles import FS, SCHEMA, SOURCE, _feature_set, _same, amounts

USERS = ["u0", "u1", "u2"]

# (user, event time, amount, qty, merchant, partition)
RawEvent = tuple[str, int, float | None, int, str | None, int]

events = st.lists(
    st.tuples(
        st.sampled_from(USERS),
        st.integers(min_value=0, max_value=3 * 3_600_000),
        amounts,
        st.integers(min_value=-5, max_value=5),
        st.one_of(st.none(), st.sampled_from(["a", "b", "c"])),
        st.integers(min_value=0, max_value=1),  # partition
    ),
    max_size=80,
)
labels = st.lists(
    st.tuples(
        st.sampled_from([*USERS, "nobody"]), st.integers(min_value=-60_000, max_value=4 * 3_600_000)
    ),
    min_size=1,
    max_size=25,
)


def _history(raw: Sequence[RawEvent]) -> pa.Table:
    return pa.table(
        {
            "user_id": [r[0] for r in raw],
            "event_time_ms": pa.array([r[1] for r in raw], pa.int64()),
            "_partition": pa.array([r[5] for r in raw], pa.int32()),
            "_offset": pa.array(range(len(raw)), pa.int64()),
            "amount": pa.array([r[2] for r in raw], pa.float64()),
            "qty": pa.array([r[3] for r in raw], pa.int64()),
            "merchant": pa.array([r[4] for r in raw], pa.string()),
        }
    )


def _check(
    plan: FeatureSetPlan, raw: list[RawEvent], rows: list[tuple[str, int]], shift: int = 0
) -> None:
    raw = [(u, e + shift, a, q, m, p) for u, e, a, q, m, p in raw]
    rows = [(u, t + shift) for u, t in rows]
    label_table = pa.table({"user_id": [u for u, _ in rows]})
    times = np.array([t for _, t in rows], dtype=np.int64)
    columns = plan_features(plan, _history(raw), ("user_id",), label_table, times)
    got = [[column[i].as_py() for column in columns] for i in range(len(rows))]
    for i, (user, t) in enumerate(rows):
        mine = [
            ({"amount": a, "qty": q, "merchant": m}, e, arrival_seq(p, offset))
            for offset, (u, e, a, q, m, p) in enumerate(raw)
            if u == user
        ]
        want, _ = brute_force(plan.feature_set, SCHEMA.field_types, mine, t)
        assert _same(got[i], want), (user, t, got[i], want)


PLAN = FeatureSetPlan(FS, SOURCE)
PLAN_TTL = FeatureSetPlan(_feature_set(ttl_ms=30 * 60_000), SOURCE)


@settings(max_examples=150, deadline=None)
@given(raw=events, rows=labels)
def test_every_aggregation_equals_brute_force(
    raw: list[RawEvent], rows: list[tuple[str, int]]
) -> None:
    _check(PLAN, raw, rows)


@settings(max_examples=75, deadline=None)
@given(raw=events, rows=labels)
def test_ttl_gives_empty_values_like_brute_force(
    raw: list[RawEvent], rows: list[tuple[str, int]]
) -> None:
    _check(PLAN_TTL, raw, rows)


@settings(max_examples=40, deadline=None)
@given(raw=events, rows=labels, far=st.integers(min_value=2**61, max_value=2**62))
def test_times_spread_beyond_the_packed_key_are_ranked(
    raw: list[RawEvent], rows: list[tuple[str, int]], far: int
) -> None:
    """A history spanning more than an int64 key can pack next to the entity code."""
    raw = [*raw, ("u0", far, 1.0, 1, "a", 0), ("u1", -far, 2.0, 2, "b", 1)]
    rows = [*rows, ("u0", far), ("u1", -far + 1), ("u2", far)]
    _check(PLAN, raw, rows)


@settings(max_examples=75, deadline=None)
@given(raw=events, rows=labels, parts=st.integers(min_value=2, max_value=5))
def test_histories_split_across_cores_give_the_same_values(
    raw: list[RawEvent], rows: list[tuple[str, int]], parts: int
) -> None:
    """Large histories are matched and sorted in parts (one per core); forced here on small
    ones, with more parts than entities too, the values still equal the reference."""
    with (
        mock.patch.object(windows, "_SPLIT_ROWS", 1),
        mock.patch.object(windows, "_parts", lambda: parts),
    ):
        _check(PLAN, raw, rows)
        _check(PLAN_TTL, raw, rows)


def test_rows_keep_the_callers_order_and_none_is_dropped() -> None:
    raw = [("u1", 1_000, 5.0, 1, "a", 0), ("u0", 2_000, 7.0, 2, "b", 0)]
    rows = [("u1", 5_000), ("nobody", 5_000), ("u0", 5_000), ("u1", 0), ("u0", 5_000)]
    label_table = pa.table({"user_id": [u for u, _ in rows]})
    times = np.array([t for _, t in rows], dtype=np.int64)
    columns = plan_features(PLAN, _history(raw), ("user_id",), label_table, times)
    names = [f.name for f in FS.features]
    sum_life = columns[names.index("sum_life")].to_pylist()
    n_life = columns[names.index("n_life")].to_pylist()
    assert sum_life == [5.0, 0.0, 7.0, 0.0, 7.0]
    assert n_life == [1, 0, 1, 0, 1]
    assert columns[names.index("last_life")].type == pa.string()
    assert columns[names.index("mean_60")].type == pa.float64()


def test_label_times_finer_than_ms_are_floored_to_the_ms_they_fall_in() -> None:
    from headwater.serving.historical import label_times_ms

    instants = [-1_500, 0, 1_796_444_496_974_662]  # microseconds, one before 1970
    for unit, scale in (("us", 1), ("ns", 1000)):
        table = pa.table(
            {"t": pa.array([i * scale for i in instants], pa.timestamp(unit, tz="UTC"))}
        )
        assert label_times_ms(table, "t").tolist() == [-2, 0, 1_796_444_496_974]
    seconds = pa.table({"t": pa.array([-1, 2], pa.timestamp("s", tz="UTC"))})
    assert label_times_ms(seconds, "t").tolist() == [-1000, 2000]
