"""Every Avro form's normalised value, and the natural inputs that encode to it
(``schemas.avro_types``), checked through the wire format as producers and the worker see it."""

from __future__ import annotations

import io
import json
import uuid
from datetime import UTC, date, datetime, time, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import fastavro
import pyarrow as pa
import pytest
import yaml

from headwater.connectors.offline_delta import history_schema
from headwater.schemas.avro import AvroSchema, decode_wire, encode_wire
from headwater.schemas.avro_types import column
from headwater.schemas.errors import DefinitionError, EventError
from headwater.schemas.expressions import (
    ExpressionError,
    apply_filter_and_transforms,
    compile_expression,
)
from headwater.schemas.loader import load_definitions

ADDRESS = {
    "type": "record",
    "name": "Address",
    "fields": [{"name": "city", "type": "string"}, {"name": "zip", "type": ["null", "int"]}],
}


def _schema(avro_type: Any, name: str = "x") -> AvroSchema:
    return AvroSchema.from_dict(
        {"type": "record", "name": "R", "fields": [{"name": name, "type": avro_type}]}
    )


def _producer_bytes(schema: AvroSchema, value: Any) -> bytes:
    """What a Confluent producer writes: fastavro with the logical types, behind a header."""
    buf = io.BytesIO()
    buf.write(b"\x00\x00\x00\x00\x01")
    fastavro.schemaless_writer(buf, fastavro.parse_schema(dict(schema.definition)), {"x": value})
    return buf.getvalue()


T = datetime(2026, 11, 26, 15, 4, 5, 123456, tzinfo=UTC)
T_MS = 1_795_705_445_123
CASES = [
    # (Avro type, what a producer holds, the normalised value, its type name)
    ({"type": "long", "logicalType": "timestamp-millis"}, T, T_MS, "timestamp"),
    ({"type": "long", "logicalType": "timestamp-micros"}, T, T_MS, "timestamp"),  # floored
    (
        {"type": "long", "logicalType": "local-timestamp-millis"},
        T.replace(tzinfo=None),
        T_MS,
        "timestamp",
    ),
    (
        {"type": "long", "logicalType": "local-timestamp-micros"},
        T.replace(tzinfo=None),
        T_MS,
        "timestamp",
    ),
    ({"type": "int", "logicalType": "date"}, date(1969, 7, 20), "1969-07-20", "date"),
    ({"type": "int", "logicalType": "time-millis"}, time(15, 4, 5, 123000), 54_245_123, "time"),
    ({"type": "long", "logicalType": "time-micros"}, time(15, 4, 5, 123999), 54_245_123, "time"),
    (
        {"type": "bytes", "logicalType": "decimal", "precision": 9, "scale": 2},
        Decimal("-1234.56"),
        -1234.56,
        "decimal",
    ),
    (
        {
            "type": "fixed",
            "name": "D",
            "size": 5,
            "logicalType": "decimal",
            "precision": 9,
            "scale": 3,
        },
        Decimal("12.345"),
        12.345,
        "decimal",
    ),
    (
        {"type": "string", "logicalType": "uuid"},
        uuid.UUID("123e4567-e89b-12d3-a456-426614174000"),
        "123e4567-e89b-12d3-a456-426614174000",
        "string",
    ),
    ({"type": "enum", "name": "S", "symbols": ["A", "B"]}, "B", "B", "enum"),
    ({"type": "fixed", "name": "H", "size": 3}, b"\x00\xff\x10", "AP8Q", "bytes"),
    ("bytes", b"hi", "aGk=", "bytes"),
    (["null", "long"], 5, 5, "long"),
    (["long", "null"], None, None, "long"),
    (ADDRESS, {"city": "Oslo", "zip": None}, {"city": "Oslo", "zip": None}, "record"),
    (
        {"type": "array", "items": {"type": "int", "logicalType": "date"}},
        [date(1970, 1, 2)],
        ["1970-01-02"],
        "array",
    ),
    ({"type": "map", "values": "bytes"}, {"k": b"\x01"}, {"k": "AQ=="}, "map"),
    (["null", {"type": "long", "logicalType": "timestamp-micros"}], T, T_MS, "timestamp"),
]


