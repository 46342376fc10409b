"""Tile merging equals the brute-force definition, for random out-of-order event streams."""

from __future__ import annotations

import math
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from headwater.schemas.avro import AvroSchema
from headwater.schemas.definitions import Feature, FeatureSet, Source
from headwater.schemas.tiles import EntityState, FeatureSetPlan, Status, arrival_seq
from tests.reference import brute_force

SCHEMA = AvroSchema.from_dict(
    {
        "type": "record",
        "name": "Txn",
        "fields": [
            {"name": "user_id", "type": "string"},
            {"name": "ts", "type": "long"},
            {"name": "amount", "type": ["null", "double"]},
            {"name": "qty", "type": "long"},
            {"name": "merchant", "type": ["null", "string"]},
        ],
    }
)
SOURCE = Source(name="txns", schema=SCHEMA, timestamp="ts")
R = 60_000


def _feature_set(ttl_ms: int | None = None) -> FeatureSet:
    features = [Feature(name="n_life", function="count")]
    for w in (1, 5, 60):
        features += [
            Feature(name=f"n_{w}", function="count", window_ms=w * R),
            Feature(name=f"amount_n_{w}", function="count", field="amount", window_ms=w * R),
            Feature(name=f"sum_{w}", function="sum", field="amount", window_ms=w * R),
            Feature(name=f"qty_sum_{w}", function="sum", field="qty", window_ms=w * R),
            Feature(name=f"mean_{w}", function="mean", field="amount", window_ms=w * R),
            Feature(name=f"qty_mean_{w}", function="mean", field="qty", window_ms=w * R),
            Feature(name=f"min_{w}", function="min", field="amount", window_ms=w * R),
            Feature(name=f"max_{w}", function="max", field="qty", window_ms=w * R),
            Feature(name=f"last_{w}", function="last", field="merchant", window_ms=w * R),
            Feature(name=f"first_{w}", function="first", field="amount", window_ms=w * R),
            Feature(name=f"std_{w}", function="stddev", field="amount", window_ms=w * R),
            Feature(name=f"qty_std_{w}", function="stddev", field="qty", window_ms=w * R),
            Feature(
                name=f"distinct_{w}", function="count_distinct", field="merchant", window_ms=w * R
            ),
            Feature(name=f"last3_{w}", function="last_n", field="merchant", window_ms=w * R, n=3),
        ]
    features += [
        Feature(name="sum_life", function="sum", field="amount"),
        Feature(name="last_life", function="last", field="merchant"),
        Feature(name="first_life", function="first", field="merchant"),
    ]
    return FeatureSet(
        name="fs", entity="user", source="txns", features=tuple(features), ttl_ms=ttl_ms
    )


FS = _feature_set()
PLAN = FeatureSetPlan(FS, SOURCE)
NAMES = tuple(f.name for f in FS.features)

amounts = st.one_of(
    st.none(),
    st.floats(min_value=-1e6, max_value=1e6, allow_nan=False, allow_infinity=False),
    st.sampled_from([0.1, 0.2, 0.3, 1e16, -1e16, 1.0]),
)
events_strategy = st.lists(
    st.tuples(
        st.integers(min_value=0, max_value=3 * 3_600_000),  # event time
        amounts,
        st.integers(min_value=-5, max_value=5),
        st.one_of(st.none(), st.sampled_from(["a", "b", "c"])),
    ),
    max_size=60,
)


def _rows(
    raw: list[tuple[int, float | None, int, str | None]],
) -> list[tuple[dict[str, Any], int, int]]:
    return [
        ({"amount": a, "qty": q, "merchant": m}, e, seq) for seq, (e, a, q, m) in enumerate(raw)
    ]


def _same(a: list[Any], b: list[Any]) -> bool:
    return all(
        (x is None and y is None)
        or x == y
        or (isinstance(x, float) and math.isnan(x) and math.isnan(y))
        for x, y in zip(a, b, strict=True)
    )


@settings(max_examples=300, deadline=None)
@given(raw=events_strategy, t=st.integers(min_value=0, max_value=4 * 3_600_000))
def test_offline_style_state_equals_brute_force(
    raw: list[tuple[int, float | None, int, str | None]], t: int
) -> None:
    """A state built from the events with e <= t, in arrival order, gives the defined values."""
    events = _rows(raw)
    state = EntityState()
    for row, e, seq in events:
        if e <= t:
            PLAN.fold(state, row, e, seq, keep_from=None)
    got, status = PLAN.evaluate(state if state.newest is not None else None, t)
    want, want_status = brute_force(FS, SCHEMA.field_types, events, t)
    assert status == want_status
    assert _same(got, want), (got, want)


@settings(max_examples=300, deadline=None)
@given(
    raw=events_strategy,
    writer_now=st.integers(min_value=0, max_value=4 * 3_600_000),
    later=st.integers(min_value=0, max_value=3_600_000),
    split=st.integers(min_value=0, max_value=60),
)
def test_online_state_with_pending_and_eviction_equals_brute_force(
    raw: list[tuple[int, float | None, int, str | None]], writer_now: int, later: int, split: int
) -> None:
    """The worker's state (future events pending, old tiles evicted, redelivery) reads right.

    The writer applies the stream in two batches, the second re-delivering part of the first,
    at clock ``writer_now``; a reader at ``t >= writer_now`` must see exactly the events with
    ``e <= t``, including the ones that were in the writer's future.
    """
    events = _rows(raw)
    state = EntityState()
    PLAN.apply(state, events[:split], writer_now)
    PLAN.apply(state, events[max(0, split - 3) :], writer_now)  # redelivery is a no-op
    t = writer_now + later
    got, status = PLAN.evaluate(state if state.offsets else None, t)
    want, want_status = brute_force(FS, SCHEMA.field_types, events, t)
    assert status == want_status
    assert _same(got, want), (got, want)


