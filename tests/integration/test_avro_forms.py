"""Sources in every Avro form a real producer writes (DESIGN §8), end to end.

Events go in through confluent-kafka's ``AvroSerializer`` against ``/registry`` (what Kafka
Connect, Debezium and Confluent producers do), through a real worker into Redis and Delta;
online values (SDK), point-in-time values (SDK) and ``tests.reference.brute_force`` over
hand-normalised rows must all agree.
"""

from __future__ import annotations

import base64
import csv
import json
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, date, datetime, timedelta
from datetime import time as dt_time
from decimal import Decimal
from pathlib import Path
from typing import Any, cast

import httpx
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from confluent_kafka import Consumer, Producer

from headwater import FeatureStore
from headwater.connectors.replay import BadRowError
from headwater.ingest import ingest_files
from headwater.schemas.avro import encode_wire
from headwater.schemas.tiles import FeatureSetPlan
from tests.integration.avro_forms import FormsSource
from tests.integration.pipeline import Deployment
from tests.reference import brute_force

pytestmark = pytest.mark.integration

MINUTE = 60_000


def _check_online_offline(
    forms: FormsSource,
    events: Mapping[str, Sequence[tuple[Mapping[str, Any], int, int]]],
    field_types: Mapping[str, str],
    label_times: Sequence[int],
) -> None:
    """Online (now) and point-in-time (at ``label_times``) both equal the brute force."""
    fs = forms.feature_set()
    refs = forms.refs()
    accounts = [*sorted(events), "ghost"]
    with FeatureStore(forms.deployment.settings) as store:
        online = store.get_online_features({"account_id": accounts}, refs)
        for account, values, statuses in zip(accounts, online.values, online.statuses, strict=True):
            want, status = brute_force(
                fs, field_types, events.get(account, []), online.served_at_ms
            )
            assert values == want, account
            assert {s.value for s in statuses} == {status}, account
        labels = pa.table(
            {
                "account_id": [a for a in accounts for _ in label_times],
                "event_timestamp": pa.array([t for _ in accounts for t in label_times], pa.int64()),
            }
        )
        offline = store.get_historical_features(labels, refs)
        names = [f.name for f in fs.features]
        for row in offline.to_pylist():
            want, _ = brute_force(
                fs, field_types, events.get(row["account_id"], []), row["event_timestamp"]
            )
            assert [row[n] for n in names] == want, (row["account_id"], row["event_timestamp"])


def _produce_raw(deployment: Deployment, topic: str, value: bytes) -> None:
    producer = Producer({"bootstrap.servers": deployment.settings.kafka.bootstrap_servers})
    producer.produce(topic, value, b"acc0")
    assert producer.flush(30) == 0