@pytest.mark.parametrize(("avro_type", "produced", "normalised", "kind"), CASES)
def test_a_producers_value_decodes_to_the_normalised_value(
    avro_type: Any, produced: Any, normalised: Any, kind: str
) -> None:
    schema = _schema(avro_type)
    assert schema.field_types["x"] == kind
    decoded = decode_wire(_producer_bytes(schema, produced), schema)
    assert decoded == {"x": normalised}
    # The normalised value fits the history's column exactly and reads back equal.
    history = history_schema(schema.arrow_types)
    table = pa.Table.from_pylist([decoded], schema=pa.schema([history.field("x")]))
    # Arrow reads a map back as its (key, value) pairs: why features only count maps.
    stored = {"x": list(normalised.items())} if kind == "map" else decoded
    assert table.to_pylist() == [stored]


@pytest.mark.parametrize(("avro_type", "produced", "normalised", "kind"), CASES)
def test_normalised_and_natural_values_encode_to_what_a_producer_writes(
    avro_type: Any, produced: Any, normalised: Any, kind: str
) -> None:
    schema = _schema(avro_type)
    wire = _producer_bytes(schema, produced)
    if kind not in ("timestamp", "time") or produced is None:  # the others lose nothing
        assert encode_wire(schema, 1, {"x": normalised}) == wire
    assert encode_wire(schema, 1, {"x": produced}) == wire


@pytest.mark.parametrize(
    ("avro_type", "given", "normalised"),
    [
        ({"type": "long", "logicalType": "timestamp-millis"}, "2026-11-26T15:04:05.123Z", T_MS),
        ({"type": "long", "logicalType": "timestamp-micros"}, T_MS, T_MS),
        ({"type": "long", "logicalType": "timestamp-micros"}, str(T_MS), T_MS),
        (
            {"type": "long", "logicalType": "local-timestamp-millis"},
            "2026-11-26T15:04:05.123",
            T_MS,
        ),
        ({"type": "int", "logicalType": "date"}, "1969-07-20", "1969-07-20"),
        ({"type": "int", "logicalType": "date"}, -165, "1969-07-20"),  # days, Connect's form
        ({"type": "int", "logicalType": "time-millis"}, "15:04:05.123", 54_245_123),
        ({"type": "long", "logicalType": "time-micros"}, 54_245_123, 54_245_123),
        ({"type": "bytes", "logicalType": "decimal", "precision": 9, "scale": 2}, "12.3", 12.3),
        ({"type": "bytes", "logicalType": "decimal", "precision": 9, "scale": 2}, 12.3, 12.3),
        ({"type": "bytes", "logicalType": "decimal", "precision": 9, "scale": 2}, 7, 7.0),
        (
            {"type": "string", "logicalType": "uuid"},
            "123E4567-E89B-12D3-A456-426614174000",
            "123e4567-e89b-12d3-a456-426614174000",
        ),
        ({"type": "fixed", "name": "H", "size": 3}, "AP8Q", "AP8Q"),
        (ADDRESS, '{"city": "Oslo", "zip": 1}', {"city": "Oslo", "zip": 1}),  # JSON text (CSV)
        ({"type": "array", "items": "long"}, "[1, 2]", [1, 2]),
        ({"type": "map", "values": "long"}, [("a", 1)], {"a": 1}),  # Arrow's map pairs
    ],
)
def test_natural_inputs_people_push_and_ingest(avro_type: Any, given: Any, normalised: Any) -> None:
    schema = _schema(avro_type)
    assert decode_wire(encode_wire(schema, 1, {"x": given}), schema) == {"x": normalised}


@pytest.mark.parametrize(
    ("avro_type", "given", "fragments"),
    [
        (
            {"type": "long", "logicalType": "timestamp-millis"},
            "2026-11-26T15:04:05",
            ["no time zone", "'Z'"],
        ),
        ({"type": "long", "logicalType": "timestamp-millis"}, "noon", ["not a time", "ISO-8601"]),
        ({"type": "int", "logicalType": "date"}, "26/11/2026", ["'YYYY-MM-DD'"]),
        (
            {"type": "int", "logicalType": "date"},
            datetime(2026, 1, 1, tzinfo=UTC),
            ["a date and time"],
        ),
        ({"type": "int", "logicalType": "time-millis"}, "25:00", ["time of day"]),
        (
            {"type": "bytes", "logicalType": "decimal", "precision": 5, "scale": 2},
            "1.234",
            ["more than 2 decimal places"],
        ),
        (
            {"type": "bytes", "logicalType": "decimal", "precision": 5, "scale": 2},
            "12345.6",
            ["more than 5 digits"],
        ),
        (
            {"type": "bytes", "logicalType": "decimal", "precision": 5, "scale": 2},
            "NaN",
            ["finite"],
        ),
        ({"type": "string", "logicalType": "uuid"}, "not-a-uuid", ["expected a UUID"]),
        ({"type": "fixed", "name": "H", "size": 3}, "AAAAAA==", ["exactly 3 bytes (fixed), got 4"]),
        ("bytes", "%%%", ["not base64"]),
        ({"type": "array", "items": "long"}, "not json", ["expected an array"]),
    ],
)
def test_bad_values_name_the_field_and_the_fix(
    avro_type: Any, given: Any, fragments: list[str]
) -> None:
    schema = _schema(avro_type)
    with pytest.raises(EventError) as info:
        encode_wire(schema, 1, {"x": given})
    assert info.value.field == "x"
    assert info.value.reason == "schema"
    for fragment in fragments:
        assert fragment in str(info.value)


