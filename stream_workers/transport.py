"""A faust transport whose consumer hands whole fetches of the raw topics to the agents.

faust delivers messages one at a time: a ``Message`` object, a task, the conductor, a queue
put and the stream's bookkeeping for each, about 50 µs on this machine, which caps any faust
agent near 20k events/s whatever it does (``bench/faust_baseline.py``). Headwater's agents
work on micro-batches anyway, so for the topics registered in ``batch_channels`` the fetch
loop takes aiokafka's records per partition as they come, gathers them into a ``Fetched``
batch (up to ``worker.batch_max_events`` events or ``worker.batch_max_seconds``) and puts it,
as one value, into the agent's channel. Nothing in between is done per message.

faust still owns everything else: group membership, partition assignment, committing. The
agent takes each batch as faust's streams take an event (a batch of an earlier generation is
dropped, one taken is tracked as in flight) and acknowledges it after both stores were
written. A batch is acknowledged by its last offset per partition: the agent handles batches
one at a time in fetch order, so everything before that offset is handled too, and after a
rebalance faust seeks back to the committed offsets, so nothing dropped is skipped. faust
then commits exactly the offsets whose events are in Redis and Delta. Messages of any other
topic take faust's normal path.

Selected with the ``hwkafka://`` broker URL scheme (``create_app`` does).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any, cast

from faust.transport.drivers import TRANSPORTS
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import TP, ChannelT
from faust.types.tuples import ack_lock
from mode import Service
from mode.utils.futures import notify

__all__ = ["SCHEME", "BatchConsumer", "BatchRouting", "Fetched", "Transport", "batch_routing"]

SCHEME = "hwkafka"


@dataclass
class BatchRouting:
    """Which topics go to which agent channel, and how fetches are gathered into batches:
    until ``max_events`` or until the oldest waited ``linger_s`` (fetches alone are tiny
    under a steady stream, and every batch costs a few milliseconds of fixed work)."""

    channels: dict[str, ChannelT[Any]] = field(default_factory=dict)
    max_events: int = 100_000
    linger_s: float = 0.1


def batch_routing(app: Any) -> BatchRouting:
    routing: BatchRouting | None = getattr(app, "_headwater_batch_routing", None)
    if routing is None:
        routing = BatchRouting()
        app._headwater_batch_routing = routing
    return routing


@dataclass(eq=False)
class Fetched:
    """Records of one topic fetched in one consumer generation, in fetch order per partition.

    ``records`` are aiokafka ``ConsumerRecord``s (``partition``, ``offset``, ``key``,
    ``value``, ``timestamp`` in ms); ``ends`` the last offset per partition. While the agent
    works on it, the batch stands in faust's set of unacknowledged messages, so a rebalance
    waits for it (``acked`` and ``refcount`` are what faust reads there).
    """

    generation: int
    topic: str
    records: list[Any] = field(default_factory=list)
    ends: dict[TP, int] = field(default_factory=dict)
    acked: bool = False
    refcount: int = 1


async def _deliver(channel: ChannelT[Any], batch: Fetched) -> None:
    """Put a batch on the agent's channel, waiting while the agent is busy (the channel's
    bound is the backpressure).

    On a rebalance faust clears the channels, which cancels a waiting put: the batch is
    dropped (it was never tracked, so its offsets are not committed and whoever owns the
    partitions next reads it again), and the fetch loop goes on, as faust's own per-message
    delivery does. Only a cancel of the fetch loop itself propagates.
    """
    put = asyncio.ensure_future(channel.put(batch))  # type: ignore[arg-type]  # a value, not an event
    try:
        await asyncio.wait([put])
    except asyncio.CancelledError:
        put.cancel()
        raise
    if not put.cancelled() and put.exception() is not None:
        raise put.exception()  # type: ignore[misc]


class _ReadCommittedThread(faust_aiokafka.AIOKafkaConsumerThread):
    """faust's consumer thread, whose aiokafka consumer reads committed messages only.

    The push endpoint writes each request in a Kafka transaction and answers 503 when it
    aborts one, promising that none of its events count (``connectors.kafka_transactions``):
    the messages of aborted transactions must never reach the worker. faust itself asks for
    ``read_committed`` only with its own exactly-once processing, which Headwater does not use.
    """

    def _create_worker_consumer(self, transport: Any) -> Any:
        consumer = super()._create_worker_consumer(transport)
        consumer._isolation_level = "read_committed"  # read by start(), which comes later
        return consumer


class BatchConsumer(faust_aiokafka.Consumer):
    """faust's aiokafka consumer with a fetch loop that delivers batch topics whole (and
    reads committed messages only, see ``_ReadCommittedThread``)."""

    def _new_consumer_thread(self) -> faust_aiokafka.AIOKafkaConsumerThread:
        return _ReadCommittedThread(self, loop=self.loop, beacon=self.beacon)

    async def _drain_messages(self, fetcher: Any) -> None:  # pragma: no cover - runs in the worker
        routing = batch_routing(self.app)
        consumer_should_stop = cast(Service, self)._stopped.is_set
        fetcher_should_stop = cast(Service, fetcher)._stopped.is_set
        pending: dict[str, Fetched] = {}
        gathered = 0
        since = 0.0
        try:
            while not (consumer_should_stop() or fetcher_should_stop()):
                await self.sleep(0)
                if self.should_stop:
                    break
                # While batches wait for a busy agent, fetch in short slices so they are
                # delivered as soon as it is free.
                wait = (
                    1.0
                    if not gathered
                    else max(0.005, routing.linger_s - (time.monotonic() - since))
                )
                records, active = await self._wait_next_records(wait)
                if records and not self.should_stop:
                    if not self.flow_active:
                        # As faust's getmany: records fetched while the flow is suspended are
                        # dropped, and the partitions go back to their committed offsets.
                        try:
                            await self.perform_seek()
                        except Exception as exc:  # noqa: BLE001 - as faust: the next rebalance seeks again
                            self.log.warning("seek while the flow is suspended failed: %r", exc)
                        continue
                    if not gathered:
                        since = time.monotonic()
                    gathered += await self._gather(records, active, pending)
                if self._commit_every is not None and self._n_acked >= self._commit_every:
                    self._n_acked = 0
                    await self.commit()
                if gathered:
                    gathered -= await self._deliver_ready(pending, gathered, since)
        except self.consumer_stopped_errors:
            if self.transport.app.should_stop:
                return
            raise
        except asyncio.CancelledError:
            if self.transport.app.should_stop:
                return
            raise

    async def _deliver_ready(self, pending: dict[str, Fetched], gathered: int, since: float) -> int:
        """Deliver the batches that are due; returns how many records went out.

        A batch is due at ``max_events`` records (then it waits for its agent: that is the
        backpressure), or after ``linger_s`` if its agent is idle. Under a backlog the agent
        is busy when the linger ends, so the batch keeps growing towards ``max_events``
        instead of waiting in the channel at whatever size it had: larger batches write each
        entity once for more of its events.
        """
        routing = batch_routing(self.app)
        full = gathered >= routing.max_events
        if not full and time.monotonic() - since < routing.linger_s:
            return 0
        delivered = 0
        for topic in list(pending):
            channel = routing.channels[topic]
            if full or (channel.queue.empty() and not self._in_flight(topic)):
                batch = pending.pop(topic)
                await _deliver(channel, batch)
                delivered += len(batch.records)
        return delivered

    def _in_flight(self, topic: str) -> bool:
        """Whether the agent of ``topic`` is working on a batch (taken, not acknowledged)."""
        return any(
            isinstance(m, Fetched) and m.topic == topic and not m.acked
            for m in list(self._unacked_messages)
        )

    async def _gather(
        self, records: Any, active: set[TP] | None, pending: dict[str, Fetched]
    ) -> int:
        """Add one fetch to the pending batches; returns how many records were added."""
        channels = batch_routing(self.app).channels
        generation = self.app.consumer_generation_id
        read_offset = self._read_offset
        added = 0
        for tp, tp_records in records.items():
            if active is not None and tp not in active and tp not in self._buffered_partitions:
                continue
            self.app.monitor.track_tp_end_offset(tp, self.highwater(tp))
            channel = channels.get(tp.topic)
            if channel is None:
                await self._deliver_one_by_one(tp, tp_records)
                continue
            read = read_offset[tp]
            if read is not None and tp_records[0].offset < read:
                tp_records = [r for r in tp_records if r.offset >= read]  # already delivered
                if not tp_records:
                    continue
            batch = pending.get(tp.topic)
            if batch is not None and batch.generation != generation:
                await _deliver(channel, pending.pop(tp.topic))
                batch = None
            if batch is None:
                batch = pending[tp.topic] = Fetched(generation, tp.topic)
            batch.records += tp_records
            batch.ends[tp] = tp_records[-1].offset
            read_offset[tp] = tp_records[-1].offset
            added += len(tp_records)
        return added

    async def _deliver_one_by_one(self, tp: TP, tp_records: list[Any]) -> None:
        """faust's own path, for topics that are not batch topics."""
        for record in tp_records:
            read = self._read_offset[tp]
            if read is not None and record.offset < read:
                continue
            if read and record.offset - read > 1 and self.app.topics.acks_enabled_for(tp.topic):
                await self._add_gap(tp, read + 1, record.offset)
            await self.wait_first(
                self.callback(self._to_message(tp, record)), self.suspend_flow.wait()
            )
            self._read_offset[tp] = record.offset

    def take_batch(self, fetched: Fetched) -> list[Any]:
        """The records of a fetched batch to process now, tracked as in flight.

        As faust's streams do when they take an event: a batch fetched before a rebalance
        (another generation, or while the flow is suspended) is left to whoever owns its
        partitions now. Gathered or queued batches are not tracked, so a rebalance never
        waits for them.
        """
        if not self.app.flow_control.is_active():
            return []
        if fetched.generation != self.app.consumer_generation_id:
            return []
        self._unacked_messages.add(fetched)  # type: ignore[arg-type]
        return fetched.records

    def still_owned(self, fetched: Fetched) -> bool:
        """Whether a taken batch still belongs to this worker (no rebalance since it was
        fetched), e.g. after waiting out a store fault."""
        return fetched.generation == self.app.consumer_generation_id

    def drop_batch(self, fetched: Fetched) -> None:
        """Stop tracking a taken batch without acknowledging it: its partitions moved, and
        their new owner reads it from the committed offsets."""
        with ack_lock:
            self._unacked_messages.discard(fetched)  # type: ignore[arg-type]
            notify(self._waiting_for_ack)

    def ack_batch(self, fetched: Fetched) -> None:
        """Acknowledge a taken batch: faust may now commit past its last offsets."""
        with ack_lock:
            if fetched.acked:
                return
            fetched.acked = True
            for tp, end in fetched.ends.items():
                committed = self._committed_offset[tp]
                if committed is None or end >= committed:
                    self._acked[tp].append(end)
            self._n_acked += len(fetched.records)
            self._unacked_messages.discard(fetched)  # type: ignore[arg-type]
            notify(self._waiting_for_ack)

    def _new_offset(self, tp: TP) -> int | None:
        """For batch topics, the offset after the last acknowledged batch end (see the
        module docstring); faust's per-offset accounting for the others."""
        if tp.topic not in batch_routing(self.app).channels:
            return super()._new_offset(tp)
        acked = self._acked[tp]
        if not acked:
            return None
        end = max(acked)
        acked.clear()
        return end + 1


class Transport(faust_aiokafka.Transport):
    Consumer = BatchConsumer


TRANSPORTS.aliases[SCHEME] = f"{__name__}:Transport"
