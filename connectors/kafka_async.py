"""An asyncio producer: many coroutines produce through one idempotent acks=all producer and
each awaits the acknowledgement of its own messages.

Delivery is awaited without blocking the event loop: each message's delivery callback runs
on a background thread that polls the one shared producer, and resolves the batch's asyncio
future through ``loop.call_soon_threadsafe`` once its last message is acknowledged (or one
failed). The configuration is ``connectors.kafka.producer_config``'s, the one of every
Headwater producer, so retries never duplicate or reorder.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence

from confluent_kafka import KafkaError, KafkaException, Message, Producer

from headwater.connectors.errors import ProduceError
from headwater.connectors.kafka import producer_config
from headwater.connectors.kafka_security import is_login_error, login_problem
from headwater.schemas.settings import KafkaSettings

__all__ = ["AsyncProducer"]


class _Delivery:
    """The messages of one batch; resolves ``future`` when all are acknowledged or one failed."""

    __slots__ = ("error", "fatal", "future", "loop", "remaining")

    def __init__(self, loop: asyncio.AbstractEventLoop, count: int) -> None:
        self.loop = loop
        self.future: asyncio.Future[None] = loop.create_future()
        self.remaining = count
        self.error: str | None = None
        self.fatal = False

    def on_delivery(self, err: KafkaError | None, msg: Message) -> None:  # on the poll thread
        if err is not None:
            if err.fatal():
                self.fatal = True
            if self.error is None:
                self.error = err.str()
                self.loop.call_soon_threadsafe(self._done)
            return
        self.remaining -= 1
        if self.remaining == 0 and self.error is None:
            self.loop.call_soon_threadsafe(self._done)

    def _done(self) -> None:
        if not self.future.done():
            self.future.set_result(None)


class AsyncProducer:
    """One idempotent acks=all producer, created on first use and polled by a daemon thread.

    Args:
        kafka: connection settings.
        delivery_timeout_s: how long Kafka may take to acknowledge a message before it
            counts as failed (``delivery.timeout.ms``); ``produce_all`` waits 2 s more.
        linger_ms: how long the producer gathers messages into a batch.
        name: names the poll thread (``<name>-poll``) in thread dumps.
    """

    def __init__(
        self,
        kafka: KafkaSettings,
        *,
        delivery_timeout_s: float,
        linger_ms: float,
        name: str = "async-producer",
    ) -> None:
        self._kafka = kafka
        self._login_error: str | None = None
        self._config = {
            **producer_config(kafka, delivery_timeout_s=delivery_timeout_s, linger_ms=linger_ms),
            "error_cb": self._on_error,
        }
        self.delivery_timeout_s = delivery_timeout_s
        self._producer: Producer | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._name = name

    def _on_error(self, err: KafkaError) -> None:
        # Refused credentials surface here; delivery reports would only say "timed out".
        self._login_error = err.str() if is_login_error(err) else self._login_error

    def _failure(self, detail: str) -> ProduceError:
        """The error of a failed batch: refused credentials named as such when they are why."""
        if self._login_error is not None:
            return ProduceError(login_problem(self._kafka, self._login_error))
        return ProduceError(detail)

    def _get(self) -> Producer:
        producer = self._producer
        if producer is None:
            with self._lock:
                if self._producer is None:
                    self._producer = Producer(self._config)
                    self._thread = threading.Thread(
                        target=self._poll,
                        args=(self._producer, self._stop),
                        name=f"{self._name}-poll",
                        daemon=True,
                    )
                    self._thread.start()
                producer = self._producer
        return producer

    def _reset(self, broken: Producer) -> None:
        """Drop a producer that hit a fatal error (idempotence state lost); the next batch
        makes a new one."""
        with self._lock:
            if self._producer is broken:
                self._producer = None
                self._stop.set()
                self._stop = threading.Event()

    @staticmethod
    def _poll(producer: Producer, stop: threading.Event) -> None:
        # The only thread that serves delivery callbacks, so a batch's counter needs no lock.
        while not stop.is_set():
            producer.poll(0.05)

    async def produce_all(self, topic: str, messages: Sequence[tuple[bytes, bytes]]) -> None:
        """Produce ``(key, value)`` messages to ``topic`` in order (an empty key: none) and
        return once Kafka acknowledged every one of them.

        Raises:
            ProduceError: the producer cannot be created, its local queue stayed full, the
                topic is unknown, or a message was not acknowledged within
                ``delivery_timeout_s`` (+ 2 s); nothing may then be assumed written.
        """
        if not messages:
            return
        loop = asyncio.get_running_loop()
        try:
            kafka = self._get()
        except Exception as exc:  # noqa: BLE001 - client creation failure is an unavailable Kafka
            raise ProduceError(str(exc)) from None
        delivery = _Delivery(loop, len(messages))
        callback = delivery.on_delivery
        deadline = loop.time() + self.delivery_timeout_s
        for key, value in messages:
            while True:
                try:
                    kafka.produce(topic, value, key or None, on_delivery=callback)
                    break
                except BufferError:
                    if loop.time() > deadline:
                        msg = "the producer's local queue stayed full"
                        raise ProduceError(msg) from None
                    await asyncio.sleep(0.01)
                except KafkaException as exc:  # unknown topic, fatal producer error
                    error = (
                        exc.args[0] if exc.args and isinstance(exc.args[0], KafkaError) else None
                    )
                    if error is not None and error.fatal():
                        self._reset(kafka)
                    raise ProduceError(str(exc)) from None
        wait_s = self.delivery_timeout_s + 2
        try:
            await asyncio.wait_for(asyncio.shield(delivery.future), wait_s)
        except TimeoutError:
            raise self._failure(f"no acknowledgement within {wait_s:g} s") from None
        if delivery.error is not None:
            if delivery.fatal:
                self._reset(kafka)
            raise self._failure(delivery.error)
        self._login_error = None

    def close(self) -> None:
        """Stop the poll thread and flush what is still queued (up to 5 s)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        if self._producer is not None:
            self._producer.flush(5)
