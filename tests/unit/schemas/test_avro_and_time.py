"""Avro in the Confluent wire format, event times (DESIGN §4) and durations (DESIGN §5)."""

from __future__ import annotations

import io
import json
import struct
from datetime import UTC, datetime, timedelta, timezone

import fastavro
import pytest

from headwater.schemas.avro import (
    AvroSchema,
    WireEncoder,
    decode_wire,
    encode_wire,
    event_time_ms,
    split_wire,
)
from headwater.schemas.durations import format_duration, parse_duration
from headwater.schemas.errors import EventError

V1 = AvroSchema.from_dict(
    {
        "type": "record",
        "name": "Txn",
        "fields": [
            {"name": "user_id", "type": "string"},
            {"name": "amount", "type": ["null", "double"]},
            {"name": "event_time", "type": "long"},
        ],
    }
)
# V1 plus a field with a default: a BACKWARD-compatible change (DESIGN §5).
V2 = AvroSchema.from_dict(
    {
        "type": "record",
        "name": "Txn",
        "fields": [
            *V1.definition["fields"],
            {"name": "channel", "type": "string", "default": "web"},
        ],
    }
)
RECORD = {"user_id": "u1", "amount": 12.5, "event_time": 1_700_000_000_123}


# ---------------------------------------------------------------------------- wire format


@pytest.mark.parametrize("schema_id", [0, 1, 258, 2**31, 2**32 - 1])
def test_encode_decode_round_trip_with_confluent_header(schema_id: int) -> None:
    payload = encode_wire(V1, schema_id, RECORD)

    assert payload[0] == 0
    assert payload[1:5] == struct.pack(">I", schema_id)
    sid, body = split_wire(payload)
    assert sid == schema_id
    expected_body = io.BytesIO()
    fastavro.schemaless_writer(expected_body, V1.parsed, RECORD)
    assert bytes(body) == expected_body.getvalue()
    assert decode_wire(payload, V1) == RECORD


def test_null_in_a_nullable_field_round_trips() -> None:
    record = {**RECORD, "amount": None}
    assert decode_wire(encode_wire(V1, 3, record), V1) == record


def test_wire_bytes_are_readable_by_plain_fastavro() -> None:
    """A standard consumer skips 5 header bytes and reads the Avro body."""
    payload = encode_wire(V1, 9, RECORD)
    assert fastavro.schemaless_reader(io.BytesIO(payload[5:]), V1.parsed) == RECORD


@pytest.mark.parametrize(
    "payload",
    [b"", b"\x00\x00\x01", b'{"user_id": "u1"}', b"\x01\x00\x00\x00\x01\x02u1", b"\xff" * 10],
    ids=["empty", "short", "json", "magic 1", "junk"],
)
def test_split_wire_refuses_non_wire_bytes(payload: bytes) -> None:
    with pytest.raises(EventError) as info:
        split_wire(payload)
    assert info.value.reason == "undecodable"
    assert "wire format" in str(info.value)
    assert f"got {len(payload)} bytes" in str(info.value)
    with pytest.raises(EventError) as info:
        decode_wire(payload, V1)
    assert info.value.reason == "undecodable"


def test_truncated_body_is_undecodable() -> None:
    payload = encode_wire(V1, 1, RECORD)
    with pytest.raises(EventError) as info:
        decode_wire(payload[:-3], V1)
    assert info.value.reason == "undecodable"
    assert "'Txn'" in str(info.value)


@pytest.mark.parametrize(
    ("record", "fragment"),
    [
        ({"amount": 1.0, "event_time": 5}, "no value and no default for user_id"),
        ({**RECORD, "event_time": "noon"}, "on field event_time"),
    ],
    ids=["missing field", "wrong type"],
)
def test_encode_refuses_records_that_do_not_match(record: dict[str, object], fragment: str) -> None:
    with pytest.raises(EventError) as info:
        encode_wire(V1, 1, record)
    assert info.value.reason == "schema"
    assert "'Txn'" in str(info.value)
    assert fragment in str(info.value)


