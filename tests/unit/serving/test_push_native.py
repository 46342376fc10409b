"""The native push encoder (``native/src/encode.rs``) against the Python path
(``check_events`` + ``PushPlan.messages``): the same messages, byte for byte, for every request
the Python path accepts, and ``None`` (the Python path then answers) for every request it
refuses, on generated events with wrong types, out-of-range numbers and times, nulls, missing
and unknown fields."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from headwater.schemas.avro import AvroSchema
from headwater.schemas.definitions import Entity, Source
from headwater.serving.push_validation import PushPlan, check_events, plan_push

NOW = 1_790_000_000_000
SKEW = 300_000
FIELDS: list[dict[str, Any]] = [
    {"name": "user_id", "type": "string"},
    {"name": "shop", "type": "long"},
    {"name": "amount", "type": "double"},
    {"name": "ratio", "type": ["float", "null"]},
    {"name": "qty", "type": "int"},
    {"name": "flag", "type": "boolean"},
    {"name": "note", "type": ["null", "string"]},
    {"name": "event_time", "type": {"type": "long", "logicalType": "timestamp-micros"}},
]
SOURCE = Source(
    name="tx",
    schema=AvroSchema.from_dict({"type": "record", "name": "Tx", "fields": FIELDS}),
    timestamp="event_time",
)
ONE_KEY = plan_push(SOURCE, Entity(name="user", keys=("user_id",)), 7)
TWO_KEYS = plan_push(SOURCE, Entity(name="shop_user", keys=("shop", "user_id")), 7)

_any = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=4),
)
_event = st.fixed_dictionaries(
    {
        "user_id": st.one_of(st.text(max_size=6), st.just("a\x1fb"), _any),
        "shop": st.one_of(st.integers(-(2**63), 2**63 - 1), _any),
        "amount": st.one_of(st.floats(allow_nan=False, allow_infinity=False), st.integers(), _any),
        "ratio": st.one_of(st.none(), st.floats(-1e39, 1e39), _any),
        "qty": st.one_of(st.integers(-(2**31) - 2, 2**31 + 1), _any),
        "flag": st.one_of(st.booleans(), _any),
        "event_time": st.one_of(st.integers(-5, NOW + SKEW + 5), st.just(NOW + SKEW), _any),
    },
    # A missing nullable field (Python fills in null) and an unknown one.
    optional={"note": st.one_of(st.none(), st.text(max_size=5), _any), "extra": _any},
)


def _python(plan: PushPlan, events: list[Any]) -> list[tuple[bytes, bytes]] | None:
    records, problems = check_events(plan, events, NOW, SKEW)
    if problems:
        return None
    try:
        return plan.messages(records)
    except Exception:  # noqa: BLE001 - a refusal at encoding: the answer is a 422
        return None


@settings(max_examples=400, deadline=None)
@given(st.lists(_event, max_size=6), st.booleans())
def test_native_messages_are_the_python_ones_or_none(events: list[Any], two_keys: bool) -> None:
    plan = TWO_KEYS if two_keys else ONE_KEY
    assert plan.native is not None
    native = plan.native_messages(events, NOW, SKEW)
    python = _python(plan, events)
    if native is not None:
        assert python is not None, "native accepted what Python refuses"
        assert native == python
    # A refused batch takes the Python path, whose answer is the one given either way.


def test_a_clean_request_is_taken_natively_byte_for_byte() -> None:
    events = [
        {
            "user_id": f"u{i}",
            "shop": i - 3,
            "amount": i / 3,
            "ratio": None if i % 2 else 0.1,
            "qty": -i,
            "flag": bool(i % 2),
            "note": "é" * i,
            "event_time": NOW - i,
        }
        for i in range(20)
    ]
    for plan in (ONE_KEY, TWO_KEYS):
        native = plan.native_messages(events, NOW, SKEW)
        assert native is not None
        assert native == _python(plan, events)
    assert ONE_KEY.native_messages(events, NOW, SKEW)[3][0] == b"u3"  # type: ignore[index]
    assert TWO_KEYS.native_messages(events, NOW, SKEW)[3][0] == b"0\x1fu3"  # type: ignore[index]


def test_sources_with_other_forms_keep_the_python_path() -> None:
    fields = [*FIELDS, {"name": "day", "type": {"type": "int", "logicalType": "date"}}]
    source = Source(
        name="tx2",
        schema=AvroSchema.from_dict({"type": "record", "name": "Tx", "fields": fields}),
        timestamp="event_time",
    )
    assert plan_push(source, None, 7).native is None