def _consume_all(
    deployment: Deployment, topic: str, count: int, timeout_s: float = 30
) -> list[tuple[dict[str, bytes], bytes]]:
    """``count`` messages of ``topic`` as (headers, value)."""
    consumer = Consumer(
        {
            "bootstrap.servers": deployment.settings.kafka.bootstrap_servers,
            "group.id": f"test-forms-{uuid.uuid4().hex[:8]}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    consumer.subscribe([topic])
    got: list[tuple[dict[str, bytes], bytes]] = []
    deadline = time.monotonic() + timeout_s
    try:
        while len(got) < count and time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is None or msg.error() is not None:
                continue
            # confluent-kafka gives a consumed message's headers as (name, bytes) pairs.
            pairs = cast(list[tuple[str, bytes]], msg.headers() or [])
            got.append((dict(pairs), msg.value() or b""))
    finally:
        consumer.close()
    assert len(got) == count, f"{len(got)} of {count} messages on {topic}"
    return got


def test_timestamp_millis_event_time_from_a_confluent_producer(
    deployment: Deployment, forms_source: Callable[..., FormsSource]
) -> None:
    """Issue 12 item 1: the Connect/Debezium form of an event time must not crash the worker."""
    schema = {
        "type": "record",
        "name": "Payment",
        "namespace": "com.example.connect",
        "fields": [
            {"name": "account_id", "type": "string"},
            {"name": "amount", "type": "double"},
            {"name": "event_time", "type": {"type": "long", "logicalType": "timestamp-millis"}},
        ],
    }
    forms = forms_source(
        schema,
        [
            {"name": "n_1h", "function": "count", "window": "1h"},
            {"name": "spend_1h", "function": "sum", "field": "amount", "window": "1h"},
            {"name": "last_amount", "function": "last", "field": "amount"},
        ],
    )
    now = time.time_ns() // 1_000_000
    base = now // MINUTE * MINUTE - 50 * MINUTE
    times = [base + i * 7 * MINUTE + 123 for i in range(8)]
    # The serializer takes the datetimes a Connect producer holds, as fastavro does.
    records = [
        {
            "account_id": f"a{i % 3}",
            "amount": 1.25 * (i + 1),
            "event_time": datetime.fromtimestamp(t / 1000, UTC),
        }
        for i, t in enumerate(times)
    ]
    url = deployment.start_api()
    forms.produce(f"{url}/registry", records)
    worker = deployment.start_worker()
    forms.wait(worker)

    events: dict[str, list[tuple[Mapping[str, Any], int, int]]] = {}
    for seq, (record, t) in enumerate(zip(records, times, strict=True)):
        account = str(record["account_id"])
        row = {"account_id": account, "amount": record["amount"], "event_time": t}
        events.setdefault(account, []).append((row, t, seq))
    types = {"account_id": "string", "amount": "double", "event_time": "timestamp"}
    _check_online_offline(forms, events, types, [base, times[3], times[-1], now])
    # The history holds event times as epoch milliseconds, like event_time_ms.
    with FeatureStore(deployment.settings) as store:
        history = store.offline.history(forms.feature_set())
    assert sorted(history.column("event_time").to_pylist()) == times
    assert sorted(history.column("event_time_ms").to_pylist()) == times


# --- the matrix: every form a Confluent producer writes ------------------------------------

_ADDRESS = {
    "type": "record",
    "name": "Address",
    "fields": [
        {"name": "city", "type": "string"},
        {"name": "zip", "type": ["null", "int"], "default": None},
    ],
}
MATRIX_SCHEMA: dict[str, Any] = {
    "type": "record",
    "name": "AccountEvent",
    "namespace": "com.example.matrix",
    "fields": [
        {"name": "account_id", "type": "string"},
        {"name": "event_time", "type": {"type": "long", "logicalType": "timestamp-micros"}},
        {
            "name": "seen_at",
            "type": ["null", {"type": "long", "logicalType": "timestamp-millis"}],
            "default": None,
        },
        # null second: the other order of a nullable union
        {
            "name": "local_seen",
            "type": [{"type": "long", "logicalType": "local-timestamp-millis"}, "null"],
        },
        {
            "name": "local_seen_us",
            "type": {"type": "long", "logicalType": "local-timestamp-micros"},
        },
        {"name": "birthday", "type": {"type": "int", "logicalType": "date"}},
        {"name": "open_time", "type": {"type": "int", "logicalType": "time-millis"}},
        {"name": "close_time", "type": {"type": "long", "logicalType": "time-micros"}},
        {
            "name": "amount",
            "type": {"type": "bytes", "logicalType": "decimal", "precision": 12, "scale": 2},
        },
        {
            "name": "fee",
            "type": [
                "null",
                {
                    "type": "fixed",
                    "name": "Fee",
                    "size": 6,
                    "logicalType": "decimal",
                    "precision": 10,
                    "scale": 3,
                },
            ],
            "default": None,
        },
        {"name": "txn_uuid", "type": {"type": "string", "logicalType": "uuid"}},
        {
            "name": "status",
            "type": {
                "type": "enum",
                "name": "Status",
                "symbols": ["APPROVED", "DECLINED", "PENDING"],
            },
        },
        {"name": "card_hash", "type": {"type": "fixed", "name": "Hash4", "size": 4}},
        {"name": "channel", "type": "string", "default": "web"},
        {"name": "address", "type": _ADDRESS},
        {"name": "billing", "type": ["null", "Address"], "default": None},
        {"name": "tags", "type": {"type": "array", "items": "string"}},
        {"name": "attrs", "type": {"type": "map", "values": "long"}},
    ],
}
MATRIX_FEATURES: list[dict[str, Any]] = [
    {"name": "n_1h", "function": "count", "window": "1h"},
    {"name": "amount_1h", "function": "sum", "field": "amount", "window": "1h"},
    {"name": "fee_mean", "function": "mean", "field": "fee"},
    {"name": "seen_max", "function": "max", "field": "seen_at"},
    {"name": "local_last", "function": "last", "field": "local_seen"},
    {"name": "local_us_min", "function": "min", "field": "local_seen_us"},
    {"name": "birthday_min", "function": "min", "field": "birthday"},
    {"name": "open_first", "function": "first", "field": "open_time"},
    {"name": "close_max", "function": "max", "field": "close_time"},
    {"name": "uuids_1h", "function": "count_distinct", "field": "txn_uuid", "window": "1h"},
    {"name": "status_last", "function": "last", "field": "status"},
    {"name": "hashes", "function": "count_distinct", "field": "card_hash"},
    {"name": "hash_last", "function": "last", "field": "card_hash"},
    {"name": "channel_last", "function": "last", "field": "channel"},
    {"name": "city_last", "function": "last", "field": "address.city"},
    {"name": "zip_count", "function": "count", "field": "address.zip"},
    {"name": "billing_city_last", "function": "last", "field": "billing.city"},
    {"name": "address_last", "function": "last", "field": "address"},
    {"name": "tags_last2", "function": "last_n", "field": "tags", "n": 2},
    {"name": "attrs_count", "function": "count", "field": "attrs"},
    {"name": "n_tags_sum", "function": "sum", "field": "n_tags", "window": "1h"},
    {"name": "n_attrs_max", "function": "max", "field": "n_attrs"},
    {"name": "seen_hour_last", "function": "last", "field": "seen_hour"},
    {"name": "birth_year_max", "function": "max", "field": "birth_year"},
]
MATRIX_TRANSFORMS = {
    "n_tags": "size(tags)",
    "n_attrs": "size(attrs)",
    "seen_hour": "hour(seen_at)",
    "birth_year": "to_long(substr(birthday, 0, 4))",
}
MATRIX_FILTER = "status != 'DECLINED' and address.city != 'Nowhere'"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_EPOCH_NAIVE = datetime(1970, 1, 1)


def _matrix_records(base_ms: int, count: int) -> tuple[list[dict[str, Any]], list[int]]:
    """Records as a Connect producer holds them (Python objects fastavro serialises), and
    their event times in ms (the micros part must be floored away)."""
    records, times = [], []
    for i in range(count):
        t_ms = base_ms + i * 4 * MINUTE + (i % 5) * 17
        if i == count - 1:
            t_ms = base_ms + (i - 1) * 4 * MINUTE + ((i - 1) % 5) * 17  # a tie: arrival decides
        times.append(t_ms)
        seen = t_ms - 3_600_000 * (i % 4)
        record: dict[str, Any] = {
            "account_id": f"acc{i % 3}",
            "event_time": _EPOCH + timedelta(microseconds=t_ms * 1000 + 789),
            "seen_at": None if i % 4 == 1 else _EPOCH + timedelta(milliseconds=seen),
            "local_seen": None if i % 3 == 2 else _EPOCH_NAIVE + timedelta(milliseconds=seen + 5),
            "local_seen_us": _EPOCH_NAIVE + timedelta(microseconds=(seen + i) * 1000 + 999),
            "birthday": date(1980 + i % 30, 1 + i % 12, 1 + i % 28),
            "open_time": dt_time(8 + i % 3, 30, 15, 250_000),
            "close_time": dt_time(17, i % 60, 59, 123_456),
            "amount": Decimal(f"{10 + i}.{(i * 37) % 100:02d}"),
            "fee": None if i % 5 == 3 else Decimal(f"0.{(i * 7) % 1000:03d}"),
            "txn_uuid": uuid.UUID(int=i % 7 + 1),
            "status": ("APPROVED", "DECLINED", "PENDING")[i % 3 if i % 7 else 0],
            "card_hash": bytes([i % 4, 0xFF, 0x10, 0xAB]),
            "address": {
                "city": "Nowhere" if i == 4 else f"city{i % 4}",
                "zip": None if i % 2 else 1000 + i,
            },
            "billing": None if i % 2 else {"city": f"bill{i}", "zip": None},
            "tags": [f"t{j}" for j in range(i % 4)],
            "attrs": {f"k{j}": j for j in range(i % 3)},
        }
        if i % 2:
            record["channel"] = "app"  # else the default, "web"
        records.append(record)
    return records, times


def _by_hand(record: Mapping[str, Any], t_ms: int) -> dict[str, Any] | None:
    """The normalised row of one record, the filter and transforms, written out by hand."""
    if record["status"] == "DECLINED" or record["address"]["city"] == "Nowhere":
        return None

    def ms(value: datetime | None, epoch: datetime) -> int | None:
        return None if value is None else (value - epoch) // timedelta(milliseconds=1)

    def day_ms(value: dt_time) -> int:
        return (
            (value.hour * 60 + value.minute) * 60 + value.second
        ) * 1000 + value.microsecond // 1000

    seen = ms(record["seen_at"], _EPOCH)
    row = {
        "account_id": record["account_id"],
        "event_time": t_ms,
        "seen_at": seen,
        "local_seen": ms(record["local_seen"], _EPOCH_NAIVE),
        "local_seen_us": ms(record["local_seen_us"], _EPOCH_NAIVE),
        "birthday": record["birthday"].isoformat(),
        "open_time": day_ms(record["open_time"]),
        "close_time": day_ms(record["close_time"]),
        "amount": float(record["amount"]),
        "fee": None if record["fee"] is None else float(record["fee"]),
        "txn_uuid": str(record["txn_uuid"]),
        "status": record["status"],
        "card_hash": base64.b64encode(record["card_hash"]).decode(),
        "channel": record.get("channel", "web"),
        "address": dict(record["address"]),
        "address.city": record["address"]["city"],
        "address.zip": record["address"]["zip"],
        "billing.city": None if record["billing"] is None else record["billing"]["city"],
        "tags": list(record["tags"]),
        "attrs": dict(record["attrs"]),
        "n_tags": len(record["tags"]),
        "n_attrs": len(record["attrs"]),
        "seen_hour": None if seen is None else datetime.fromtimestamp(seen / 1000, UTC).hour,
        "birth_year": record["birthday"].year,
    }
    return row


def test_every_avro_form_from_a_confluent_producer(
    deployment: Deployment, forms_source: Callable[..., FormsSource]
) -> None:
    forms = forms_source(
        MATRIX_SCHEMA, MATRIX_FEATURES, filter=MATRIX_FILTER, transforms=MATRIX_TRANSFORMS
    )
    now = time.time_ns() // 1_000_000
    base = now // MINUTE * MINUTE - 90 * MINUTE
    records, times = _matrix_records(base, 24)
    url = deployment.start_api()
    forms.produce(f"{url}/registry", records)
    # An event whose date no calendar holds (day 10**7, year 29349): valid Avro, no value
    # Headwater can keep. It must go to the dead-letter topic, not stop the worker.
    with FeatureStore(deployment.settings) as store:
        source = store.catalog.definitions().source(forms.source)
        schema_id = store.catalog.register_schema(f"{forms.topic}-value", source.schema)
    bad = {**records[0], "birthday": 10**7}
    _produce_raw(deployment, forms.topic, encode_wire(source.schema, schema_id, bad))
    worker = deployment.start_worker()
    forms.wait(worker)

    events: dict[str, list[tuple[Mapping[str, Any], int, int]]] = {}
    for seq, (record, t) in enumerate(zip(records, times, strict=True)):
        row = _by_hand(record, t)
        if row is not None:
            events.setdefault(row["account_id"], []).append((row, t, seq))
    assert sum(map(len, events.values())) >= 12  # the filter keeps most
    with FeatureStore(deployment.settings) as store:
        defs = store.catalog.definitions()
        fs = defs.feature_set(forms.feature_set_name)
        plan = FeatureSetPlan(fs, defs.source(fs.source))
        history = store.offline.history(fs)
    _check_online_offline(
        forms, events, plan.history_types, [base - MINUTE, times[5], times[12] + 1, times[-1], now]
    )

    # The history keeps every form with a type that means it.
    types = {f.name: f.type for f in history.schema}
    assert types["event_time"] == pa.int64()
    assert types["birthday"] == pa.string()
    assert types["amount"] == pa.float64()
    assert types["card_hash"] == pa.string()
    assert pa.types.is_struct(types["address"]) and pa.types.is_struct(types["billing"])
    assert pa.types.is_list(types["tags"]) and pa.types.is_map(types["attrs"])
    kept = sorted(
        (r["event_time"], r["birthday"], r["address"], r["tags"]) for r in history.to_pylist()
    )
    want = sorted(
        (row["event_time"], row["birthday"], row["address"], row["tags"])
        for evs in events.values()
        for row, _, _ in evs
    )
    assert kept == want
    dead = _consume_all(deployment, f"dlq.{forms.source}", 1)
    assert dead[0][0]["hw.reason"] == b"schema"
    assert dead[0][0]["hw.field"] == b"birthday"
    assert worker.alive()


# --- push and file ingest of the same forms ----------------------------------------------------

PUSH_SCHEMA: dict[str, Any] = {
    "type": "record",
    "name": "Purchase",
    "fields": [
        {"name": "account_id", "type": "string"},
        {"name": "event_time", "type": {"type": "long", "logicalType": "timestamp-micros"}},
        {
            "name": "birthday",
            "type": ["null", {"type": "int", "logicalType": "date"}],
            "default": None,
        },
        {
            "name": "amount",
            "type": {"type": "bytes", "logicalType": "decimal", "precision": 9, "scale": 2},
        },
        {"name": "card_hash", "type": {"type": "fixed", "name": "Hash3", "size": 3}},
        {"name": "address", "type": _ADDRESS},
        {"name": "tags", "type": {"type": "array", "items": "string"}},
    ],
}
PUSH_FEATURES: list[dict[str, Any]] = [
    {"name": "n", "function": "count"},
    {"name": "spend_1h", "function": "sum", "field": "amount", "window": "1h"},
    {"name": "birthday_max", "function": "max", "field": "birthday"},
    {"name": "hash_last", "function": "last", "field": "card_hash"},
    {"name": "city_last", "function": "last", "field": "address.city"},
    {"name": "tags_last", "function": "last", "field": "tags"},
    {"name": "n_tags", "function": "sum", "field": "n_tags", "window": "1h"},
]


def _natural_rows(base: int, count: int) -> list[dict[str, Any]]:
    """JSON-friendly events: ISO or epoch-ms times, ISO dates, decimal text, base64 bytes."""
    rows = []
    for i in range(count):
        t = base + i * 3 * MINUTE + i
        rows.append(
            {
                "account_id": f"acc{i % 2}",
                "event_time": t if i % 2 else datetime.fromtimestamp(t / 1000, UTC).isoformat(),
                "birthday": None if i % 3 == 0 else f"19{70 + i}-0{1 + i % 9}-1{i % 10}",
                "amount": f"{i}.{i:02d}" if i % 2 else 1.25 * i,
                "card_hash": base64.b64encode(bytes([i, 1, 2])).decode(),
                "address": {"city": f"c{i % 3}", "zip": i},
                "tags": ["x"] * (i % 3),
            }
        )
    return rows


def _expected(
    rows: Sequence[Mapping[str, Any]], base_seq: int = 0
) -> dict[str, list[tuple[Mapping[str, Any], int, int]]]:
    events: dict[str, list[tuple[Mapping[str, Any], int, int]]] = {}
    for seq, raw in enumerate(rows, base_seq):
        t = raw["event_time"]
        t_ms = (
            t
            if isinstance(t, int)
            else (datetime.fromisoformat(t) - _EPOCH) // timedelta(milliseconds=1)
        )
        row = {
            "account_id": raw["account_id"],
            "amount": float(Decimal(str(raw["amount"]))),
            "birthday": raw["birthday"],
            "card_hash": raw["card_hash"],
            "address.city": raw["address"]["city"],
            "tags": raw["tags"],
            "n_tags": len(raw["tags"]),
        }
        events.setdefault(row["account_id"], []).append((row, t_ms, seq))
    return events


def test_push_takes_natural_json_for_every_form_and_refuses_bad_values_by_field(
    deployment: Deployment, forms_source: Callable[..., FormsSource]
) -> None:
    forms = forms_source(PUSH_SCHEMA, PUSH_FEATURES, transforms={"n_tags": "size(tags)"})
    now = time.time_ns() // 1_000_000
    base = now // MINUTE * MINUTE - 45 * MINUTE
    rows = _natural_rows(base, 12)
    url = deployment.start_api()
    push = f"{url}/v1/push/{forms.source}"
    with httpx.Client(timeout=30) as client:
        bad = [
            *rows[:2],
            {**rows[2], "amount": "1.234", "birthday": "26/11/2026"},
            {**rows[3], "card_hash": "not base64!", "address": {"city": "c", "zip": "nine"}},
            {**rows[4], "event_time": "2026-11-26T10:00:00"},
        ]
        refused = client.post(push, json={"events": bad})
        assert refused.status_code == 422, refused.text
        problems = {(e["index"], e["field"]): e["reason"] for e in refused.json()["errors"]}
        assert set(problems) == {
            (2, "amount"),
            (2, "birthday"),
            (3, "card_hash"),
            (3, "address"),
            (4, "event_time"),
        }
        assert "more than 2 decimal places" in problems[(2, "amount")]
        assert "'YYYY-MM-DD'" in problems[(2, "birthday")]
        assert "base64" in problems[(3, "card_hash")]
        assert "no time zone" in problems[(4, "event_time")]
        accepted = client.post(push, json={"events": rows})
        assert accepted.status_code == 202, accepted.text
        assert accepted.json() == {"accepted": len(rows)}
    worker = deployment.start_worker()
    forms.wait(worker)
    with FeatureStore(deployment.settings) as store:
        defs = store.catalog.definitions()
        fs = defs.feature_set(forms.feature_set_name)
        types = FeatureSetPlan(fs, defs.source(fs.source)).history_types
    _check_online_offline(forms, _expected(rows), types, [base, base + 20 * MINUTE, now])


def test_file_ingest_of_csv_text_and_parquet_types_for_the_same_forms(
    deployment: Deployment, forms_source: Callable[..., FormsSource], tmp_path: Path
) -> None:
    forms = forms_source(PUSH_SCHEMA, PUSH_FEATURES, transforms={"n_tags": "size(tags)"})
    now = time.time_ns() // 1_000_000
    base = now // MINUTE * MINUTE - 45 * MINUTE
    rows = _natural_rows(base, 12)
    # CSV: everything is text; records and arrays as JSON text.
    csv_path = tmp_path / "first.csv"
    with csv_path.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(list(rows[0]))
        for r in rows[:6]:
            writer.writerow(
                [
                    json.dumps(v) if isinstance(v, dict | list) else ("" if v is None else v)
                    for v in r.values()
                ]
            )
    # Parquet: the native Arrow types of each form.
    later = rows[6:]
    parquet_path = tmp_path / "second.parquet"
    pq.write_table(
        pa.table(
            {
                "account_id": [r["account_id"] for r in later],
                "event_time": pa.array(
                    [datetime.fromtimestamp(_ms(r["event_time"]) / 1000, UTC) for r in later],
                    pa.timestamp("us", tz="UTC"),
                ),
                "birthday": pa.array(
                    [
                        None if r["birthday"] is None else date.fromisoformat(r["birthday"])
                        for r in later
                    ],
                    pa.date32(),
                ),
                "amount": pa.array([Decimal(str(r["amount"])) for r in later], pa.decimal128(9, 2)),
                "card_hash": pa.array(
                    [base64.b64decode(r["card_hash"]) for r in later], pa.binary(3)
                ),
                "address": [r["address"] for r in later],
                "tags": pa.array([r["tags"] for r in later], pa.list_(pa.string())),
            }
        ),
        parquet_path,
    )
    bad_path = tmp_path / "bad.csv"
    bad_path.write_text(csv_path.read_text().replace(rows[1]["card_hash"], "%%%", 1))
    with pytest.raises(BadRowError) as info:
        ingest_files(deployment.settings, forms.source, [bad_path], show_progress=False)
    assert (info.value.bad.row, info.value.bad.column) == (2, "card_hash")
    assert "base64" in info.value.bad.reason

    produced = ingest_files(
        deployment.settings, forms.source, [csv_path, parquet_path], show_progress=False
    )
    assert produced == len(rows)
    worker = deployment.start_worker()
    forms.wait(worker)
    with FeatureStore(deployment.settings) as store:
        defs = store.catalog.definitions()
        fs = defs.feature_set(forms.feature_set_name)
        types = FeatureSetPlan(fs, defs.source(fs.source)).history_types
    _check_online_offline(forms, _expected(rows), types, [base, base + 20 * MINUTE, now])


def _ms(value: Any) -> int:
    return (
        value
        if isinstance(value, int)
        else (datetime.fromisoformat(value) - _EPOCH) // timedelta(milliseconds=1)
    )
