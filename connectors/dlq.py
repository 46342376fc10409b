"""Dead-letter topics: read the letters, and replay them into the source topic exactly once.

A letter is the original message (key, value, Kafka timestamp) that the worker could not use,
with headers saying why (``hw.reason``, ``hw.error``, ``hw.error_class``, ``hw.field``) and
where it came from (``hw.source_topic``, ``hw.partition``, ``hw.offset``); see
``stream_workers.processor``. Letters are read with a throwaway consumer: assigned
partitions, no group, no committed offsets.

Replaying re-produces letters into the source topic, each with its key, value and original
timestamp, on its original partition (so an entity's events stay on one partition, whatever
partitioner the first producer used), in their original order, with a header
``hw.replay_of: <dlq topic>/<partition>/<offset>``. Which letters were replayed is recorded
in a ledger topic ``<dlq topic>.replayed`` (one partition, kept forever) in batches:

1. a ``started`` record: the letters of the batch and the source topic's end offsets,
2. the replayed events, flushed (idempotent producer: retries never duplicate),
3. a ``done`` record with the letters.

A run that died between 1 and 3 leaves a ``started`` record without ``done``; the next run
finds which of its letters reached the source topic by reading the source topic from those
end offsets for their ``hw.replay_of`` headers, and records them ``done``. So a letter is
replayed once across crashes and repeated runs, and a run that replays only some reasons
leaves the others replayable. Source topics stay free of transactions (their control
records would leave offset gaps that the worker's position and lag accounting do not
expect). One replay of a dead-letter topic at a time: two concurrent runs are not fenced.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

from confluent_kafka import Consumer, KafkaException, Message, TopicPartition

from headwater.connectors.errors import KafkaUnavailableError
from headwater.connectors.kafka import EventProducer, client_config, ensure_topics
from headwater.schemas.settings import KafkaSettings

__all__ = [
    "REPLAY_OF_HEADER",
    "DeadLetter",
    "DeadLetterReplayer",
    "end_offsets",
    "ledger_topic",
    "read_dead_letters",
    "replayed_letters",
    "watermarks",
]

REPLAY_OF_HEADER = "hw.replay_of"
_IDLE_TIMEOUT_S = 15.0

LetterId = tuple[int, int]
"""(partition, offset) of a letter in its dead-letter topic."""


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """One message of a dead-letter topic."""

    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    timestamp: int
    """The original message's Kafka timestamp (its arrival), epoch ms."""
    headers: Mapping[str, str]

    @property
    def id(self) -> LetterId:
        return (self.partition, self.offset)

    @property
    def reason(self) -> str:
        return self.headers.get("hw.reason") or "unknown"

    @property
    def error(self) -> str:
        return self.headers.get("hw.error", "")

    @property
    def field(self) -> str:
        return self.headers.get("hw.field", "")

    @property
    def source_position(self) -> tuple[int, int] | None:
        """(partition, offset) of the original message in the source topic, when recorded."""
        try:
            return int(self.headers["hw.partition"]), int(self.headers["hw.offset"])
        except (KeyError, ValueError):
            return None


def ledger_topic(dlq_topic: str) -> str:
    """Where the replays of ``dlq_topic`` are recorded."""
    return f"{dlq_topic}.replayed"


def _consumer(kafka: KafkaSettings) -> Consumer:
    # Assigned partitions only, never subscribed and never committed: no group state is made.
    return Consumer(
        {
            **client_config(kafka),
            "group.id": f"headwater.dlq-reader.{uuid.uuid4().hex[:8]}",
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
        }
    )


def watermarks(kafka: KafkaSettings, topic: str) -> dict[int, tuple[int, int]]:
    """(low, high) watermark of every partition of ``topic`` ({} when it does not exist).

    Raises:
        KafkaUnavailableError: no broker answered within 10 s.
    """
    consumer = _consumer(kafka)
    try:
        metadata = consumer.list_topics(topic, timeout=10).topics.get(topic)
        if metadata is None or metadata.error is not None:
            return {}
        return {
            p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
            for p in metadata.partitions
        }
    except KafkaException as exc:
        msg = f"Kafka did not answer for the offsets of {topic}: {exc}; is it up (kafka.bootstrap_servers)?"
        raise KafkaUnavailableError(msg) from exc
    finally:
        consumer.close()


def end_offsets(kafka: KafkaSettings, topic: str) -> dict[int, int]:
    """The high watermark of every partition of ``topic`` ({} when it does not exist)."""
    return {p: high for p, (_, high) in watermarks(kafka, topic).items()}


def _read(
    kafka: KafkaSettings, topic: str, starts: Mapping[int, int] | None = None
) -> Iterator[Message]:
    """Every message of ``topic`` from ``starts`` (default: the oldest kept) to the end
    offsets of the moment reading began, partition by partition."""
    consumer = _consumer(kafka)
    try:
        metadata = consumer.list_topics(topic, timeout=10).topics.get(topic)
        if metadata is None or metadata.error is not None:
            return
        for partition in sorted(metadata.partitions):
            tp = TopicPartition(topic, partition)
            low, high = consumer.get_watermark_offsets(tp, timeout=10)
            position = max(low, (starts or {}).get(partition, low))
            if position >= high:
                continue
            consumer.assign([TopicPartition(topic, partition, position)])
            idle_since = time.monotonic()
            while position < high:
                messages = consumer.consume(1000, timeout=1.0)
                if not messages:
                    if time.monotonic() - idle_since > _IDLE_TIMEOUT_S:
                        msg = f"reading {topic}[{partition}] from {position} to {high}: nothing for {_IDLE_TIMEOUT_S:g} s"
                        raise KafkaUnavailableError(msg)
                    continue
                idle_since = time.monotonic()
                for m in messages:
                    error = m.error()
                    if error is not None:
                        msg = f"reading {topic}[{partition}] failed: {error.str()}"
                        raise KafkaUnavailableError(msg)
                    offset = cast(int, m.offset())
                    if offset >= high:
                        position = high
                        break
                    position = offset + 1
                    yield m
            consumer.unassign()
    finally:
        consumer.close()


