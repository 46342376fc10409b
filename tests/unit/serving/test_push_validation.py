"""The push endpoint's validation: every event against the source's Avro schema and time rules."""

from __future__ import annotations

from typing import Any

import pytest

from headwater.schemas.avro import AvroSchema
from headwater.schemas.definitions import Source
from headwater.serving.errors import ErrorItem
from headwater.serving.push_validation import validate_events

NOW = 1_790_000_000_000
SKEW = 300_000

SCHEMA = AvroSchema.from_dict(
    {
        "type": "record",
        "name": "Tx",
        "fields": [
            {"name": "user_id", "type": "string"},
            {"name": "amount", "type": "double"},
            {"name": "qty", "type": "int"},
            {"name": "big", "type": "long"},
            {"name": "flag", "type": "boolean"},
            {"name": "note", "type": ["null", "string"]},
            {"name": "channel", "type": "string", "default": "web"},
            {"name": "event_time", "type": "long"},
        ],
    }
)
SOURCE = Source(name="tx", schema=SCHEMA, timestamp="event_time")


def good(**over: Any) -> dict[str, Any]:
    event = {
        "user_id": "u1",
        "amount": 1.5,
        "qty": 2,
        "big": 2**40,
        "flag": True,
        "note": "x",
        "event_time": NOW - 1000,
    }
    event.update(over)
    return event


def check(events: list[Any]) -> tuple[list[dict[str, Any]], list[ErrorItem]]:
    return validate_events(SOURCE, events, now_ms=NOW, max_future_skew_ms=SKEW)


def only_error(event: dict[str, Any]) -> ErrorItem:
    records, errors = check([good(), event])
    assert len(errors) == 1, errors
    assert errors[0].index == 1
    assert len(records) == 1
    return errors[0]


def test_good_events_pass_in_order_with_defaults_and_nulls() -> None:
    events = [good(user_id=f"u{i}", event_time=NOW - i) for i in range(5)]
    events.append(good(note=None, amount=3))  # null for a nullable union, int for a double
    del events[0]["note"]  # a missing nullable field is null
    records, errors = check(events)
    assert errors == []
    assert [r["user_id"] for r in records] == ["u0", "u1", "u2", "u3", "u4", "u1"]
    assert records[0]["note"] is None
    assert records[0]["channel"] == "web"
    assert records[5]["amount"] == 3 and records[5]["note"] is None


def test_iso_times_with_a_zone_become_epoch_ms() -> None:
    records, errors = check(
        [
            good(event_time="2026-09-21T14:13:19.500Z"),
            good(event_time="2026-09-21T16:13:19.5+02:00"),
        ]
    )
    assert errors == []
    assert records[0]["event_time"] == records[1]["event_time"] == 1_790_000_000_000 - 500


@pytest.mark.parametrize(
    ("field", "value", "needle"),
    [
        ("user_id", 5, "expected a string"),
        ("amount", "1.5", "expected a number"),
        ("amount", True, "expected a number"),
        ("qty", True, "expected an integer"),
        ("qty", 1.0, "expected an integer"),
        ("qty", 2**31, "does not fit Avro int"),
        ("big", False, "expected an integer"),
        ("big", 2**63, "does not fit Avro long"),
        ("flag", 1, "expected a boolean"),
        ("note", 3, "expected a string"),
        ("user_id", None, "null is not allowed"),
        ("event_time", "2026-09-21T13:33:19", "no time zone"),
        ("event_time", "yesterday", "not an ISO-8601 time"),
        ("event_time", True, "missing"),
        ("event_time", 1.5, "not a time"),
        ("event_time", NOW + SKEW + 1, "in the future"),
    ],
)
def test_each_bad_field_names_index_field_and_reason(field: str, value: Any, needle: str) -> None:
    error = only_error(good(**{field: value}))
    assert error.field == field
    assert needle in error.reason


def test_missing_required_and_unknown_fields() -> None:
    event = good(colour="red")
    del event["amount"]
    del event["event_time"]
    records, errors = check([event])
    assert records == []
    assert [(e.index, e.field) for e in errors] == [(0, "amount"), (0, "event_time"), (0, "colour")]
    assert errors[0].reason == "required field is missing"
    assert "event time is missing" in errors[1].reason
    assert "unknown field" in errors[2].reason


def test_future_within_the_skew_is_accepted() -> None:
    _, errors = check([good(event_time=NOW + SKEW)])
    assert errors == []


def test_not_an_object_and_every_bad_event_listed_in_order() -> None:
    records, errors = check([good(), "nope", good(qty="2"), good(), good(flag=None)])
    assert [(e.index, e.field) for e in errors] == [(1, "events[1]"), (2, "qty"), (4, "flag")]
    assert "JSON object" in errors[0].reason
    assert len(records) == 2
    assert errors[1].as_dict() == {"index": 2, "field": "qty", "reason": errors[1].reason}


def test_string_timestamp_field_keeps_the_text_but_is_checked() -> None:
    schema = AvroSchema.from_dict(
        {
            "type": "record",
            "name": "S",
            "fields": [{"name": "id", "type": "string"}, {"name": "ts", "type": "string"}],
        }
    )
    source = Source(name="s", schema=schema, timestamp="ts")
    records, errors = validate_events(
        source,
        [{"id": "a", "ts": "2026-09-21T13:33:19Z"}, {"id": "b", "ts": "2026-09-21T13:33:19"}],
        now_ms=NOW,
        max_future_skew_ms=SKEW,
    )
    assert records == [{"id": "a", "ts": "2026-09-21T13:33:19Z"}]
    assert [(e.index, e.field) for e in errors] == [(1, "ts")]


def test_complex_types_fall_back_to_fastavro_validation() -> None:
    schema = AvroSchema.from_dict(
        {
            "type": "record",
            "name": "C",
            "fields": [
                {"name": "tags", "type": {"type": "array", "items": "string"}},
                {"name": "kind", "type": {"type": "enum", "name": "Kind", "symbols": ["A", "B"]}},
                {"name": "t", "type": {"type": "long", "logicalType": "timestamp-millis"}},
            ],
        }
    )
    source = Source(name="c", schema=schema, timestamp="t")
    records, errors = validate_events(
        source,
        [
            {"tags": ["x"], "kind": "A", "t": NOW},
            {"tags": [1], "kind": "C", "t": "2026-09-21T13:33:19Z"},
        ],
        now_ms=NOW,
        max_future_skew_ms=SKEW,
    )
    assert records == [{"tags": ["x"], "kind": "A", "t": NOW}]
    assert [(e.index, e.field) for e in errors] == [(1, "tags"), (1, "kind")]
