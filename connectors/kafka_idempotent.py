"""One message, acknowledged, for asyncio callers: the push endpoint's single-event requests.

A request of one event is all or nothing by itself, so it needs no Kafka transaction: the
idempotent producer (acks=all, ``producer_config``) writes it at most once, and its delivery
report says whether it was written. A transaction costs a round trip to the coordinator and
a marker per partition on top: on this machine a one-message transaction takes 5 ms at the
median and 30 ms at the 90th percentile, a plain acknowledged produce 0.5 ms and 1.2 ms
(2026-12-05, a single local broker), which bounded single-event pushes to a few hundred a
second.

What a failed delivery means decides the answer. A report that the broker refused the
message (too large, no such topic, not authorized, a refused login) means it was not
written: ``ProduceError``, which the endpoint answers 503 "nothing written". Any other
failure (a timeout, a lost connection) may have come after the broker wrote it:
``ProduceOutcomeUnknownError``, answered like a transaction whose commit got no answer, so a
client's retry never counts the event twice unless it chose to without an Idempotency-Key.

Delivery reports are served by one thread that polls the producer and hands each result to
the caller's event loop; the event loop itself never blocks on Kafka.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable

from confluent_kafka import KafkaError, KafkaException, Message, Producer

from headwater.connectors.errors import ProduceError
from headwater.connectors.kafka import producer_config
from headwater.connectors.kafka_security import is_login_error, login_problem
from headwater.schemas.settings import KafkaSettings

__all__ = [
    "NOT_WRITTEN",
    "IdempotentProducer",
    "ProduceOutcomeUnknownError",
    "settle_from_thread",
]


class ProduceOutcomeUnknownError(ProduceError):
    """Kafka did not confirm in time: the events may or may not be written."""


NOT_WRITTEN = frozenset(
    {
        KafkaError.MSG_SIZE_TOO_LARGE,
        KafkaError.INVALID_MSG,
        KafkaError.INVALID_MSG_SIZE,
        KafkaError.RECORD_LIST_TOO_LARGE,
        KafkaError.INVALID_RECORD,
        KafkaError.UNKNOWN_TOPIC_OR_PART,
        KafkaError._UNKNOWN_TOPIC,
        KafkaError._UNKNOWN_PARTITION,
        KafkaError.TOPIC_AUTHORIZATION_FAILED,
        KafkaError.CLUSTER_AUTHORIZATION_FAILED,
        KafkaError.TRANSACTIONAL_ID_AUTHORIZATION_FAILED,
        KafkaError.SASL_AUTHENTICATION_FAILED,
        KafkaError._AUTHENTICATION,
        KafkaError.INVALID_REQUIRED_ACKS,
        KafkaError.POLICY_VIOLATION,
    }
)
"""Delivery errors that mean the broker did not write the message (it refused it, or it was
never accepted); every other failure leaves the outcome unknown."""
_UNREACHABLE = frozenset({KafkaError._ALL_BROKERS_DOWN, KafkaError._TRANSPORT})


def settle_from_thread(
    loop: asyncio.AbstractEventLoop, future: asyncio.Future[None], error: ProduceError | None
) -> None:
    """Complete ``future`` (with ``error``, if any) on ``loop`` from a Kafka thread; a future
    already done (its caller gone) or a closed loop is left alone."""

    def settle() -> None:
        if future.done():
            return
        if error is None:
            future.set_result(None)
        else:
            future.set_exception(error)

    if not loop.is_closed():
        loop.call_soon_threadsafe(settle)


class IdempotentProducer:
    """An idempotent producer whose acknowledgements complete asyncio futures.

    Args:
        kafka: connection settings.
        delivery_timeout_s: how long a message may wait for Kafka (``delivery.timeout.ms``).
        linger_ms: how long the producer gathers messages of concurrent requests.
        name: names the polling thread.
    """

    def __init__(
        self,
        kafka: KafkaSettings,
        *,
        delivery_timeout_s: float = 5.0,
        linger_ms: float = 1.0,
        name: str = "push",
    ) -> None:
        self._kafka = kafka
        self._config = {
            **producer_config(kafka, delivery_timeout_s=delivery_timeout_s, linger_ms=linger_ms),
            "error_cb": self._on_error,
        }
        self._name = name
        self._producer: Producer | None = None
        self._login_error: str | None = None
        self._lock = threading.Lock()
        self._closed = threading.Event()
        self._thread: threading.Thread | None = None
        self.healthy = False
        """Whether Kafka is known to be in reach: from a first acknowledgement (here, or of a
        caller's transaction) until a sign that it is not (every broker down, a refused
        login, a failed delivery). Until then callers take a path that can tell "nothing
        written" for sure (a transaction that cannot begin) instead of answering a delivery
        timeout with "outcome unknown"."""

    def _on_error(self, err: KafkaError) -> None:
        # Refused credentials surface here; deliveries then only say "timed out".
        if is_login_error(err):
            self._login_error = err.str()
        if err.code() in _UNREACHABLE or is_login_error(err):
            self.healthy = False
        if err.fatal():  # an idempotence failure: the next message gets a new producer
            with self._lock:
                self._producer = None

    def _get(self) -> Producer:
        with self._lock:
            if self._producer is None:
                self._producer = Producer(self._config)
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._poll, name=f"{self._name}-acks", daemon=True
                )
                self._thread.start()
            return self._producer

    def _poll(self) -> None:
        while not self._closed.is_set():
            producer = self._producer
            if producer is None:
                self._closed.wait(0.05)
            else:
                producer.poll(0.05)

    async def produce(self, topic: str, key: bytes, value: bytes) -> None:
        """Produce one message (an empty key: none) and return once Kafka acknowledged it.

        Raises:
            ProduceError: it was not written (refused, or it could not be queued).
            ProduceOutcomeUnknownError: it may or may not be written.
        """
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        try:
            self._get().produce(topic, value, key or None, on_delivery=self._report(loop, future))
        except BufferError as exc:
            raise ProduceError(f"the producer's queue is full: {exc}") from None
        except KafkaException as exc:
            raise ProduceError(f"producing failed: {exc}") from None
        await asyncio.shield(future)

    def _report(
        self, loop: asyncio.AbstractEventLoop, future: asyncio.Future[None]
    ) -> Callable[[KafkaError | None, Message], None]:
        def delivered(err: KafkaError | None, _: Message) -> None:
            if err is None:
                self._login_error, self.healthy = None, True
            else:
                self.healthy = False
            settle_from_thread(loop, future, None if err is None else self._failure(err))

        return delivered

    def _failure(self, err: KafkaError) -> ProduceError:
        if self._login_error is not None:  # never logged in: nothing was sent
            return ProduceError(login_problem(self._kafka, self._login_error))
        if err.code() in NOT_WRITTEN:
            return ProduceError(f"Kafka refused the message: {err.str()}")
        return ProduceOutcomeUnknownError(f"Kafka did not acknowledge the message: {err.str()}")

    def close(self, timeout_s: float = 5.0) -> None:
        """Wait up to ``timeout_s`` for the messages in flight, then stop polling."""
        with self._lock:
            producer = self._producer
        if producer is not None:
            producer.flush(timeout_s)
        self._closed.set()
        if self._thread is not None:
            self._thread.join(timeout=1)