def _headers(message: Message) -> dict[str, str]:
    raw = cast(list[tuple[str, bytes | None]], message.headers() or [])
    return {k: (v or b"").decode("utf-8", "replace") for k, v in raw}


def read_dead_letters(kafka: KafkaSettings, dlq_topic: str) -> Iterator[DeadLetter]:
    """Every letter kept in ``dlq_topic`` (none when the topic does not exist)."""
    for m in _read(kafka, dlq_topic):
        yield DeadLetter(
            partition=cast(int, m.partition()),
            offset=cast(int, m.offset()),
            key=m.key(),
            value=m.value(),
            timestamp=m.timestamp()[1],
            headers=_headers(m),
        )


@dataclass(frozen=True)
class _Started:
    batch: str
    letters: frozenset[LetterId]
    source_offsets: dict[int, int]


def _ledger(kafka: KafkaSettings, dlq_topic: str) -> tuple[set[LetterId], list[_Started]]:
    """Letters recorded done, and batches started but never recorded done."""
    done: set[LetterId] = set()
    started: dict[str, _Started] = {}
    for m in _read(kafka, ledger_topic(dlq_topic)):
        record = json.loads(cast(bytes, m.value()))
        letters = frozenset((int(p), int(o)) for p, o in record["letters"])
        if record["kind"] == "started":
            offsets = {int(p): int(o) for p, o in record["source_offsets"].items()}
            started[record["batch"]] = _Started(record["batch"], letters, offsets)
        else:
            done |= letters
            started.pop(record["batch"], None)
    return done, list(started.values())


def replayed_letters(kafka: KafkaSettings, dlq_topic: str) -> set[LetterId]:
    """Letters of ``dlq_topic`` recorded as replayed (read only: an unfinished batch's
    letters count once ``DeadLetterReplayer`` has recovered it)."""
    return _ledger(kafka, dlq_topic)[0]


class DeadLetterReplayer:
    """Replays letters of one dead-letter topic into its source topic; see the module docstring.

    Args:
        kafka: connection settings.
        dlq_topic: the dead-letter topic.
        source_topic: where the letters go back to.
        batch_size: letters per ledger batch.
    """

    def __init__(
        self, kafka: KafkaSettings, dlq_topic: str, source_topic: str, *, batch_size: int = 10_000
    ) -> None:
        self.kafka, self.dlq_topic, self.source_topic = kafka, dlq_topic, source_topic
        self.batch_size = batch_size
        self._producer = EventProducer(kafka)

    def replayed(self) -> set[LetterId]:
        """Letters replayed by any earlier run, after recovering batches a crash left open."""
        ensure_topics(
            self.kafka, [ledger_topic(self.dlq_topic)], partitions=1, config={"retention.ms": "-1"}
        )
        done, unfinished = _ledger(self.kafka, self.dlq_topic)
        for batch in unfinished:
            found = self._landed(batch)
            self._record("done", batch.batch, found, recovered=True)
            done |= found
        return done

    def _landed(self, batch: _Started) -> set[LetterId]:
        """Letters of ``batch`` whose replay reached the source topic."""
        prefix = f"{self.dlq_topic}/"
        found: set[LetterId] = set()
        for m in _read(self.kafka, self.source_topic, batch.source_offsets):
            replay_of = _headers(m).get(REPLAY_OF_HEADER, "")
            if replay_of.startswith(prefix):
                partition, offset = replay_of[len(prefix) :].split("/")
                letter = (int(partition), int(offset))
                if letter in batch.letters:
                    found.add(letter)
        return found

    def _record(
        self, kind: str, batch: str, letters: Sequence[LetterId] | set[LetterId], **extra: Any
    ) -> None:
        record = {"kind": kind, "batch": batch, "letters": sorted(letters), **extra}
        self._producer.produce(
            ledger_topic(self.dlq_topic), json.dumps(record).encode(), batch.encode()
        )
        self._producer.flush()

    def replay(self, letters: Sequence[DeadLetter]) -> int:
        """Replay ``letters`` (none of them replayed before: filter with ``replayed()``), in
        their original order; returns how many. Raises ``ProduceError`` if Kafka did not
        acknowledge them (the next run recovers the batch)."""
        partitions = len(end_offsets(self.kafka, self.source_topic))
        if not partitions:
            msg = f"source topic {self.source_topic!r} does not exist; run `headwater apply` first"
            raise KafkaUnavailableError(msg)
        ordered = sorted(
            letters, key=lambda letter: (letter.source_position or (-1, -1), letter.id)
        )
        for start in range(0, len(ordered), self.batch_size):
            chunk = ordered[start : start + self.batch_size]
            batch = uuid.uuid4().hex
            offsets = end_offsets(self.kafka, self.source_topic)
            self._record("started", batch, [letter.id for letter in chunk], source_offsets=offsets)
            for letter in chunk:
                position = letter.source_position
                target = position[0] if position is not None and position[0] < partitions else None
                self._producer.produce(
                    self.source_topic,
                    letter.value or b"",
                    letter.key,
                    headers={
                        REPLAY_OF_HEADER: f"{self.dlq_topic}/{letter.partition}/{letter.offset}".encode()
                    },
                    timestamp_ms=letter.timestamp,
                    partition=target,
                )
            self._producer.flush()
            self._record("done", batch, [letter.id for letter in chunk])
        return len(ordered)
