"""Dead letters against the real broker, worker and stores: see them, fix the cause, replay once.

The first test is the user's path: a producer ships a new schema version before it is
registered (unknown schema id) and events dated beyond the allowed skew; the worker
dead-letters them; ``headwater dlq list/show`` shows them; the schema is registered and the
skew raised; ``headwater dlq replay`` brings them into Redis and Delta with their exact values,
once, one reason at a time. The second test kills replays between their steps and checks
that every letter still lands in the source topic exactly once.
"""

from __future__ import annotations

import json
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from typing import Any, cast

import httpx
import pytest
from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import ConfigResource  # type: ignore[attr-defined]  # public API, not re-exported in the stubs

from headwater.connectors.catalog import Catalog
from headwater.connectors.dlq import (
    REPLAY_OF_HEADER,
    DeadLetterReplayer,
    ledger_topic,
    read_dead_letters,
)
from headwater.connectors.kafka import EventProducer, admin_client, delete_topics, ensure_topics
from headwater.connectors.offline_delta import DeltaOfflineStore
from headwater.dlq import count_dead_letters
from headwater.schemas.avro import AvroSchema, encode_wire
from headwater.schemas.settings import KafkaSettings
from headwater.sdk import FeatureStore
from tests.integration.pipeline import Deployment

pytestmark = pytest.mark.integration

MINUTE = 60_000


def _wait_for_letters(
    deployment: Deployment, expected: int, timeout_s: float = 60
) -> dict[str, int]:
    deadline = time.monotonic() + timeout_s
    while True:
        counts = {
            c.reason: c.letters
            for c in count_dead_letters(deployment.settings)
            if c.source == deployment.source
        }
        if sum(counts.values()) >= expected or time.monotonic() > deadline:
            return counts
        time.sleep(0.5)


def _rows(table: str, source: str) -> list[list[str]]:
    """The cells of a printed table's rows that mention ``source``."""
    return [
        [c.strip() for c in line.strip().strip("│").split("│")]
        for line in table.splitlines()
        if source in line
    ]


def _history(deployment: Deployment) -> dict[str, list[dict[str, Any]]]:
    fs = deployment.definitions().feature_set(deployment.feature_set)
    rows = DeltaOfflineStore(deployment.settings.offline_root).history(fs).to_pylist()
    by_id: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        by_id.setdefault(row["transaction_id"], []).append(row)
    return by_id