@pytest.mark.parametrize("schema_id", [-1, 2**32])
def test_encode_refuses_schema_ids_that_do_not_fit(schema_id: int) -> None:
    with pytest.raises(ValueError, match=f"schema id {schema_id}"):
        encode_wire(V1, schema_id, RECORD)


def test_an_encoder_writes_the_bytes_of_encode_wire_for_every_record() -> None:
    """The push endpoint and ``encode_wire`` share one encoding (``WireEncoder``)."""
    encoder = WireEncoder(V1, 258)
    records = [RECORD, {**RECORD, "amount": None}, {**RECORD, "user_id": "u2"}]
    assert [encoder.encode(r) for r in records] == [encode_wire(V1, 258, r) for r in records]
    # Physical values (what the push endpoint's validation yields) skip the conversion.
    assert encoder.encode_physical(RECORD) == encode_wire(V1, 258, RECORD)
    with pytest.raises(EventError, match="on field event_time") as info:
        encoder.encode_physical({**RECORD, "event_time": "noon"})
    assert info.value.reason == "schema"
    with pytest.raises(ValueError, match="schema id 4294967296"):
        WireEncoder(V1, 2**32)


def test_reader_schema_with_an_added_default_field_decodes_old_events() -> None:
    old = encode_wire(V1, 1, RECORD)
    assert decode_wire(old, V1, V2) == {**RECORD, "channel": "web"}
    new = encode_wire(V2, 2, {**RECORD, "channel": "app"})
    assert decode_wire(new, V2) == {**RECORD, "channel": "app"}
    # A reader that drops a field (V1 reading V2 data) ignores it.
    assert decode_wire(new, V2, V1) == RECORD


def test_schema_field_types_and_nullability() -> None:
    schema = AvroSchema.from_dict(
        {
            "type": "record",
            "name": "E",
            "fields": [
                {"name": "ts", "type": {"type": "long", "logicalType": "timestamp-millis"}},
                {"name": "n", "type": ["null", "long"]},
                {"name": "u", "type": ["string", "long"]},
            ],
        }
    )
    assert dict(schema.field_types) == {"ts": "timestamp", "n": "long", "u": "union"}
    assert schema.nullable == frozenset({"n"})
    assert V2.canonical == AvroSchema.from_dict(dict(V2.definition)).canonical


def test_timestamp_millis_field_decodes_to_the_same_event_time() -> None:
    schema = AvroSchema.from_dict(
        {
            "type": "record",
            "name": "E",
            "fields": [{"name": "ts", "type": {"type": "long", "logicalType": "timestamp-millis"}}],
        }
    )
    for ms in (1_700_000_000_123, -1, 0):
        decoded = decode_wire(encode_wire(schema, 1, {"ts": ms}), schema)
        assert event_time_ms(decoded["ts"], "ts") == ms


@pytest.mark.parametrize("text", ["[1, 2]", '"string"'])
def test_schema_that_is_not_an_object_is_a_value_error(text: str) -> None:
    with pytest.raises(ValueError, match="record"):
        AvroSchema.from_dict(json.loads(text))


# ---------------------------------------------------------------------------- event time


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (1_700_000_000_123, 1_700_000_000_123),
        (0, 0),
        (-86_400_000, -86_400_000),
        ("2023-11-14T22:13:20.123Z", 1_700_000_000_123),
        ("2023-11-14T22:13:20Z", 1_700_000_000_000),
        ("2023-11-14T22:13:20.123+00:00", 1_700_000_000_123),
        ("2023-11-15T00:13:20.123+02:00", 1_700_000_000_123),
        ("2023-11-14T17:13:20.123-05:00", 1_700_000_000_123),
        ("2023-11-14T22:13:20.123999Z", 1_700_000_000_123),  # microseconds truncate
        ("1970-01-01T00:00:00.000999Z", 0),
        ("1969-12-31T23:59:59.999500Z", -1),  # floor, not toward zero
        ("1969-12-31T23:59:59.000001Z", -1000),
        ("1960-01-01T00:00:00Z", -315_619_200_000),
        (datetime(2023, 11, 14, 22, 13, 20, 123_456, tzinfo=UTC), 1_700_000_000_123),
        (
            datetime(2023, 11, 15, 0, 13, 20, 123_000, tzinfo=timezone(timedelta(hours=2))),
            1_700_000_000_123,
        ),
    ],
)
def test_event_time_ms(value: object, expected: int) -> None:
    assert event_time_ms(value, "event_time") == expected


