"""confluent-kafka clients: topic creation and the producer every ingestion path uses.

All client settings derive from ``Settings.kafka`` through ``client_config`` (address,
SASL and TLS, see ``connectors.kafka_security``), so producers, admin, consumers and the
faust workers talk to the same cluster as the same identity.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from confluent_kafka import KafkaError, KafkaException, Message, Producer
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]  # public API, not re-exported in the stubs

from headwater.connectors.errors import KafkaUnavailableError, ProduceError
from headwater.connectors.kafka_security import (
    is_login_error,
    login_problem,
    probe_login,
    security_config,
)
from headwater.schemas.settings import KafkaSettings

__all__ = [
    "EventProducer",
    "KafkaRecord",
    "RawMessage",
    "admin_client",
    "client_config",
    "delete_topics",
    "ensure_topics",
    "log_ends",
    "probe_config",
    "producer_config",
    "read_range",
    "renew_admin",
    "shared_admin",
    "topic_id",
    "wait_for_kafka",
]


_ADMINS: dict[tuple[tuple[str, Any], ...], AdminClient] = {}
_ADMINS_LOCK = threading.Lock()


def _admin_key(config: Mapping[str, Any]) -> tuple[tuple[str, Any], ...]:
    return tuple(sorted(config.items()))


def shared_admin(config: Mapping[str, Any]) -> AdminClient:
    """The process's one admin client for ``config``, created on first use and kept.

    Why not one per call: an admin client whose last reference drops while librdkafka's
    background thread runs a result callback can be destroyed from that thread, which aborts
    the interpreter (confluent-kafka-python #1761, #2129). Polling helpers (lag, readiness,
    offsets) called several times a second made that a rare segfault; a kept client is
    never destroyed mid-request, and saves a connection setup per call.
    """
    key = _admin_key(config)
    with _ADMINS_LOCK:
        admin = _ADMINS.get(key)
        if admin is None:
            admin = _ADMINS[key] = AdminClient(dict(config))
        return admin


_RETIRED: list[AdminClient] = []
"""Admin clients replaced by ``renew_admin``: still referenced, so never destroyed."""


def renew_admin(kafka: KafkaSettings) -> AdminClient:
    """A new shared admin client for ``kafka``, for when the current one stopped answering
    (seen for group requests after a broker restart). The old one is kept referenced rather
    than destroyed, for the reason ``shared_admin`` gives."""
    config = client_config(kafka)
    with _ADMINS_LOCK:
        old = _ADMINS.pop(_admin_key(config), None)
        if old is not None:
            _RETIRED.append(old)
    return shared_admin(config)


def admin_client(kafka: KafkaSettings) -> AdminClient:
    """The shared admin client of the cluster ``kafka`` names (see ``shared_admin``)."""
    return shared_admin(client_config(kafka))


def client_config(kafka: KafkaSettings) -> dict[str, Any]:
    """The base of every Kafka client's configuration: the brokers, and how to authenticate
    and encrypt (``kafka_security.security_config``). Every producer, consumer and admin
    client starts from it, and the worker's faust credentials are derived from it
    (``kafka_security.faust_credentials``), so no client can connect unauthenticated.

    Holds passwords: give it to a client constructor only, never to a log or message.
    """
    # log_level 4 (warning): librdkafka's informational lines, such as purging the admin
    # client's background queue on close, are noise on a command line.
    return {
        "bootstrap.servers": kafka.bootstrap_servers,
        "log_level": 4,
        **security_config(kafka),
    }


def probe_config(kafka: KafkaSettings, group_id: str) -> dict[str, Any]:
    """A short-lived consumer that reads positions or a range without joining ``group_id``.

    librdkafka still opens a connection to the group's coordinator, which closing the probe
    a moment later interrupts; with SASL that logs a misleading "SASL authentication error
    ... Broker transport failure" each time. A probe's real failures reach its caller as
    exceptions, so its log is kept to critical lines.
    """
    return {
        **client_config(kafka),
        "group.id": group_id,
        "enable.auto.commit": False,
        "log_level": 2,
    }


def producer_config(
    kafka: KafkaSettings, *, delivery_timeout_s: float, linger_ms: float
) -> dict[str, Any]:
    """The one configuration of every Headwater producer: idempotent, acks=all, so retries
    (librdkafka's, with backoff) never duplicate or reorder; ``delivery_timeout_s`` bounds
    how long a message may wait, so an unreachable Kafka fails instead of hanging."""
    return {
        **client_config(kafka),
        "enable.idempotence": True,
        "acks": "all",
        "linger.ms": linger_ms,
        "batch.num.messages": 10_000,
        "queue.buffering.max.messages": 500_000,
        "compression.type": "lz4",
        "delivery.timeout.ms": int(delivery_timeout_s * 1000),
    }


def wait_for_kafka(kafka: KafkaSettings, timeout_s: float = 10.0) -> None:
    """Raise ``KafkaUnavailableError`` unless a broker answers within ``timeout_s``."""
    admin = admin_client(kafka)
    try:
        brokers = admin.list_topics(timeout=timeout_s).brokers
    except KafkaException as exc:
        brokers = {}
        cause: Exception | None = exc
    else:
        cause = None
    if not brokers:
        refused = (
            probe_login(client_config(kafka), min(timeout_s, 5.0))
            if kafka.security_protocol != "PLAINTEXT"
            else None
        )
        if refused is not None:
            raise KafkaUnavailableError(login_problem(kafka, refused)) from None
        msg = (
            f"no Kafka broker answered at {kafka.bootstrap_servers} within {timeout_s:g} s; "
            "start one with `headwater up` or set HEADWATER_KAFKA__BOOTSTRAP_SERVERS"
        )
        raise KafkaUnavailableError(msg) from cause


def ensure_topics(
    kafka: KafkaSettings,
    topics: Sequence[str],
    *,
    partitions: int | None = None,
    config: Mapping[str, str] | None = None,
) -> list[str]:
    """Create the topics that do not exist yet; returns the names created."""
    admin = admin_client(kafka)
    existing = set(admin.list_topics(timeout=10).topics)
    wanted = [t for t in dict.fromkeys(topics) if t not in existing]
    if not wanted:
        return []
    settings = dict(config or {})
    if kafka.min_insync_replicas is not None:
        settings.setdefault("min.insync.replicas", str(kafka.min_insync_replicas))
    futures = admin.create_topics(
        [
            NewTopic(
                t,
                partitions or kafka.partitions,
                # -1: the brokers' default.replication.factor.
                kafka.replication_factor or -1,
                config=settings,
            )
            for t in wanted
        ],
        operation_timeout=30,
    )
    _await_admin(futures, "create", KafkaError.TOPIC_ALREADY_EXISTS)
    return wanted


def _await_admin(futures: Mapping[str, Any], verb: str, harmless: int) -> None:
    """Wait for admin operations per topic; an error code ``harmless`` means already done."""
    for topic, future in futures.items():
        try:
            future.result(timeout=30)
        except KafkaException as exc:
            if exc.args[0].code() != harmless:
                msg = f"could not {verb} topic {topic!r}: {exc.args[0].str()}"
                if exc.args[0].code() == KafkaError.INVALID_REPLICATION_FACTOR:
                    msg += (
                        "; set HEADWATER_KAFKA__REPLICATION_FACTOR to at most the number of "
                        "brokers (or unset it to take the brokers' default)"
                    )
                raise KafkaUnavailableError(msg) from exc


class EventProducer:
    """Idempotent, acks=all producer; ``flush`` raises unless every message was acknowledged.

    Args:
        kafka: connection settings.
        delivery_timeout_s: how long a message may wait for the broker before it counts as
            failed (and ``flush`` raises), so an unreachable Kafka never hangs a caller.
    """

    def __init__(
        self, kafka: KafkaSettings, *, delivery_timeout_s: float = 30.0, linger_ms: int = 20
    ) -> None:
        self._delivery_timeout_s = delivery_timeout_s
        self._kafka = kafka
        self._login_error: str | None = None
        self._producer = Producer(
            {
                **producer_config(
                    kafka, delivery_timeout_s=delivery_timeout_s, linger_ms=linger_ms
                ),
                "error_cb": self._on_error,
            }
        )
        self._failures: list[str] = []
        self.acknowledged = 0

    def _on_error(self, err: KafkaError) -> None:
        # Refused credentials surface here, not in delivery reports (those only time out).
        if is_login_error(err):
            self._login_error = err.str()

    def _on_delivery(self, err: KafkaError | None, msg: Message) -> None:
        if err is not None:
            self._failures.append(f"{msg.topic()}: {err.str()}")
        else:
            self.acknowledged += 1

    def produce(
        self,
        topic: str,
        value: bytes,
        key: bytes | None = None,
        headers: Mapping[str, bytes] | None = None,
        timestamp_ms: int | None = None,
        partition: int | None = None,
    ) -> None:
        """Queue one message (on ``partition``, or the key's); waits for room when the local
        queue is full."""
        kwargs: dict[str, Any] = {"on_delivery": self._on_delivery}
        if headers:
            kwargs["headers"] = list(headers.items())
        if timestamp_ms is not None:
            kwargs["timestamp"] = timestamp_ms
        if partition is not None:
            kwargs["partition"] = partition
        while True:
            try:
                self._producer.produce(topic, value=value, key=key, **kwargs)
                break
            except BufferError:
                self._producer.poll(0.1)
        self._producer.poll(0)

    def flush(self) -> int:
        """Wait for every queued message; returns how many were acknowledged so far.

        Raises:
            ProduceError: a message failed or was not acknowledged in time.
        """
        remaining = self._producer.flush(self._delivery_timeout_s + 5)
        if (self._failures or remaining) and self._login_error is not None:
            self._failures = []
            raise ProduceError(login_problem(self._kafka, self._login_error))
        if self._failures or remaining:
            failures, self._failures = self._failures, []
            detail = failures[0] if failures else f"{remaining} message(s) still unacknowledged"
            msg = (
                f"Kafka did not acknowledge {len(failures) + remaining} message(s): {detail}; "
                "check that the broker is up (`headwater up`) and retry"
            )
            raise ProduceError(msg)
        return self.acknowledged


def delete_topics(kafka: KafkaSettings, topics: Sequence[str], timeout_s: float = 30.0) -> None:
    """Delete ``topics`` (missing ones are ignored) and wait until the broker forgot them."""

    admin = admin_client(kafka)
    existing = [t for t in topics if t in admin.list_topics(timeout=10).topics]
    if not existing:
        return
    _await_admin(
        admin.delete_topics(existing, operation_timeout=30),
        "delete",
        KafkaError.UNKNOWN_TOPIC_OR_PART,
    )
    deadline = time.monotonic() + timeout_s
    while any(t in admin.list_topics(timeout=10).topics for t in existing):
        if time.monotonic() > deadline:
            msg = f"topics {existing} still exist {timeout_s:g} s after deletion"
            raise KafkaUnavailableError(msg)
        time.sleep(0.2)


def topic_id(kafka: KafkaSettings, topic: str, timeout_s: float = 10.0) -> str:
    """The topic's id (KIP-516). A topic deleted and created again under the same name (or a
    cluster rebuilt without its data) has a new id, where offsets alone cannot tell.

    Raises:
        KafkaUnavailableError: the broker did not answer, or the topic does not exist.
    """
    from confluent_kafka import TopicCollection

    admin = admin_client(kafka)
    futures = admin.describe_topics(TopicCollection([topic]))
    try:
        description = futures[topic].result(timeout=timeout_s)
    except KafkaException as exc:
        msg = f"could not describe topic {topic!r}: {exc.args[0].str()}"
        raise KafkaUnavailableError(msg) from exc
    return str(description.topic_id)


def log_ends(kafka: KafkaSettings, topic: str, timeout_s: float = 10.0) -> dict[int, int]:
    """The offset the next message of each partition of ``topic`` will get (high watermarks)."""
    from confluent_kafka import Consumer, TopicPartition

    probe = Consumer(probe_config(kafka, "headwater.log-ends"))
    try:
        metadata = probe.list_topics(topic, timeout=timeout_s).topics[topic]
        ends = {}
        for partition in metadata.partitions:
            _, high = probe.get_watermark_offsets(
                TopicPartition(topic, partition), timeout=timeout_s
            )
            ends[partition] = high
        return ends
    except KafkaException as exc:
        msg = f"could not read the log ends of {topic!r}: {exc.args[0].str()}"
        raise KafkaUnavailableError(msg) from exc
    finally:
        probe.close()


class KafkaRecord(Protocol):
    """What a worker reads of a Kafka message; aiokafka's ``ConsumerRecord`` is one, so the
    worker's batches need no conversion per message."""

    @property
    def partition(self) -> int: ...
    @property
    def offset(self) -> int: ...
    @property
    def key(self) -> bytes | None: ...
    @property
    def value(self) -> bytes | None: ...
    @property
    def timestamp(self) -> int:
        """The message's Kafka timestamp (its arrival), epoch ms."""
        ...


@dataclass(frozen=True, slots=True)
class RawMessage:
    """A Kafka message read outside the worker's consumer (catch-up, tests)."""

    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    timestamp: int


def read_range(
    kafka: KafkaSettings,
    topic: str,
    partition: int,
    start: int,
    end: int,
    *,
    batch_size: int = 5000,
) -> Iterator[list[RawMessage]]:
    """Messages of one partition with ``start <= offset < end``, in batches, in order.

    Offsets below the partition's low watermark (deleted by retention) are skipped.
    """
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer(
        {
            **client_config(kafka),
            "group.id": f"headwater.read-range.{topic}",
            "enable.auto.commit": False,
            # Aborted pushes (connectors.kafka_transactions) are never read; the range may
            # end with a transaction marker, which no read returns: the end of the log says so.
            "isolation.level": "read_committed",
            "enable.partition.eof": True,
        }
    )
    try:
        low, high = consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=10)
        start, end = max(start, low), min(end, high)
        if start >= end:
            return
        consumer.assign([TopicPartition(topic, partition, start)])
        position = start
        while position < end:
            messages = consumer.consume(min(batch_size, end - position), timeout=10)
            batch = []
            at_end = False
            for m in messages:
                error = m.error()
                if error is not None and error.code() == KafkaError._PARTITION_EOF:
                    at_end = True
                    continue
                if error is not None:
                    raise KafkaUnavailableError(f"reading {topic}[{partition}] failed: {error}")
                offset = m.offset() or 0
                if offset < end:
                    batch.append(
                        RawMessage(partition, offset, m.key(), m.value(), m.timestamp()[1])
                    )
            if not messages:
                msg = (
                    f"reading {topic}[{partition}] from {position} to {end}: no message within 10 s"
                )
                raise KafkaUnavailableError(msg)
            if batch:
                position = batch[-1].offset + 1
                yield batch
            if at_end or not batch:
                position = end
    finally:
        consumer.close()
