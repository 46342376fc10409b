"""A faust transport whose consumer hands whole fetches of the raw topics to the agents.

faust delivers messages one at a time: a task per message in the fetch loop, the conductor,
a queue put, the stream's bookkeeping, about 50 µs each on this machine, which caps any faust
agent near 20k events/s whatever it does (``bench/faust_baseline.py``). Headwater's agents
work on micro-batches anyway, so for the topics registered in ``batch_channels`` the fetch
loop gathers fetches into batches (up to ``worker.batch_max_events`` events or
``worker.batch_max_seconds``) and puts each, as one list, into the agent's channel.

faust still owns everything else: group membership, partition assignment, the offsets to
commit. The agent takes each batch as faust's streams take an event (dropping messages of
an earlier generation, tracking the rest) and acknowledges every message after both stores
were written, so faust commits only offsets whose events are in Redis and Delta. Messages of any other topic take faust's normal path.

Selected with the ``hwkafka://`` broker URL scheme (``create_app`` does).
"""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any, cast

from faust.transport.drivers import TRANSPORTS
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import ChannelT, Message
from mode import Service

__all__ = ["SCHEME", "BatchConsumer", "BatchRouting", "Transport", "batch_routing"]

SCHEME = "hwkafka"


@dataclass
class BatchRouting:
    """Which topics go to which agent channel, and how fetches are gathered into batches:
    until ``max_events`` or until the oldest waited ``linger_s`` (fetches alone are tiny
    under a steady stream, and every batch costs a few milliseconds of fixed work)."""

    channels: dict[str, ChannelT[Any]] = field(default_factory=dict)
    max_events: int = 5000
    linger_s: float = 0.1


def batch_routing(app: Any) -> BatchRouting:
    routing: BatchRouting | None = getattr(app, "_headwater_batch_routing", None)
    if routing is None:
        routing = BatchRouting()
        app._headwater_batch_routing = routing
    return routing


async def _deliver(channel: ChannelT[Any], messages: list[Message]) -> None:
    """Put a batch on the agent's channel, waiting while the agent is busy (the channel's
    bound is the backpressure).

    On a rebalance faust clears the channels, which cancels a waiting put: the batch is
    dropped (it was never tracked, so its offsets are not committed and whoever owns the
    partitions next reads it again), and the fetch loop goes on, as faust's own per-message
    delivery does. Only a cancel of the fetch loop itself propagates.
    """
    put = asyncio.ensure_future(channel.put(messages))  # type: ignore[arg-type]  # a value, not an event
    try:
        await asyncio.wait([put])
    except asyncio.CancelledError:
        put.cancel()
        raise
    if not put.cancelled() and put.exception() is not None:
        raise put.exception()  # type: ignore[misc]


class BatchConsumer(faust_aiokafka.Consumer):
    """faust's aiokafka consumer with a fetch loop that delivers batch topics whole."""

    async def _drain_messages(self, fetcher: Any) -> None:  # pragma: no cover - runs in the worker
        callback = self.callback
        routing = batch_routing(self.app)
        channels = routing.channels
        consumer_should_stop = cast(Service, self)._stopped.is_set
        fetcher_should_stop = cast(Service, fetcher)._stopped.is_set
        get_read_offset = self._read_offset.__getitem__
        set_read_offset = self._read_offset.__setitem__
        acks_enabled_for = self.app.topics.acks_enabled_for
        batches: dict[str, list[Message]] = defaultdict(list)
        gathered = 0
        since = 0.0
        try:
            while not (consumer_should_stop() or fetcher_should_stop()):
                await self.sleep(0)
                if self.should_stop:
                    break
                wait = (
                    1.0 if not gathered else max(0.0, routing.linger_s - (time.monotonic() - since))
                )
                async for tp, message in self.getmany(timeout=wait):
                    offset = message.offset
                    read = get_read_offset(tp)
                    if read is not None and offset < read:
                        continue  # already delivered (faust drops these the same way)
                    if read and offset - read > 1 and acks_enabled_for(message.topic):
                        await self._add_gap(tp, read + 1, offset)
                    if self._commit_every is not None and self._n_acked >= self._commit_every:
                        self._n_acked = 0
                        await self.commit()
                    channel = channels.get(tp.topic)
                    if channel is None:
                        await self.wait_first(callback(message), self.suspend_flow.wait())
                    else:
                        if not gathered:
                            since = time.monotonic()
                        batches[tp.topic].append(message)
                        gathered += 1
                    set_read_offset(tp, offset)
                if gathered and (
                    gathered >= routing.max_events or time.monotonic() - since >= routing.linger_s
                ):
                    for topic, messages in batches.items():
                        await _deliver(channels[topic], messages)
                    batches = defaultdict(list)
                    gathered = 0
        except self.consumer_stopped_errors:
            if self.transport.app.should_stop:
                return
            raise
        except asyncio.CancelledError:
            if self.transport.app.should_stop:
                return
            raise

    def take_batch(self, fetched: list[Message]) -> list[Message]:
        """The messages of a fetched batch to process now, tracked as in flight.

        As faust's streams do when they take an event: a message fetched before a rebalance
        (another generation, or while the flow is suspended) is left to whoever owns its
        partition now; one taken is tracked, so faust commits past it only once it is
        acknowledged. Gathered or queued batches are not tracked, so a rebalance never waits
        for them.
        """
        if not self.app.flow_control.is_active():
            return []
        generation = self.app.consumer_generation_id
        taken = [m for m in fetched if m.generation_id == generation]
        # What track_message does, minus faust's per-message sensors (Headwater counts in
        # its own metrics).
        self._unacked_messages |= set(taken)
        return taken


class Transport(faust_aiokafka.Transport):
    Consumer = BatchConsumer


TRANSPORTS.aliases[SCHEME] = f"{__name__}:Transport"
