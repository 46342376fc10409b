"""Consumer groups: their committed positions, members and lag, as operators and tests ask.

Read through the shared admin client (``connectors.kafka.admin_client``) and short-lived
probe consumers that are always closed.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from confluent_kafka import KafkaError, KafkaException

from headwater.connectors.errors import KafkaUnavailableError
from headwater.connectors.kafka import admin_client, probe_config, renew_admin
from headwater.schemas.settings import KafkaSettings

__all__ = [
    "committed_offsets",
    "consumer_lag",
    "group_members",
    "messages_between",
    "partition_lags",
]


_COORDINATOR_BUSY = frozenset(
    {
        KafkaError.COORDINATOR_LOAD_IN_PROGRESS,
        KafkaError.COORDINATOR_NOT_AVAILABLE,
        KafkaError.NOT_COORDINATOR,
    }
)
"""Answers of a group coordinator that is starting or moving: ask again shortly."""


def committed_offsets(
    kafka: KafkaSettings, group_id: str, topic: str, timeout_s: float = 30.0
) -> dict[int, int]:
    """The group's committed offset (next to consume) per partition; -1 where none.

    A broker that has just started (or moved the group's coordinator) answers "coordinator
    load in progress" or "not coordinator" for a while: those retriable answers are retried
    for up to ``timeout_s``, as Kafka's own clients do.

    Raises:
        KafkaUnavailableError: no answer, or a retriable one for longer than ``timeout_s``.
    """
    from confluent_kafka import ConsumerGroupTopicPartitions, TopicPartition

    admin = admin_client(kafka)
    metadata = admin.list_topics(topic, timeout=10).topics[topic]
    partitions = [TopicPartition(topic, p) for p in metadata.partitions]
    deadline = time.monotonic() + timeout_s
    while True:
        future = admin.list_consumer_group_offsets(
            [ConsumerGroupTopicPartitions(group_id, partitions)]
        )
        try:
            result = future[group_id].result(timeout=10)
        except TimeoutError as exc:  # no answer yet (a coordinator moving after a restart)
            if time.monotonic() < deadline:
                admin = renew_admin(kafka)  # a kept client may not recover by itself
                continue
            msg = f"reading the offsets of group {group_id!r} on {topic!r}: no answer"
            raise KafkaUnavailableError(msg) from exc
        except KafkaException as exc:
            error = exc.args[0]
            if (
                error.retriable() or error.code() in _COORDINATOR_BUSY
            ) and time.monotonic() < deadline:
                time.sleep(0.2)
                continue
            msg = f"reading the offsets of group {group_id!r} on {topic!r} failed: {error.str()}"
            raise KafkaUnavailableError(msg) from exc
        return {tp.partition: tp.offset for tp in result.topic_partitions}


def group_members(kafka: KafkaSettings, group_id: str) -> list[str]:
    """The members of a consumer group right now, as ``client_id@host`` (empty: none).

    A consumer killed with SIGKILL stays a member until its session times out.
    """
    admin = admin_client(kafka)
    future = admin.describe_consumer_groups([group_id], request_timeout=10)[group_id]
    try:
        description = future.result(timeout=15)
    except KafkaException as exc:
        msg = f"cannot describe consumer group {group_id!r} at {kafka.bootstrap_servers}: {exc}"
        raise KafkaUnavailableError(msg) from exc
    return [f"{m.client_id}@{m.host}" for m in description.members]


def consumer_lag(
    kafka: KafkaSettings, group_id: str, topic: str, committed: Mapping[int, int] | None = None
) -> int:
    """Messages of ``topic`` not yet committed by ``group_id`` (``partition_lags`` summed)."""
    return sum(partition_lags(kafka, group_id, topic, committed).values())


def partition_lags(
    kafka: KafkaSettings, group_id: str, topic: str, committed: Mapping[int, int] | None = None
) -> dict[int, int]:
    """Per partition, messages of ``topic`` not yet committed by ``group_id`` (all of them if
    it never committed).

    ``committed`` saves a round trip when the caller already has the group's offsets.

    Offsets are not all messages: a transaction (the push endpoint writes each request in
    one) ends with a marker that takes an offset and that no consumer ever receives, and the
    messages of an aborted transaction are skipped by read-committed consumers. So a group
    that consumed everything may sit one or more offsets below the log end; a partition whose
    committed position is below its end counts as caught up when a read-committed read from
    that position finds no message before the end.
    """
    from confluent_kafka import TopicPartition

    if committed is None:
        committed = committed_offsets(kafka, group_id, topic)
    partitions = [TopicPartition(topic, p) for p in committed]
    probe = _probe(kafka, group_id)
    try:
        behind: dict[int, int] = {}
        starts: dict[int, int] = {}
        for tp in partitions:
            low, high = probe.get_watermark_offsets(tp, timeout=10)
            done = committed.get(tp.partition, -1)
            start = done if done >= 0 else low
            if high > start:
                behind[tp.partition], starts[tp.partition] = high - start, start
        with_messages = _with_messages(probe, topic, starts) if starts else set()
        return {
            tp.partition: behind.get(tp.partition, 0) if tp.partition in with_messages else 0
            for tp in partitions
        }
    finally:
        probe.close()


def _with_messages(
    probe: Any, topic: str, starts: Mapping[int, int], ends: Mapping[int, int] | None = None
) -> set[int]:
    """The partitions where a read-committed read from ``starts[p]`` finds a message before
    ``ends[p]`` (default: the log's end); those the broker does not tell about within 5 s
    count too."""
    from confluent_kafka import TopicPartition

    probe.assign([TopicPartition(topic, p, o) for p, o in starts.items()])
    pending, found = set(starts), set()
    deadline = time.monotonic() + 5
    while pending and time.monotonic() < deadline:
        for m in probe.consume(len(pending), timeout=0.2):
            partition, error = m.partition(), m.error()
            if partition not in pending:
                continue
            if error is None:
                if ends is None or m.offset() < ends[partition]:
                    found.add(partition)
                pending.discard(partition)
            elif error.code() == KafkaError._PARTITION_EOF:
                pending.discard(partition)
    return found | pending


def _probe(kafka: KafkaSettings, group_id: str) -> Any:
    """A read-committed consumer that reads without committing (closed by the caller)."""
    from confluent_kafka import Consumer

    return Consumer(
        {
            **probe_config(kafka, f"{group_id}.lag-probe"),
            "enable.partition.eof": True,
            "auto.offset.reset": "earliest",  # a start below the log's beginning
            "isolation.level": "read_committed",
            "fetch.wait.max.ms": 10,
        }
    )


def messages_between(
    kafka: KafkaSettings, group_id: str, topic: str, ranges: Mapping[int, tuple[int, int]]
) -> set[int]:
    """The partitions ``p`` of ``topic`` holding a committed message at an offset in
    ``ranges[p] = (start, end)``: positions stored as "last offset done" can sit below an
    end that only transaction markers (or aborted messages) follow, which no reader gets."""
    todo = {p: (s, e) for p, (s, e) in ranges.items() if e > s}
    if not todo:
        return set()
    probe = _probe(kafka, group_id)
    try:
        starts = {p: s for p, (s, _) in todo.items()}
        return _with_messages(probe, topic, starts, {p: e for p, (_, e) in todo.items()})
    finally:
        probe.close()
