"""An event that fails in a way nobody foresaw, and a store that fails, are told apart.

The batch processor runs against the real Kafka (its DLQ), Redis and Delta. A fault of our
own code that only one event hits is planted in the fold (the kind of bug that crash-looped
the worker on ``timestamp-millis`` event times): the batch is bisected down to that event,
which goes to ``dlq.<source>`` with reason ``processing_error`` and the exception, while
every other event reaches both stores exactly. A store that fails is not an event's fault:
the batch is refused as a whole (``StoreFaultError``), nothing is dead-lettered, and the
same batch processed again once the store is back is stored exactly once.
"""

from __future__ import annotations

import time
import zlib
from collections.abc import Iterator
from typing import Any, cast

import pyarrow as pa
import pytest
from confluent_kafka import Consumer, TopicPartition

from headwater.connectors.catalog import Catalog
from headwater.connectors.errors import StoreFaultError
from headwater.connectors.kafka import EventProducer, RawMessage
from headwater.connectors.offline_delta import DeltaOfflineStore
from headwater.connectors.online_redis import RedisOnlineStore
from headwater.processes import free_port
from headwater.sample_data import generate_transactions
from headwater.schemas.avro import encode_wire
from headwater.schemas.tiles import arrival_seq
from headwater.stream_workers.errors import EventProcessingError
from headwater.stream_workers.processor import BatchProcessor
from headwater.stream_workers.processor_factory import processor_from_settings
from tests.integration.pipeline import Deployment
from tests.reference import brute_force
from tests.reference import example_events_by_user as events_by_user

pytestmark = pytest.mark.integration

PARTITIONS = 4
MINUTE = 60_000


def _messages(deployment: Deployment, data: pa.Table) -> list[RawMessage]:
    catalog = Catalog(deployment.settings.catalog_url)
    source = catalog.definitions().source(deployment.source)
    schema_id = catalog.register_schema(source.subject, source.schema)
    now = time.time_ns() // 1_000_000
    offsets = [0] * PARTITIONS
    messages = []
    for record in data.to_pylist():
        key = record["user_id"].encode()
        partition = zlib.crc32(key) % PARTITIONS
        messages.append(
            RawMessage(
                partition,
                offsets[partition],
                key,
                encode_wire(source.schema, schema_id, record),
                now,
            )
        )
        offsets[partition] += 1
    return messages


def _processor(deployment: Deployment, redis_url: str, **options: Any) -> BatchProcessor:
    settings = deployment.settings
    catalog = Catalog(settings.catalog_url)
    defs = catalog.definitions()
    return processor_from_settings(
        settings,
        defs,
        defs.source(deployment.source),
        defs.feature_sets_of(deployment.source),
        catalog=catalog,
        online=RedisOnlineStore(redis_url),
        offline=DeltaOfflineStore(settings.offline_root),
        dlq=EventProducer(settings.kafka, delivery_timeout_s=10),
        **options,
    )


def _letters(deployment: Deployment) -> list[dict[str, str]]:
    topic = f"dlq.{deployment.source}"
    consumer = Consumer(
        {"bootstrap.servers": deployment.settings.kafka.bootstrap_servers, "group.id": "probe"}
    )
    try:
        letters: list[dict[str, str]] = []
        for p in consumer.list_topics(topic, timeout=10).topics[topic].partitions:
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
            if high == low:
                continue
            consumer.assign([TopicPartition(topic, p, low)])
            while len(letters) < high - low:
                for m in consumer.consume(100, timeout=10):
                    headers = cast(list[tuple[str, bytes]], m.headers() or [])
                    letters.append({k: v.decode() for k, v in headers})
        return letters
    finally:
        consumer.close()


def _assert_stores_hold(deployment: Deployment, processor: BatchProcessor, data: pa.Table) -> None:
    """Delta holds exactly the approved events of ``data`` and Redis their exact values."""
    plan = processor.plans[0]
    fs = plan.feature_set
    by_user = events_by_user(data)
    history = DeltaOfflineStore(deployment.settings.offline_root).history(fs)
    want = sorted(row["transaction_id"] for rows in by_user.values() for row, _, _ in rows)
    assert sorted(history.column("transaction_id").to_pylist()) == want
    users = sorted(set(data.column("user_id").to_pylist()))
    states = RedisOnlineStore(deployment.settings.redis.url).read(fs, [(u,) for u in users])
    t = time.time_ns() // 1_000_000
    for user, state in zip(users, states, strict=True):
        values, status = plan.evaluate(state, t)
        assert (values, str(status)) == brute_force(
            fs, plan.history_types, by_user.get(user, []), t
        ), user