def test_dead_letters_are_listed_shown_and_replayed_once_fixed(
    deployment: Deployment, request: pytest.FixtureRequest
) -> None:
    settings = deployment.settings
    source = deployment.definitions().source(deployment.source)
    request.addfinalizer(lambda: delete_topics(settings.kafka, [ledger_topic(source.dlq_topic)]))
    catalog = Catalog(settings.catalog_url)
    next_id = max(v.id for v in catalog.schema_versions()) + 1
    v2_definition = json.loads((deployment.defs_dir / "transactions.avsc").read_text())
    v2_definition["fields"].append({"name": "channel", "type": "string", "default": "web"})
    v2 = AvroSchema.from_dict(v2_definition)
    worker = deployment.start_worker()

    now = time.time_ns() // 1_000_000
    new_schema: list[
        dict[str, Any]
    ] = [  # written with schema v2 under the id it will get, before it is registered
        {
            "transaction_id": f"s{i}",
            "user_id": "dlq-u1",
            "merchant_id": f"m{i}",
            "amount": amount,
            "currency": "EUR",
            "status": "approved",
            "event_time": now - (5 - i) * MINUTE,
            "channel": "app",
        }
        for i, amount in enumerate([10.5, 20.25, 30.0])
    ]
    future: list[
        dict[str, Any]
    ] = [  # 30 minutes ahead of their arrival: beyond the default 5 min skew
        {
            "transaction_id": f"f{i}",
            "user_id": "dlq-u2",
            "merchant_id": "m9",
            "amount": 7.0 + i,
            "currency": "EUR",
            "status": "approved",
            "event_time": now + 30 * MINUTE + i,
        }
        for i in range(2)
    ]
    v1_id = catalog.register_schema(source.subject, source.schema)
    producer = EventProducer(settings.kafka)
    for row in new_schema:
        producer.produce(deployment.topic, encode_wire(v2, next_id, row), row["user_id"].encode())
    for row in future:
        producer.produce(
            deployment.topic, encode_wire(source.schema, v1_id, row), row["user_id"].encode()
        )
    producer.flush()
    deployment.wait_caught_up(worker)
    assert _wait_for_letters(deployment, 5) == {"unknown_schema": 3, "future": 2}
    resource = ConfigResource("topic", source.dlq_topic)
    admin = admin_client(settings.kafka)
    assert (
        admin.describe_configs([resource])[resource].result(timeout=10)["retention.ms"].value
        == "-1"
    )

    listed = deployment.cli("dlq", "list")
    assert listed.returncode == 0, listed.stderr
    assert _rows(listed.stdout, deployment.source) == [
        [deployment.source, "future", "2", "0", "2"],
        [deployment.source, "unknown_schema", "3", "0", "3"],
    ]
    shown = deployment.cli("dlq", "show", deployment.source, "--reason", "future", "--limit", "5")
    assert shown.returncode == 0, shown.stderr
    assert (
        "2 of 2" in shown.stdout
        and "event_time" in shown.stdout
        and "at most 300000 ms" in shown.stdout
    )
    iso = time.strftime("%Y-%m-%dT%H:%M", time.gmtime((now + 30 * MINUTE) / 1000))
    assert iso in shown.stdout  # the event time, decoded
    shown = deployment.cli("dlq", "show", deployment.source, "--reason", "unknown_schema")
    assert f"schema id {next_id} is not registered" in shown.stdout and "3 of 3" in shown.stdout
    missing = deployment.cli("dlq", "show", "nope")
    assert missing.returncode == 1 and "unknown source 'nope'" in missing.stderr

    # Fix: register v2 through the schema registry API, as the producer's client does; it gets
    # the id the producer used. (The source keeps reading events as v1, the fields it knows.)
    url = deployment.start_api()
    registered = httpx.post(
        f"{url}/registry/subjects/{source.topic}-value/versions",
        json={"schema": json.dumps(v2_definition)},
        headers={"Content-Type": "application/vnd.schemaregistry.v1+json"},
        timeout=10,
    )
    assert registered.status_code == 200 and registered.json() == {"id": next_id}, registered.text

    replay = deployment.cli("dlq", "replay", deployment.source, "--reason", "unknown_schema")
    assert replay.returncode == 0, replay.stderr
    assert "replayed 3 dead letter(s)" in replay.stdout and "0 replayed before" in replay.stdout
    deployment.wait_caught_up(worker)
    history = _history(deployment)
    assert {
        t: [(r["amount"], r["merchant_id"], r["event_time"]) for r in rows]
        for t, rows in history.items()
    } == {
        r["transaction_id"]: [(r["amount"], r["merchant_id"], r["event_time"])] for r in new_schema
    }
    with FeatureStore(settings) as store:
        fs = deployment.feature_set
        online = store.get_online_features(
            {"user_id": ["dlq-u1"]},
            [f"{fs}:txn_count_total", f"{fs}:spend_1h", f"{fs}:last_merchant"],
        )
    assert online.values == [[3, 60.75, "m2"]]

    again = deployment.cli("dlq", "replay", deployment.source, "--reason", "unknown_schema")
    assert "replayed 0 dead letter(s)" in again.stdout and "3 replayed before" in again.stdout
    assert _wait_for_letters(deployment, 5) == {
        "unknown_schema": 3,
        "future": 2,
    }  # nothing came back

    # Fix the skew (a setting, so a worker restart), then replay the other reason.
    worker.stop()
    deployment.env["HEADWATER_MAX_FUTURE_SKEW_MS"] = str(60 * MINUTE)
    worker = deployment.start_worker()
    replay = deployment.cli("dlq", "replay", deployment.source)
    assert "replayed 2 dead letter(s)" in replay.stdout and "3 replayed before" in replay.stdout
    deployment.wait_caught_up(worker)
    history = _history(deployment)
    assert sorted(history) == ["f0", "f1", "s0", "s1", "s2"]
    assert all(len(rows) == 1 for rows in history.values())
    assert [history[f"f{i}"][0]["event_time"] for i in range(2)] == [
        r["event_time"] for r in future
    ]

    assert "replayed 0 dead letter(s)" in deployment.cli("dlq", "replay", deployment.source).stdout
    assert _rows(deployment.cli("dlq", "list").stdout, deployment.source) == [
        [deployment.source, "future", "2", "2", "0"],
        [deployment.source, "unknown_schema", "3", "3", "0"],
    ]


