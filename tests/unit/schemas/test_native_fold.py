"""The native fold (``native/src/fold.rs``, ``FeatureSetPlan.apply_columns``) against the
Python fold (``FeatureSetPlan.apply``): the same states, bit for bit, for random batches with
out-of-order, replayed, future and expired events, big integers and mixed magnitudes."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from headwater.schemas.avro import AvroSchema
from headwater.schemas.definitions import Feature, FeatureSet, Source
from headwater.schemas.native import native_available
from headwater.schemas.tiles import EntityState, FeatureSetPlan, TopicEpoch, arrival_seq

SCHEMA = AvroSchema.from_dict(
    {
        "type": "record",
        "name": "Txn",
        "fields": [
            {"name": "user_id", "type": "string"},
            {"name": "ts", "type": "long"},
            {"name": "amount", "type": ["null", "double"]},
            {"name": "qty", "type": ["null", "long"]},
            {"name": "merchant", "type": ["null", "string"]},
        ],
    }
)
SOURCE = Source(name="txns", schema=SCHEMA, timestamp="ts")
R = 60_000
NOW = 100 * R


def _plan(extra: tuple[Feature, ...] = ()) -> FeatureSetPlan:
    features = [Feature(name="n_life", function="count")]
    for w in (1, 30):
        features += [
            Feature(name=f"n_{w}", function="count", window_ms=w * R),
            Feature(name=f"amount_n_{w}", function="count", field="amount", window_ms=w * R),
            Feature(name=f"sum_{w}", function="sum", field="amount", window_ms=w * R),
            Feature(name=f"qty_sum_{w}", function="sum", field="qty", window_ms=w * R),
            Feature(name=f"mean_{w}", function="mean", field="amount", window_ms=w * R),
            Feature(name=f"min_{w}", function="min", field="merchant", window_ms=w * R),
            Feature(name=f"max_{w}", function="max", field="amount", window_ms=w * R),
            Feature(name=f"qty_min_{w}", function="min", field="qty", window_ms=w * R),
            Feature(name=f"last_{w}", function="last", field="merchant", window_ms=w * R),
            Feature(name=f"first_{w}", function="first", field="qty", window_ms=w * R),
        ]
    features += [Feature(name="sum_life", function="sum", field="amount"), *extra]
    fs = FeatureSet(name="fs", entity="user", source="txns", features=tuple(features))
    return FeatureSetPlan(fs, SOURCE)


PLAN = _plan()

amounts = st.one_of(
    st.none(),
    st.floats(min_value=-1e300, max_value=1e300),  # sums of 160 stay finite
    st.sampled_from([0.1, 0.2, 0.3, 1e16, -1e16, 1.0, -0.0, 5e-324]),
)
quantities = st.one_of(st.none(), st.integers(-5, 5), st.integers(-(2**70), 2**70))
events_strategy = st.lists(
    st.tuples(
        st.integers(min_value=NOW - 40 * R, max_value=NOW + 2 * R),  # expired .. future
        amounts,
        quantities,
        st.one_of(st.none(), st.sampled_from(["a", "b", "c", "é"])),
        st.integers(0, 1),  # partition
        st.integers(0, 30),  # offset (repeats: replays, skipped)
        st.integers(0, 2),  # entity
    ),
    max_size=80,
)


def _batch(events: list[tuple[Any, ...]]) -> tuple[list[list[Any]], list[int], list[int]]:
    values = {
        "amount": [e[1] for e in events],
        "qty": [e[2] for e in events],
        "merchant": [e[3] for e in events],
    }
    columns = [values[f] for f in PLAN.fields]
    return columns, [e[0] for e in events], [arrival_seq(e[4], e[5]) for e in events]


def _python(
    plan: FeatureSetPlan,
    state: EntityState,
    batch: Any,
    indices: list[int],
    now: int,
    epoch: TopicEpoch | None,
) -> bool:
    return plan.apply(state, (batch.event(i) for i in indices), now, epoch)


pytestmark = pytest.mark.skipif(not native_available, reason="needs the native extension")


@settings(max_examples=150, deadline=None)
@given(events_strategy, events_strategy)
def test_native_fold_gives_the_python_states(
    first: list[tuple[Any, ...]], second: list[tuple[Any, ...]]
) -> None:
    epoch = TopicEpoch("topic-1")
    states_native: dict[int, EntityState] = {}
    states_python: dict[int, EntityState] = {}
    for now, events in ((NOW, first), (NOW + 90_000, second)):  # two batches, clock moves
        batch = PLAN.column_batch(*_batch(events))
        assert batch.native is not None
        for entity in range(3):
            indices = [i for i, e in enumerate(events) if e[6] == entity]
            native = states_native.setdefault(entity, EntityState())
            python = states_python.setdefault(entity, EntityState())
            changed_native = PLAN.apply_columns(native, batch, indices, now, epoch)
            changed_python = _python(PLAN, python, batch, indices, now, epoch)
            assert changed_native == changed_python
            assert native == python
            assert native.changed == python.changed
            # Bit for bit: float partials compared by their representation (-0.0, 5e-324).
            assert repr(native) == repr(python)
            for t in (now, now + 3 * R):
                assert repr(PLAN.evaluate(native, t)) == repr(PLAN.evaluate(python, t))


def test_a_state_read_back_from_json_folds_the_same() -> None:
    events = [(NOW - R, 1.5, 2**64, "b", 0, 1, 0), (NOW - 2, 0.1, -1, "a", 0, 2, 0)]
    batch = PLAN.column_batch(*_batch(events))
    native, python = EntityState(), EntityState()
    PLAN.apply_columns(native, batch, [0], NOW)
    PLAN.apply(python, [batch.event(0)], NOW)
    # Stored states come back as plain lists and ints (JSON), not the objects folded.
    native, python = copy.deepcopy(native), copy.deepcopy(python)
    PLAN.apply_columns(native, batch, [1], NOW)
    PLAN.apply(python, [batch.event(1)], NOW)
    assert repr(native) == repr(python)
    assert native.lifetime["isum:qty"] == 2**64 - 1


def test_plans_with_python_only_partials_keep_the_python_fold() -> None:
    plan = _plan((Feature(name="std", function="stddev", field="amount"),))
    batch = plan.column_batch(*_batch([(NOW - 1, 1.0, 1, "a", 0, 0, 0)]))
    assert batch.native is None
    state = EntityState()
    assert plan.apply_columns(state, batch, [0], NOW)
    assert state.lifetime["nn:amount"] == 1