@pytest.fixture
def data() -> Iterator[pa.Table]:
    yield generate_transactions(
        end_ms=time.time_ns() // 1_000_000 // MINUTE * MINUTE,
        users=6,
        days=1,
        events_per_user_day=30,
        seed=11,
    )


def _plant_bug(processor: BatchProcessor, poison: RawMessage) -> None:
    """A fault in the fold that only ``poison`` hits (the native fold and the Python one
    both go through ``apply_columns``)."""
    plan = processor.plans[0]
    original = plan.apply_columns
    bad_seq = arrival_seq(poison.partition, poison.offset)

    def apply_columns(state: Any, batch: Any, indices: Any, *args: Any, **kwargs: Any) -> bool:
        if any(batch.seqs[i] == bad_seq for i in indices):
            raise RuntimeError("a bug that only this event hits")
        return original(state, batch, indices, *args, **kwargs)

    plan.apply_columns = apply_columns  # type: ignore[method-assign]  # the planted bug


def test_an_event_that_fails_unforeseen_is_isolated_and_dead_lettered(
    deployment: Deployment, data: pa.Table
) -> None:
    messages = _messages(deployment, data)
    approved = [i for i, s in enumerate(data.column("status").to_pylist()) if s == "approved"]
    victim = approved[len(approved) // 2]
    poison = messages[victim]
    processor = _processor(deployment, deployment.settings.redis.url)
    _plant_bug(processor, poison)

    result = processor.process(messages)
    processor.flush()

    assert result.dead_lettered == {"processing_error": 1}
    assert result.accepted == len(messages) - 1
    letters = _letters(deployment)
    assert len(letters) == 1
    (letter,) = letters
    assert letter["hw.reason"] == "processing_error"
    assert "RuntimeError: a bug that only this event hits" in letter["hw.error"]
    assert (int(letter["hw.partition"]), int(letter["hw.offset"])) == (
        poison.partition,
        poison.offset,
    )
    rest = data.filter(pa.array([i != victim for i in range(data.num_rows)]))
    _assert_stores_hold(deployment, processor, rest)

    # The same batch again (a crash before Kafka's commit): nothing changes, no second letter.
    again = processor.process(messages)
    processor.flush()
    assert again.dead_lettered == {"processing_error": 1} or again.dead_lettered == {}
    assert len(_letters(deployment)) == 1
    _assert_stores_hold(deployment, processor, rest)


def test_stop_on_processing_error_names_the_event_and_the_setting(
    deployment: Deployment, data: pa.Table
) -> None:
    messages = _messages(deployment, data)
    statuses = data.column("status").to_pylist()
    poison = messages[max(i for i, s in enumerate(statuses) if s == "approved")]
    processor = _processor(deployment, deployment.settings.redis.url, stop_on_processing_error=True)
    _plant_bug(processor, poison)
    with pytest.raises(EventProcessingError) as raised:
        processor.process(messages)
    text = str(raised.value)
    assert f"[{poison.partition}]@{poison.offset}" in text
    assert "worker.on_processing_error" in text and "dead_letter" in text
    assert _letters(deployment) == []


def test_a_failing_store_refuses_the_batch_and_dead_letters_nothing(
    deployment: Deployment, data: pa.Table
) -> None:
    messages = _messages(deployment, data)
    broken = _processor(deployment, f"redis://127.0.0.1:{free_port()}/0")
    with pytest.raises(StoreFaultError) as raised:
        broken.process(messages)
    assert raised.value.store == "redis"
    assert _letters(deployment) == []

    healthy = _processor(deployment, deployment.settings.redis.url)
    result = healthy.process(messages)
    healthy.flush()
    assert result.dead_lettered == {}
    _assert_stores_hold(deployment, healthy, data)