@pytest.fixture
def letter_topics(kafka_bootstrap: str) -> Iterator[tuple[KafkaSettings, str, str]]:
    kafka = KafkaSettings(bootstrap_servers=kafka_bootstrap, partitions=2)
    suffix = uuid.uuid4().hex[:8]
    source, dlq = f"dlqtest.raw.{suffix}", f"dlqtest.dlq.{suffix}"
    ensure_topics(kafka, [source, dlq])
    try:
        yield kafka, source, dlq
    finally:
        delete_topics(kafka, [source, dlq, ledger_topic(dlq)])


def _source_messages(
    kafka: KafkaSettings, topic: str
) -> list[tuple[int, bytes | None, bytes | None, int, dict[str, bytes]]]:
    consumer = Consumer(
        {"bootstrap.servers": kafka.bootstrap_servers, "group.id": f"check-{uuid.uuid4().hex}"}
    )
    found = []
    try:
        for p in (0, 1):
            high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
            consumer.assign([TopicPartition(topic, p, 0)])
            while high and (m := consumer.poll(10)) is not None:
                raw = cast(list[tuple[str, bytes | None]], m.headers() or [])
                headers = {k: v or b"" for k, v in raw}
                found.append((p, m.key(), m.value(), m.timestamp()[1], headers))
                if (m.offset() or 0) + 1 >= high:
                    break
    finally:
        consumer.close()
    return found


def test_replay_is_exactly_once_when_runs_die_between_steps(
    letter_topics: tuple[KafkaSettings, str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    kafka, source, dlq = letter_topics
    t0 = time.time_ns() // 1_000_000 - 3_600_000
    producer = EventProducer(kafka)
    for i in range(6):  # letters of source partitions 1 and 0, as a worker writes them
        headers = {
            "hw.reason": b"unknown_schema",
            "hw.partition": str(i % 2).encode(),
            "hw.offset": str(i).encode(),
        }
        producer.produce(
            dlq, f"value-{i}".encode(), f"key-{i}".encode(), headers, t0 + i, partition=i % 2
        )
    producer.flush()

    class Crash(Exception):
        pass

    def pending(replayer: DeadLetterReplayer) -> list[Any]:
        done = replayer.replayed()
        return [letter for letter in read_dead_letters(kafka, dlq) if letter.id not in done]

    # Run 1 dies after its first batch's events were acknowledged, before recording it done.
    first = DeadLetterReplayer(kafka, dlq, source, batch_size=3)
    record = first._record

    def die_at_done(kind: str, batch: str, letters: Any, **extra: Any) -> None:
        if kind == "done":
            raise Crash
        record(kind, batch, letters, **extra)

    monkeypatch.setattr(first, "_record", die_at_done)
    with pytest.raises(Crash):
        first.replay(pending(first))
    # Run 2 finds those 3 in the source topic, then dies right after starting its batch.
    second = DeadLetterReplayer(kafka, dlq, source, batch_size=3)
    todo = pending(second)
    assert len(todo) == 3

    produce = second._producer.produce

    def die_at_first_event(topic: str, *args: Any, **kwargs: Any) -> None:
        if topic == source:
            raise Crash
        produce(topic, *args, **kwargs)

    monkeypatch.setattr(second._producer, "produce", die_at_first_event)
    with pytest.raises(Crash):
        second.replay(todo)
    # Run 3 finds nothing of run 2's batch in the source topic: its letters are replayed now.
    third = DeadLetterReplayer(kafka, dlq, source)
    todo = pending(third)
    assert len(todo) == 3
    assert third.replay(todo) == 3
    assert pending(DeadLetterReplayer(kafka, dlq, source)) == []

    messages = _source_messages(kafka, source)
    replays = Counter(h[REPLAY_OF_HEADER].decode() for *_, h in messages)
    assert replays == Counter(f"{dlq}/{i % 2}/{i // 2}" for i in range(6))
    # Key, value, timestamp and partition as the original message had them.
    assert sorted((p, k, v, ts) for p, k, v, ts, _ in messages) == sorted(
        (i % 2, f"key-{i}".encode(), f"value-{i}".encode(), t0 + i) for i in range(6)
    )
