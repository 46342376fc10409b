"""The native batch decoder (``schemas.avro_batch``, ``native/``) against the per-event path:
equal values for every form it takes, and a refusal (never a wrong value) for what it must not
decode."""

from __future__ import annotations

import io
import struct
from typing import Any

import fastavro
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from headwater.schemas.avro import AvroSchema, decode_body
from headwater.schemas.avro_batch import NativeBatchDecoder, native_available, native_plan

SCHEMA_ID = 41
COLOR = {"type": "enum", "name": "Color", "symbols": ["RED", "GREEN", "BLUE"]}
DEFINITION: dict[str, Any] = {
    "type": "record",
    "name": "Event",
    "namespace": "test.native",
    "fields": [
        {"name": "id", "type": "string"},
        {"name": "n", "type": "int"},
        {"name": "big", "type": ["null", "long"]},
        {"name": "f", "type": "float"},
        {"name": "d", "type": ["double", "null"]},
        {"name": "ok", "type": "boolean"},
        {"name": "raw", "type": ["null", "bytes"]},
        {"name": "ts", "type": {"type": "long", "logicalType": "timestamp-micros"}},
        {"name": "ms", "type": {"type": "long", "logicalType": "timestamp-millis"}},
        {"name": "tm", "type": {"type": "int", "logicalType": "time-millis"}},
        {"name": "day", "type": ["null", {"type": "int", "logicalType": "date"}]},
        {"name": "u", "type": {"type": "string", "logicalType": "uuid"}},
        {"name": "color", "type": COLOR},
        {"name": "h", "type": {"type": "fixed", "name": "Hash", "size": 4}},
        {
            "name": "addr",
            "type": [
                "null",
                {
                    "type": "record",
                    "name": "Address",
                    "fields": [
                        {"name": "city", "type": "string"},
                        {"name": "zip", "type": ["null", "int"]},
                        {"name": "tone", "type": "Color"},
                        {
                            "name": "since",
                            "type": {"type": "long", "logicalType": "timestamp-micros"},
                        },
                    ],
                },
            ],
        },
        {"name": "nothing", "type": "null"},
    ],
}
SCHEMA = AvroSchema.from_dict(DEFINITION)


_long = st.integers(-(2**63), 2**63 - 1)
_int = st.integers(-(2**31), 2**31 - 1)
_days = st.integers(-719_162, 2_932_896)  # 0001-01-01 .. 9999-12-31
_text = st.text(max_size=12)
_address = st.fixed_dictionaries(
    {
        "city": _text,
        "zip": st.none() | _int,
        "tone": st.sampled_from(COLOR["symbols"]),
        "since": _long,
    }
)
_record = st.fixed_dictionaries(
    {
        "id": _text,
        "n": _int,
        "big": st.none() | _long,
        "f": st.floats(width=32, allow_nan=False),
        "d": st.none() | st.floats(allow_nan=False),
        "ok": st.booleans(),
        "raw": st.none() | st.binary(max_size=9),
        "ts": _long,
        "ms": _long,
        "tm": st.integers(0, 86_399_999),
        "day": st.none() | _days,
        "u": st.uuids().map(str),
        "color": st.sampled_from(COLOR["symbols"]),
        "h": st.binary(min_size=4, max_size=4),
        "addr": st.none() | _address,
        "nothing": st.none(),
    }
)


def _wire(record: dict[str, Any], schema_id: int = SCHEMA_ID) -> bytes:
    """A message as a producer writes it: header, then the physical record."""
    buf = io.BytesIO()
    buf.write(struct.pack(">bI", 0, schema_id))
    fastavro.schemaless_writer(buf, SCHEMA.parsed, record)
    return buf.getvalue()


def _decoder(finite: tuple[str, ...] = ()) -> NativeBatchDecoder:
    decoder = NativeBatchDecoder.for_schema(SCHEMA, SCHEMA_ID, finite)
    assert decoder is not None
    return decoder


@settings(max_examples=60, deadline=None)
@given(st.lists(_record, min_size=1, max_size=40))
def test_native_columns_equal_the_per_event_values(records: list[dict[str, Any]]) -> None:
    payloads = [_wire(r) for r in records]
    decoder = _decoder()
    arrays = decoder.decode(payloads)
    assert arrays is not None
    expected = [decode_body(p, SCHEMA, SCHEMA, offset=5) for p in payloads]
    assert decoder.names == list(SCHEMA.forms)
    for name, array, form in zip(decoder.names, arrays, SCHEMA.forms.values(), strict=True):
        assert array.type == form.arrow, name
        assert array.to_pylist() == [e[name] for e in expected], name


