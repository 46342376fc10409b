"""Single-message requests skip the Kafka transaction (``connectors.kafka_idempotent``) and
keep the push contract: 202 means written once, "nothing written" only when that is sure.

Against the session's real broker, and a port where no broker listens.
"""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from confluent_kafka.admin import NewTopic

from headwater.connectors.errors import ProduceError
from headwater.connectors.kafka import admin_client, delete_topics
from headwater.connectors.kafka_idempotent import (
    IdempotentProducer,
    ProduceOutcomeUnknownError,
)
from headwater.connectors.kafka_transactions import TransactionalProducer
from headwater.processes import free_port
from headwater.schemas.settings import KafkaSettings
from tests.integration.test_push import committed_messages

pytestmark = pytest.mark.integration


@contextmanager
def _topic(kafka: KafkaSettings, **config: str) -> Iterator[str]:
    """A topic of this test's own, deleted afterwards."""
    name = f"single-{uuid.uuid4().hex[:10]}"
    futures = admin_client(kafka).create_topics([NewTopic(name, 2, 1, config=config)])
    futures[name].result(timeout=30)
    try:
        yield name
    finally:
        delete_topics(kafka, [name])


def test_single_messages_are_written_once_without_a_transaction(kafka_bootstrap: str) -> None:
    kafka = KafkaSettings(bootstrap_servers=kafka_bootstrap)
    with _topic(kafka) as topic:
        _single_messages_once(kafka_bootstrap, kafka, topic)


def _single_messages_once(kafka_bootstrap: str, kafka: KafkaSettings, topic: str) -> None:
    producer = TransactionalProducer(kafka, delivery_timeout_s=10, name="single-test")

    async def push() -> None:
        # The first goes through a transaction (Kafka not yet known to be in reach), the
        # rest through the idempotent producer, concurrently; one of several messages too.
        await producer.produce_all(topic, [(b"k0", b"v0")])
        assert producer._single.healthy
        await asyncio.gather(
            *(producer.produce_all(topic, [(b"k%d" % i, b"v%d" % i)]) for i in range(1, 50))
        )
        await producer.produce_all(topic, [(b"a", b"many-0"), (b"a", b"many-1")])

    try:
        asyncio.run(push())
    finally:
        producer.close()
    got = committed_messages(kafka_bootstrap, topic)
    want = [(b"k%d" % i, b"v%d" % i) for i in range(50)] + [(b"a", b"many-0"), (b"a", b"many-1")]
    assert sorted(got) == sorted(want)  # each exactly once
    many = [v for k, v in got if k == b"a"]
    assert many == [b"many-0", b"many-1"]  # in order on their partition


def test_a_message_the_broker_refuses_is_not_written(kafka_bootstrap: str) -> None:
    kafka = KafkaSettings(bootstrap_servers=kafka_bootstrap)
    with _topic(kafka, **{"max.message.bytes": "2000"}) as topic:
        _refused_not_written(kafka_bootstrap, kafka, topic)


def _refused_not_written(kafka_bootstrap: str, kafka: KafkaSettings, topic: str) -> None:
    producer = IdempotentProducer(kafka, delivery_timeout_s=10, name="refused-test")

    async def push() -> None:
        await producer.produce(topic, b"k", b"small")
        with pytest.raises(ProduceError) as refused:
            await producer.produce(topic, b"k", os.urandom(10_000))  # incompressible
        assert not isinstance(refused.value, ProduceOutcomeUnknownError), refused.value
        assert "refused" in str(refused.value)

    try:
        asyncio.run(push())
    finally:
        producer.close()
    assert committed_messages(kafka_bootstrap, topic) == [(b"k", b"small")]


def test_without_kafka_single_messages_are_answered_nothing_written() -> None:
    """No broker: the push path answers "nothing written" (a transaction that cannot begin),
    never "outcome unknown" for a message that never left the process."""
    kafka = KafkaSettings(bootstrap_servers=f"127.0.0.1:{free_port()}")
    producer = TransactionalProducer(kafka, delivery_timeout_s=2, name="nokafka-test")

    async def push() -> list[BaseException]:
        errors = []
        for i in range(3):
            try:
                await producer.produce_all("nowhere", [(b"k", b"v%d" % i)])
            except ProduceError as exc:
                errors.append(exc)
        return errors

    started = time.monotonic()
    try:
        errors = asyncio.run(push())
    finally:
        producer.close()
    assert len(errors) == 3
    assert not any(isinstance(e, ProduceOutcomeUnknownError) for e in errors), errors
    assert not producer._single.healthy
    assert time.monotonic() - started < 60