def test_a_bad_value_inside_a_nested_record_is_named_by_its_path() -> None:
    schema = AvroSchema.from_dict(
        {
            "type": "record",
            "name": "R",
            "fields": [
                {
                    "name": "order",
                    "type": {
                        "type": "record",
                        "name": "Order",
                        "fields": [{"name": "day", "type": {"type": "int", "logicalType": "date"}}],
                    },
                }
            ],
        }
    )
    with pytest.raises(EventError) as info:
        encode_wire(schema, 1, {"order": {"day": "yesterday"}})
    assert info.value.field == "order.day"
    assert "'order.day'" in str(info.value)


def test_a_value_with_no_normalised_form_is_an_event_error_not_a_crash() -> None:
    schema = _schema({"type": "int", "logicalType": "date"})
    payload = encode_wire(schema, 1, {"x": 10**7})  # day 10**7: year 29349
    with pytest.raises(EventError) as info:
        decode_wire(payload, schema)
    assert (info.value.field, info.value.reason) == ("x", "schema")


def test_nested_records_give_dotted_field_types_and_columns() -> None:
    schema = AvroSchema.from_dict(
        {
            "type": "record",
            "name": "R",
            "fields": [
                {"name": "address", "type": ADDRESS},
                {"name": "billing", "type": ["null", "Address"]},  # a named reference
            ],
        }
    )
    assert schema.field_types == {
        "address": "record",
        "address.city": "string",
        "address.zip": "int",
        "billing": "record",
        "billing.city": "string",
        "billing.zip": "int",
    }
    assert schema.nullable == {"address.zip", "billing", "billing.city", "billing.zip"}
    rows = [
        {"address": {"city": "Oslo", "zip": 1}, "billing": None},
        {"address": {"city": "Rome", "zip": None}, "billing": {"city": "Bern", "zip": 3}},
    ]
    history = history_schema(schema.arrow_types)
    assert history.names == ["address", "billing", *history_schema({}).names]
    table = pa.Table.from_pylist(
        rows, schema=pa.schema([history.field("address"), history.field("billing")])
    )
    assert column(table, "address.city").to_pylist() == ["Oslo", "Rome"]
    assert column(table, "billing.city").to_pylist() == [None, "Bern"]  # null record: null field


def test_the_registry_keeps_the_logical_types_and_the_wire_is_unchanged() -> None:
    """Reading the physical schema changes nothing a standard consumer sees."""
    avro_type = {"type": "long", "logicalType": "timestamp-millis"}
    schema = _schema(avro_type)
    assert schema.definition["fields"][0]["type"] == avro_type
    payload = encode_wire(schema, 1, {"x": T_MS})
    plain = fastavro.schemaless_reader(
        io.BytesIO(payload[5:]), fastavro.parse_schema(dict(schema.definition))
    )
    assert plain == {"x": T.replace(microsecond=123000)}


def test_local_timestamps_are_read_as_utc_and_other_zones_are_converted() -> None:
    schema = _schema({"type": "long", "logicalType": "timestamp-millis"})
    paris = datetime(2026, 11, 26, 16, 4, 5, 123000, tzinfo=timezone(timedelta(hours=1)))
    assert decode_wire(encode_wire(schema, 1, {"x": paris}), schema) == {"x": T_MS}
    local = _schema({"type": "long", "logicalType": "local-timestamp-millis"})
    naive = datetime(2026, 11, 26, 15, 4, 5, 123000)
    assert decode_wire(encode_wire(local, 1, {"x": naive}), local) == {"x": T_MS}


# --- forms in definitions and expressions ------------------------------------------------------

