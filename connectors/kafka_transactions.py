"""All-or-nothing produce for asyncio callers: Kafka transactions, grouped per flush.

The push endpoint must answer 503 only when none of a request's events will ever be
processed, so that a client's retry never counts an event twice. An idempotent producer
alone cannot promise that: when Kafka fails half-way, some messages of a request may be
written and others not. Here every request of several messages goes into a Kafka
transaction (a single message is all or nothing by itself and goes to an idempotent
producer, ``connectors.kafka_idempotent``, two to three times faster), and the
workers (and every other Headwater reader of raw topics) consume with
``isolation.level=read_committed``, so the messages of an aborted transaction are never seen.

Transactions cost a round trip to the coordinator and a marker per partition, so concurrent
requests share them: a thread takes every request queued since its last transaction began,
produces them all in one transaction and commits it. A producer runs one transaction at a
time, and a commit takes 2-20 ms on a local broker, so several threads (``lanes``), each with
its own producer and ``transactional.id``, take turns: while one commits, the next gathers
the requests that came meanwhile (one lane allowed 589 single-event requests/s with 16
clients, all of them waiting on commits). When the commit succeeds, each request
is acknowledged; when any part fails, the transaction is aborted and every request of it
fails with ``ProduceError`` (``txn_requires_abort``), so none of their events count.

Whether a transaction whose commit request got no answer was committed cannot be known by
its producer: the commit is then retried (librdkafka resumes it) until ``commit_timeout_s``
has passed; past it, the producer is dropped and the error says that the outcome is unknown
(``ProduceOutcomeUnknownError``): a client retrying such a request should send an
``Idempotency-Key``. A producer replacing a dropped one reuses its ``transactional.id``, so
the broker fences the old one and finishes or aborts its open transaction at once.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field

from confluent_kafka import KafkaError, KafkaException, Producer

from headwater.connectors.errors import ProduceError
from headwater.connectors.kafka import producer_config
from headwater.connectors.kafka_idempotent import (
    IdempotentProducer,
    ProduceOutcomeUnknownError,
    settle_from_thread,
)
from headwater.connectors.kafka_security import is_login_error, login_problem
from headwater.schemas.settings import KafkaSettings

__all__ = ["ProduceOutcomeUnknownError", "TransactionalProducer"]

log = logging.getLogger(__name__)


@dataclass
class _Lane:
    """One transactional producer (made on first use) and the config it is made with."""

    config: dict[str, object]
    producer: Producer | None = None
    login_error: str | None = None


@dataclass
class _Request:
    topic: str
    messages: Sequence[tuple[bytes, bytes]]
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[None] = field(init=False)

    def __post_init__(self) -> None:
        self.future = self.loop.create_future()

    def finish(self, error: ProduceError | None) -> None:
        settle_from_thread(self.loop, self.future, error)


class TransactionalProducer:
    """One transactional producer and the thread that runs its transactions.

    Args:
        kafka: connection settings.
        delivery_timeout_s: how long a message may wait for Kafka (``delivery.timeout.ms``);
            a transaction's commit waits for its messages, so it fails after about this long.
        commit_timeout_s: how long a commit may wait before its outcome counts as unknown.
        linger_ms: how long the producer gathers messages into a batch.
        name: names the threads and the ``transactional.id``s (``<name>-<random>-<lane>``).
        lanes: transactions that may run at once (threads, each with its own producer).
    """

    def __init__(
        self,
        kafka: KafkaSettings,
        *,
        delivery_timeout_s: float = 5.0,
        commit_timeout_s: float = 10.0,
        linger_ms: float = 1.0,
        name: str = "push",
        lanes: int = 4,
    ) -> None:
        # Random per process: two API processes must not fence each other. An open
        # transaction of a process that died is aborted by the broker after this long
        # (until then, read_committed consumers of its partitions wait).
        process_id = uuid.uuid4().hex
        self._lanes = [
            _Lane(
                {
                    **producer_config(
                        kafka, delivery_timeout_s=delivery_timeout_s, linger_ms=linger_ms
                    ),
                    "transactional.id": f"headwater-{name}-{process_id}-{i}",
                    "transaction.timeout.ms": int((delivery_timeout_s + commit_timeout_s) * 1000),
                }
            )
            for i in range(max(1, lanes))
        ]
        for lane in self._lanes:
            lane.config["error_cb"] = lambda err, lane=lane: self._on_error(lane, err)
        self._kafka = kafka
        self.delivery_timeout_s = delivery_timeout_s
        self.commit_timeout_s = commit_timeout_s
        self._queue: queue.Queue[_Request | None] = queue.Queue()
        self._threads = [
            threading.Thread(
                target=self._run, args=(lane,), name=f"{name}-transactions-{i}", daemon=True
            )
            for i, lane in enumerate(self._lanes)
        ]
        self._started = False
        self._lock = threading.Lock()
        self._single = IdempotentProducer(
            kafka, delivery_timeout_s=delivery_timeout_s, linger_ms=linger_ms, name=name
        )

    async def produce_all(self, topic: str, messages: Sequence[tuple[bytes, bytes]]) -> None:
        """Produce ``(key, value)`` messages to ``topic`` in order (an empty key: none), in
        a transaction, and return once it is committed.

        Raises:
            ProduceError: the transaction was aborted (none of the messages will be read by
                a read_committed consumer), or ``ProduceOutcomeUnknownError``.
        """
        if not messages:
            return
        if len(messages) == 1 and self._single.healthy:  # all or nothing by itself
            await self._single.produce(topic, *messages[0])
            return
        with self._lock:
            if not self._started:
                for thread in self._threads:
                    thread.start()
                self._started = True
        request = _Request(topic, messages, asyncio.get_running_loop())
        self._queue.put(request)
        await asyncio.shield(request.future)
        self._single.healthy = True  # Kafka took a transaction: it is in reach again

    def close(self) -> None:
        """Finish the queued transactions and stop the thread (up to the commit timeout)."""
        self._single.close(self.delivery_timeout_s)
        if self._started:
            for _ in self._threads:
                self._queue.put(None)
            for thread in self._threads:
                thread.join(timeout=self.delivery_timeout_s + self.commit_timeout_s + 5)

    def _run(self, lane: _Lane) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                break
            batch = [first]
            stop = False
            while True:
                try:
                    more = self._queue.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    stop = True
                    break
                batch.append(more)
            error = self._named(lane, self._transaction(lane, batch))
            for request in batch:
                request.finish(error)
            if stop:
                break
        if lane.producer is not None:
            lane.producer.flush(1)

    def _on_error(self, lane: _Lane, err: KafkaError) -> None:
        # Refused credentials surface here; the transaction calls only say "timed out".
        lane.login_error = err.str() if is_login_error(err) else lane.login_error

    def _named(self, lane: _Lane, error: ProduceError | None) -> ProduceError | None:
        """A failed transaction's error, naming refused credentials when they are why."""
        if error is None:
            lane.login_error = None
            return None
        if lane.login_error is not None and not isinstance(error, ProduceOutcomeUnknownError):
            return ProduceError(login_problem(self._kafka, lane.login_error))
        return error

    def _get(self, lane: _Lane) -> Producer:
        if lane.producer is None:
            producer = Producer(lane.config)
            try:
                producer.init_transactions(self.delivery_timeout_s)
            except KafkaException:
                producer.flush(0)
                raise
            lane.producer = producer
        return lane.producer

    def _transaction(self, lane: _Lane, batch: Sequence[_Request]) -> ProduceError | None:
        """Run one transaction of ``batch``; ``None`` when committed."""
        try:
            producer = self._get(lane)
        except KafkaException as exc:
            return ProduceError(f"the transactional producer cannot start: {_text(exc)}")
        try:
            producer.begin_transaction()
            for request in batch:
                self._produce(producer, request)
        except (KafkaException, BufferError) as exc:
            return self._abort(lane, producer, f"producing failed: {_text(exc)}")
        deadline = time.monotonic() + self.commit_timeout_s
        while True:
            try:
                producer.commit_transaction(max(0.1, deadline - time.monotonic()))
                return None
            except KafkaException as exc:
                error = _error(exc)
                if error is not None and error.txn_requires_abort():
                    return self._abort(lane, producer, f"the commit failed: {_text(exc)}")
                if error is not None and error.retriable() and time.monotonic() < deadline:
                    time.sleep(0.05)
                    continue  # librdkafka resumes the commit where it stopped
                # Its state is unknown: the next transaction makes a new producer with the
                # same ``transactional.id``, which fences this one.
                lane.producer = None
                if error is not None and error.fatal():
                    return ProduceError(f"the commit failed (fatal): {_text(exc)}")
                return ProduceOutcomeUnknownError(
                    f"the commit got no answer within {self.commit_timeout_s:g} s: {_text(exc)}"
                )

    def _produce(self, producer: Producer, request: _Request) -> None:
        deadline = time.monotonic() + self.delivery_timeout_s
        for key, value in request.messages:
            while True:
                try:
                    producer.produce(request.topic, value, key or None)
                    break
                except BufferError:
                    if time.monotonic() > deadline:
                        raise
                    producer.poll(0.01)

    def _abort(self, lane: _Lane, producer: Producer, reason: str) -> ProduceError:
        try:
            producer.abort_transaction(self.delivery_timeout_s)
        except KafkaException as exc:
            # The broker aborts it once this producer is fenced by its successor (or after
            # transaction.timeout.ms): it is never committed.
            log.warning("aborting a push transaction failed (%s); dropping the producer", exc)
            lane.producer = None
        return ProduceError(f"{reason}; the transaction was aborted, nothing was written")


def _error(exc: KafkaException) -> KafkaError | None:
    return exc.args[0] if exc.args and isinstance(exc.args[0], KafkaError) else None


def _text(exc: BaseException) -> str:
    error = _error(exc) if isinstance(exc, KafkaException) else None
    return error.str() if error is not None else str(exc) or type(exc).__name__
