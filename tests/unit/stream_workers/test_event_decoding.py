"""``EventDecoder.decode``: a batch decoded natively and one decoded event by event give the
same table, the same bad events with the same reasons, and the same positions."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from headwater.connectors.catalog import Catalog
from headwater.connectors.kafka import RawMessage
from headwater.schemas.avro import AvroSchema, encode_wire
from headwater.schemas.avro_batch import NativeBatchDecoder
from headwater.schemas.definitions import Source
from headwater.stream_workers.event_decoding import DecodedBatch, EventDecoder

NOW = 1_800_000_000_000
SKEW = 60_000
FIELDS: list[dict[str, Any]] = [
    {"name": "user_id", "type": ["null", "string"]},
    {"name": "amount", "type": ["null", "double"]},
    {"name": "event_time", "type": ["null", {"type": "long", "logicalType": "timestamp-millis"}]},
    {
        "name": "address",
        "type": {"type": "record", "name": "A", "fields": [{"name": "city", "type": "string"}]},
    },
]
SCHEMA = AvroSchema.from_dict({"type": "record", "name": "T", "fields": FIELDS})
# The same events written by a producer that added a field: another schema id.
EVOLVED = AvroSchema.from_dict(
    {
        "type": "record",
        "name": "T",
        "fields": [*FIELDS, {"name": "extra", "type": "int", "default": 0}],
    }
)


def _event(i: int, **changes: Any) -> dict[str, Any]:
    return {
        "user_id": f"u{i % 3}",
        "amount": i * 1.25,
        "event_time": NOW - 1_000 * i,
        "address": {"city": f"c{i}"},
        **changes,
    }


def _decoders(tmp_path: Path) -> tuple[EventDecoder, EventDecoder, int, int]:
    catalog = Catalog(f"sqlite:///{tmp_path / 'c.db'}")
    source = Source(name="t", schema=SCHEMA, timestamp="event_time")
    own = catalog.register_schema(source.subject, SCHEMA)
    evolved = catalog.register_schema("other-value", EVOLVED)
    decoders = [
        EventDecoder(source, catalog, SKEW, ["user_id"], [], native=native)
        for native in (True, False)
    ]
    return decoders[0], decoders[1], own, evolved


def _messages(
    events: list[dict[str, Any] | None], schema_id: int, schema: AvroSchema = SCHEMA
) -> list[RawMessage]:
    return [
        RawMessage(
            i % 2, 100 + i, b"k", None if e is None else encode_wire(schema, schema_id, e), NOW
        )
        for i, e in enumerate(events)
    ]


def _same(a: DecodedBatch, b: DecodedBatch) -> None:
    assert a.table.equals(b.table)
    assert a.accepted == b.accepted
    assert a.last == b.last
    assert [(m.offset, e.reason, e.field, str(e)) for m, e in a.bad] == [
        (m.offset, e.reason, e.field, str(e)) for m, e in b.bad
    ]


def test_a_clean_batch_is_decoded_natively_into_the_same_table(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    native, python, own, _ = _decoders(tmp_path)
    messages = _messages([_event(i) for i in range(50)], own)
    calls: list[int] = []
    real = NativeBatchDecoder.decode

    def spy(self: NativeBatchDecoder, payloads: Any) -> Any:
        arrays = real(self, payloads)
        calls.append(len(payloads) if arrays is not None else -1)
        return arrays

    monkeypatch.setattr(NativeBatchDecoder, "decode", spy)
    decoded = native.decode(messages)
    assert calls == [50]  # one native call for the whole batch, which it decoded
    assert decoded.accepted == 50 and decoded.bad == []
    assert decoded.table.column("amount").to_pylist() == [i * 1.25 for i in range(50)]
    assert decoded.table.column("address").to_pylist()[7] == {"city": "c7"}
    assert decoded.last == {0: 148, 1: 149}
    _same(decoded, python.decode(messages))


@pytest.mark.parametrize(
    ("bad", "reason"),
    [
        pytest.param(_event(3, user_id=None), "missing_key", id="no entity key"),
        pytest.param(_event(3, event_time=None), "timestamp", id="no event time"),
        pytest.param(_event(3, event_time=NOW + SKEW + 1), "future", id="too far ahead"),
        pytest.param(_event(3, amount=float("nan")), "non_finite", id="NaN"),
        pytest.param(None, "undecodable", id="tombstone"),
    ],
)
def test_a_bad_event_is_named_exactly_as_event_by_event(
    tmp_path: Path, bad: dict[str, Any] | None, reason: str
) -> None:
    native, python, own, _ = _decoders(tmp_path)
    events: list[dict[str, Any] | None] = [_event(i) for i in range(6)]
    events[3] = bad
    messages = _messages(events, own)
    decoded = native.decode(messages)
    assert decoded.accepted == 5
    assert [(m.offset, e.reason) for m, e in decoded.bad] == [(103, reason)]
    _same(decoded, python.decode(messages))


def test_messages_of_another_schema_take_the_per_event_path(tmp_path: Path) -> None:
    native, python, _, evolved = _decoders(tmp_path)
    messages = _messages([{**_event(i), "extra": i} for i in range(4)], evolved, EVOLVED)
    decoded = native.decode(messages)
    assert decoded.accepted == 4
    assert "extra" not in decoded.table.column_names  # read with the source's schema
    _same(decoded, python.decode(messages))