def test_window_decays_without_new_events() -> None:
    """An event leaves a 5-minute window at request time even though nothing else arrives."""
    state = EntityState()
    PLAN.apply(state, [({"amount": 2.5, "qty": 1, "merchant": "m"}, 10 * R + 5, 0)], 10 * R + 10)
    names = NAMES
    inside, _ = PLAN.evaluate(state, 14 * R + 59_999)
    outside, status = PLAN.evaluate(state, 15 * R)
    assert inside[names.index("n_5")] == 1
    assert inside[names.index("sum_5")] == 2.5
    assert outside[names.index("n_5")] == 0
    assert outside[names.index("sum_5")] == 0.0
    assert outside[names.index("mean_5")] is None
    assert outside[names.index("last_5")] is None
    assert outside[names.index("n_life")] == 1
    assert outside[names.index("last_life")] == "m"
    assert status is Status.PRESENT


def test_late_event_never_replaces_newer_last() -> None:
    state = EntityState()
    PLAN.apply(state, [({"amount": 1.0, "qty": 1, "merchant": "new"}, 100 * R, 0)], 100 * R)
    PLAN.apply(state, [({"amount": 1.0, "qty": 1, "merchant": "old"}, 2 * R, 1)], 100 * R)
    values, _ = PLAN.evaluate(state, 100 * R)
    names = NAMES
    assert values[names.index("last_life")] == "new"
    assert values[names.index("first_life")] == "old"
    assert values[names.index("n_life")] == 2
    # The old event is outside every kept window: its tile was never stored online.
    assert 2 not in state.tiles


def test_ties_in_event_time_go_by_arrival_order() -> None:
    state = EntityState()
    rows = [({"amount": 1.0, "qty": 1, "merchant": m}, 5 * R, seq) for seq, m in enumerate("abc")]
    PLAN.apply(state, rows, 6 * R)
    values, _ = PLAN.evaluate(state, 6 * R)
    names = NAMES
    assert values[names.index("last_1")] is None  # 5*R is outside the 1-minute window at 6*R
    assert values[names.index("last_5")] == "c"
    assert values[names.index("first_life")] == "a"


def test_float_sums_are_exact_whatever_the_merge_order() -> None:
    values = [0.1, 1e16, 0.2, -1e16, 0.3]
    state = EntityState()
    PLAN.apply(
        state,
        [({"amount": v, "qty": 0, "merchant": None}, i * R, i) for i, v in enumerate(values)],
        10 * R,
    )
    got, _ = PLAN.evaluate(state, 10 * R)
    # Naive left-to-right addition gives 0.3 here; the exact sum is 0.6.
    assert got[NAMES.index("sum_life")] == math.fsum(values) == 0.6


def test_ttl_expires_every_feature() -> None:
    fs = _feature_set(ttl_ms=10 * R)
    plan = FeatureSetPlan(fs, SOURCE)
    state = EntityState()
    plan.apply(state, [({"amount": 3.0, "qty": 2, "merchant": "m"}, 0, 0)], 0)
    fresh, fresh_status = plan.evaluate(state, 10 * R)
    stale, stale_status = plan.evaluate(state, 10 * R + 1)
    assert fresh_status is Status.PRESENT and fresh[fs.features.index(fs.feature("n_life"))] == 1
    assert stale_status is Status.EXPIRED
    assert stale == plan.evaluate(None, 0)[0]


def test_unknown_entity_gets_empty_window_values() -> None:
    values, status = PLAN.evaluate(None, 123)
    names = NAMES
    assert status is Status.NOT_FOUND
    assert values[names.index("n_60")] == 0
    assert values[names.index("sum_60")] == 0.0
    assert values[names.index("qty_sum_60")] == 0
    assert values[names.index("mean_60")] is None
    assert values[names.index("last_life")] is None


def test_events_of_one_entity_on_two_partitions_apply_once_each() -> None:
    """A producer that did not key by entity: offsets are tracked per partition."""
    state = EntityState()
    p0 = [({"amount": 1.0, "qty": 1, "merchant": "a"}, 5 * R, arrival_seq(0, 7))]
    p1 = [({"amount": 2.0, "qty": 1, "merchant": "b"}, 5 * R, arrival_seq(1, 3))]
    PLAN.apply(state, p0, 6 * R)
    PLAN.apply(state, p1, 6 * R)
    PLAN.apply(state, p0 + p1, 6 * R)  # redelivery of both is a no-op
    values, _ = PLAN.evaluate(state, 6 * R)
    names = NAMES
    assert values[names.index("n_life")] == 2
    assert values[names.index("sum_life")] == 3.0
    assert values[names.index("last_life")] == "b"  # same event time: partition 1 sorts after 0
    assert state.offsets == {0: 7, 1: 3}


def test_arrival_seqs_of_a_batch_equal_arrival_seq() -> None:
    import pyarrow as pa

    from headwater.schemas.tiles import arrival_seqs

    pairs = [(0, 0), (3, 17), (1, (1 << 40) - 1), (255, 123_456_789)]
    partitions = pa.chunked_array([[p for p, _ in pairs]], pa.int32())
    offsets = pa.chunked_array([[o for _, o in pairs]], pa.int64())
    assert arrival_seqs(partitions, offsets) == [arrival_seq(p, o) for p, o in pairs]