def test_values_that_need_care_are_normalised_like_python() -> None:
    base = {
        "id": "é🙂",
        "n": -(2**31),
        "big": 2**63 - 1,
        "f": 1.5,
        "d": -0.0,
        "ok": True,
        "raw": b"\x00\xff",
        "ts": -1,  # 1 us before the epoch: floored to -1 ms
        "ms": -(2**63),
        "tm": 0,
        "day": -719_162,
        "u": "9b2e8d8e-6c9d-4b7e-8a35-2f5f0f8b1a11",
        "color": "BLUE",
        "h": b"abcd",
        "addr": {"city": "", "zip": None, "tone": "RED", "since": -1_500},
        "nothing": None,
    }
    arrays = _decoder().decode([_wire(base)])
    assert arrays is not None
    got = {name: array.to_pylist()[0] for name, array in zip(SCHEMA.forms, arrays, strict=True)}
    assert got["ts"] == -1
    assert got["day"] == "0001-01-01"
    assert got["raw"] == "AP8="
    assert got["h"] == "YWJjZA=="
    assert got["addr"] == {"city": "", "zip": None, "tone": "RED", "since": -2}
    assert got == decode_body(_wire(base), SCHEMA, SCHEMA, offset=5)


def _one() -> dict[str, Any]:
    return {
        "id": "a",
        "n": 1,
        "big": None,
        "f": 0.5,
        "d": 2.5,
        "ok": False,
        "raw": None,
        "ts": 1,
        "ms": 2,
        "tm": 3,
        "day": None,
        "u": "x",
        "color": "RED",
        "h": b"abcd",
        "addr": None,
        "nothing": None,
    }


@pytest.mark.parametrize(
    ("payload", "finite"),
    [
        pytest.param(None, (), id="tombstone"),
        pytest.param(_wire(_one(), schema_id=SCHEMA_ID + 1), (), id="another schema id"),
        pytest.param(b"\x01" + _wire(_one())[1:], (), id="not the wire format"),
        pytest.param(_wire(_one())[:-3], (), id="truncated body"),
        pytest.param(_wire({**_one(), "d": float("nan")}), ("d",), id="NaN in a checked field"),
        pytest.param(_wire({**_one(), "f": float("inf")}), ("f",), id="inf in a checked field"),
        pytest.param(_wire(_one()).replace(b"\x02a", b"\x02\xff"), (), id="text not UTF-8"),
        pytest.param(_wire({**_one(), "day": 2_932_897}), (), id="a date after year 9999"),
    ],
)
def test_a_batch_it_must_not_decode_is_refused(
    payload: bytes | None, finite: tuple[str, ...]
) -> None:
    good = _wire(_one())
    decoder = _decoder(finite)
    assert decoder.decode([good, good]) is not None
    assert decoder.decode([good, payload, good]) is None


def test_non_finite_numbers_pass_where_nobody_checks_them() -> None:
    arrays = _decoder().decode([_wire({**_one(), "d": float("nan"), "f": float("-inf")})])
    assert arrays is not None
    assert arrays[3].to_pylist() == [float("-inf")]


@pytest.mark.parametrize(
    "avro_type",
    [
        {"type": "bytes", "logicalType": "decimal", "precision": 9, "scale": 2},
        {"type": "fixed", "name": "D", "size": 8, "logicalType": "decimal", "precision": 9},
        {"type": "array", "items": "int"},
        {"type": "map", "values": "int"},
        ["null", "int", "string"],
        ["int", "string"],
    ],
)
def test_forms_it_does_not_know_keep_the_python_path(avro_type: Any) -> None:
    definition = {"type": "record", "name": "R", "fields": [{"name": "x", "type": avro_type}]}
    assert native_plan(definition) is None
    assert NativeBatchDecoder.for_schema(AvroSchema.from_dict(definition), 1) is None


def test_the_native_extension_is_built_by_setup() -> None:
    # `make setup` builds it; a silent fallback would hide a broken build from CI.
    import headwater_native

    assert native_available
    assert hasattr(headwater_native, "AvroBatchDecoder")
