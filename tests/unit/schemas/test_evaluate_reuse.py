"""``FeatureSetPlan.evaluate(reuse=True)``: the API's reuse of a state's values within a tile
gives exactly what evaluating at that moment gives, also across tile edges, TTL expiry,
pending events and a changed entity."""

from __future__ import annotations

import copy

from hypothesis import given, settings
from hypothesis import strategies as st

from headwater.schemas.definitions import Feature, FeatureSet
from headwater.schemas.tiles import EntityState, FeatureSetPlan, Status, arrival_seq
from tests.unit.schemas.test_tiles import SOURCE

R = 60_000
FS = FeatureSet(
    name="fs",
    entity="user",
    source="txns",
    ttl_ms=30 * R,
    features=(
        Feature(name="n_5", function="count", window_ms=5 * R),
        Feature(name="sum_60", function="sum", field="amount", window_ms=60 * R),
        Feature(name="last", function="last", field="merchant"),
    ),
)


def _state(events: list[tuple[int, float]], now: int) -> EntityState:
    plan = FeatureSetPlan(FS, SOURCE)
    state = EntityState()
    rows = [
        ({"amount": a, "merchant": f"m{i}"}, e, arrival_seq(0, i))
        for i, (e, a) in enumerate(events)
    ]
    plan.apply(state, rows, now)
    return state


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, 120 * R), st.floats(-1e6, 1e6)), min_size=1, max_size=30),
    st.lists(st.integers(0, 200 * R), min_size=1, max_size=12),
)
def test_reused_values_equal_fresh_ones_at_every_moment(
    events: list[tuple[int, float]], moments: list[int]
) -> None:
    plan = FeatureSetPlan(FS, SOURCE)
    state = _state(events, now=200 * R)
    for t in sorted(moments):
        assert plan.evaluate(state, t, reuse=True) == plan.evaluate(state, t)


def test_a_changed_entity_is_never_served_old_values() -> None:
    plan = FeatureSetPlan(FS, SOURCE)
    t = 100 * R + 5
    old = _state([(99 * R, 1.0)], now=t)
    assert plan.evaluate(old, t, reuse=True)[0][:2] == [1, 1.0]
    new = copy.deepcopy(old)  # what the reader decodes after a write: another object
    plan.apply(new, [({"amount": 2.0, "merchant": "x"}, 100 * R, arrival_seq(0, 9))], t)
    assert plan.evaluate(new, t, reuse=True)[0][:2] == [2, 3.0]
    assert plan.evaluate(old, t, reuse=True)[0][:2] == [1, 1.0]


def test_expiry_and_pending_events_are_judged_at_each_moment() -> None:
    plan = FeatureSetPlan(FS, SOURCE)
    state = _state([(10 * R, 1.0)], now=11 * R)
    assert plan.evaluate(state, 11 * R, reuse=True)[1] is Status.PRESENT
    assert plan.evaluate(state, 41 * R, reuse=True)[1] is Status.EXPIRED  # 30 min TTL
    pending = _state([(10 * R, 1.0), (12 * R, 5.0)], now=11 * R)  # the second one waits
    assert pending.pending
    assert plan.evaluate(pending, 11 * R, reuse=True) == plan.evaluate(pending, 11 * R)
    assert plan.evaluate(pending, 12 * R, reuse=True)[0][:2] == [2, 6.0]