FORMS_SCHEMA = {
    "type": "record",
    "name": "E",
    "fields": [
        {"name": "id", "type": "string"},
        {"name": "at", "type": {"type": "long", "logicalType": "timestamp-micros"}},
        {"name": "address", "type": ADDRESS},
        {"name": "tags", "type": {"type": "array", "items": "string"}},
        {"name": "attrs", "type": {"type": "map", "values": "long"}},
        {
            "name": "amount",
            "type": {"type": "bytes", "logicalType": "decimal", "precision": 9, "scale": 2},
        },
        {"name": "day", "type": {"type": "int", "logicalType": "date"}},
    ],
}


def _definitions(
    tmp_path: Path, features: list[dict[str, Any]], timestamp: str = "at", **extra: Any
) -> Path:
    (tmp_path / "e.avsc").write_text(json.dumps(FORMS_SCHEMA))
    doc = {
        "entities": [{"name": "thing", "keys": ["id"]}],
        "sources": [{"name": "events", "schema": "e.avsc", "timestamp": timestamp}],
        "feature_sets": [
            {"name": "fs", "entity": "thing", "source": "events", "features": features, **extra}
        ],
    }
    (tmp_path / "defs.yaml").write_text(yaml.safe_dump(doc))
    return tmp_path / "defs.yaml"


def test_features_filters_and_transforms_over_nested_fields_and_logical_types(
    tmp_path: Path,
) -> None:
    path = _definitions(
        tmp_path,
        [
            {"name": "city", "function": "last", "field": "address.city"},
            {"name": "spend", "function": "sum", "field": "amount"},
            {"name": "tags", "function": "last_n", "field": "tags", "n": 3},
            {"name": "n_attrs", "function": "max", "field": "n_attrs"},
            {"name": "first_day", "function": "min", "field": "day"},
        ],
        filter="address.city != 'x' and year(at) > 2000 and day >= '2020-01-01'",
        transforms={"n_attrs": "size(attrs) + size(tags)"},
    )
    fs = load_definitions(path).feature_set("fs")
    assert [f.field for f in fs.features][:2] == ["address.city", "amount"]


@pytest.mark.parametrize(
    ("feature", "timestamp", "fragments"),
    [
        (
            {"name": "f", "function": "last", "field": "attrs"},
            "at",
            ["last cannot take the map 'attrs'", "use count"],
        ),
        (
            {"name": "f", "function": "count_distinct", "field": "tags"},
            "at",
            ["count_distinct cannot take the array", "size(tags)"],
        ),
        (
            {"name": "f", "function": "max", "field": "address"},
            "at",
            ["max cannot take the record", "a.b"],
        ),
        (
            {"name": "f", "function": "count"},
            "address.city",
            ["'address.city' is a field of a nested record", "top-level"],
        ),
        ({"name": "f", "function": "count"}, "day", ["'day' is a date field", "timestamp-millis"]),
    ],
)
def test_definitions_refuse_what_a_form_cannot_do(
    tmp_path: Path, feature: dict[str, Any], timestamp: str, fragments: list[str]
) -> None:
    with pytest.raises(DefinitionError) as info:
        load_definitions(_definitions(tmp_path, [feature], timestamp))
    for fragment in fragments:
        assert fragment in str(info.value)


def test_nested_fields_and_size_evaluate_on_arrow_batches() -> None:
    schema = AvroSchema.from_dict(FORMS_SCHEMA)
    rows = [
        {
            "id": "a",
            "at": 1,
            "address": {"city": "Oslo", "zip": 1},
            "tags": ["p", "q"],
            "attrs": {"k": 1},
            "amount": 1.5,
            "day": "2024-02-29",
        },
        {
            "id": "b",
            "at": 2,
            "address": {"city": "Rome", "zip": None},
            "tags": [],
            "attrs": {},
            "amount": 2.0,
            "day": "2019-12-31",
        },
    ]
    history = history_schema(schema.arrow_types)
    table = pa.Table.from_pylist(rows, schema=pa.schema([history.field(n) for n in schema.forms]))
    transforms = {"n": compile_expression("size(tags) + size(attrs)", schema.field_types)}
    condition = compile_expression(
        "address.city == 'Oslo' or day < '2020-01-01'", schema.field_types
    )
    out = apply_filter_and_transforms(table, condition, transforms)
    assert out.column("n").to_pylist() == [3, 0]
    assert compile_expression("amount * 2", schema.field_types).evaluate(table).to_pylist() == [
        3.0,
        4.0,
    ]
    assert compile_expression("address.zip", schema.field_types).evaluate(table).to_pylist() == [
        1,
        None,
    ]
    with pytest.raises(ExpressionError, match="size\\(tags\\) gives its number of items"):
        compile_expression("tags == 1", schema.field_types)