@pytest.mark.parametrize(
    "value",
    [
        "2023-11-14T22:13:20",
        "2023-11-14T22:13:20.123",
        "2023-11-14",
        datetime(2023, 11, 14, 22, 13, 20),
    ],
)
def test_naive_time_is_refused_with_a_hint_about_the_zone(value: object) -> None:
    with pytest.raises(EventError) as info:
        event_time_ms(value, "event_time")
    message = str(info.value)
    assert "time zone" in message and "'Z'" in message
    assert "2023-11-14" in message and "'event_time'" in message
    assert (info.value.field, info.value.reason) == ("event_time", "timestamp")


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        ("yesterday", "'yesterday' is not an ISO-8601 time"),
        ("", "is not an ISO-8601 time"),
        ("2023-13-45T99:00:00Z", "is not an ISO-8601 time"),
        (None, "missing"),
        (True, "missing"),
        (1.7e12, "float is not a time"),
        ([1, 2], "list is not a time"),
    ],
)
def test_garbage_event_time_is_refused(value: object, fragment: str) -> None:
    with pytest.raises(EventError) as info:
        event_time_ms(value, "ts")
    assert fragment in str(info.value)
    assert "'ts'" in str(info.value)
    assert (info.value.field, info.value.reason) == ("ts", "timestamp")


# ---------------------------------------------------------------------------- durations


@pytest.mark.parametrize(
    ("text", "ms"),
    [
        ("1s", 1_000),
        ("90s", 90_000),
        ("15m", 900_000),
        ("1h", 3_600_000),
        ("7d", 604_800_000),
        (" 2h ", 7_200_000),
        ("2 h", 7_200_000),
        ("365d", 31_536_000_000),
    ],
)
def test_parse_duration(text: str, ms: int) -> None:
    assert parse_duration(text) == ms


@pytest.mark.parametrize(
    ("ms", "text"),
    [(1_000, "1s"), (90_000, "90s"), (60_000, "1m"), (5_400_000, "90m"), (3_600_000, "1h"), (86_400_000, "1d"),
     (90_000_000, "25h"), (604_800_000, "7d")],
)  # fmt: skip
def test_format_duration_is_the_shortest_exact_spelling(ms: int, text: str) -> None:
    assert format_duration(ms) == text
    assert parse_duration(text) == ms


@pytest.mark.parametrize(
    "ms", [1_000 * n for n in (1, 59, 60, 61, 3599, 3600, 86_399, 86_400, 1_000_000)]
)
def test_format_then_parse_round_trips(ms: int) -> None:
    assert parse_duration(format_duration(ms)) == ms


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        ("90x", "got '90x'; expected a positive duration"),
        ("1.5h", "got '1.5h'"),
        ("-1h", "got '-1h'"),
        ("0s", "got '0s'"),
        ("", "got ''"),
        ("h", "got 'h'"),
        ("1h30m", "got '1h30m'"),
        ("100ms", "got '100ms'"),
        (5, "bare number 5; write a duration with a unit, e.g. '5s' or '5m'"),
        (0, "bare number 0"),
    ],
)
def test_parse_duration_errors_name_the_value_and_the_accepted_forms(
    value: object, fragment: str
) -> None:
    with pytest.raises(ValueError) as info:
        parse_duration(value)  # type: ignore[arg-type]
    assert fragment in str(info.value)
    if isinstance(value, str):
        assert "'30s', '15m', '1h' or '7d'" in str(info.value)
