"""The batch transport's bookkeeping: which offsets faust may commit, and what a rebalance
drops (pure logic: the faust app is built but never started)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import faust
import pytest
from faust.types import TP

from headwater.stream_workers.transport import BatchConsumer, Fetched, _deliver, batch_routing

TOPIC = "raw.test"


@dataclass
class _Record:
    partition: int
    offset: int


@pytest.fixture(scope="module")
def app() -> Iterator[faust.App]:
    app = faust.App("transport-test", broker="hwkafka://127.0.0.1:1", autodiscover=False)
    batch_routing(app).channels[TOPIC] = app.channel()
    yield app
    # Loops created with the app and its consumer thread, never run.
    app.consumer._thread.thread_loop.close()  # type: ignore[attr-defined]
    app.loop.close()


@pytest.fixture
def consumer(app: faust.App) -> BatchConsumer:
    consumer = app.consumer
    assert isinstance(consumer, BatchConsumer)
    consumer._acked.clear()
    consumer._unacked_messages.clear()
    app.flow_control.resume()
    return consumer


def _in_flight(consumer: BatchConsumer) -> set[Any]:
    """What faust waits for on a rebalance (typed as messages; batches stand in for them)."""
    return set(consumer._unacked_messages)


def _batch(consumer: BatchConsumer, ends: dict[int, tuple[int, int]]) -> Fetched:
    batch = Fetched(consumer.app.consumer_generation_id, TOPIC)
    for partition, (start, end) in ends.items():
        batch.records += [_Record(partition, o) for o in range(start, end + 1)]
        batch.ends[TP(TOPIC, partition)] = end
    return batch


def test_a_batch_is_committable_up_to_its_last_offset_per_partition(
    consumer: BatchConsumer,
) -> None:
    p0, p1 = TP(TOPIC, 0), TP(TOPIC, 1)
    first = _batch(consumer, {0: (0, 9), 1: (5, 7)})
    assert len(consumer.take_batch(first)) == 13
    assert first in _in_flight(consumer)  # a rebalance waits for it
    assert consumer._in_flight(TOPIC)  # the next batch keeps growing meanwhile
    assert consumer._new_offset(p0) is None  # nothing acknowledged yet

    consumer.ack_batch(first)
    assert first not in _in_flight(consumer)
    assert not consumer._in_flight(TOPIC)
    second = _batch(consumer, {0: (10, 19)})
    consumer.take_batch(second)
    consumer.ack_batch(second)
    consumer.ack_batch(second)  # twice is once
    assert consumer._new_offset(p0) == 20
    assert consumer._new_offset(p1) == 8
    assert consumer._new_offset(p0) is None  # until the next acknowledgement


def test_a_batch_of_an_earlier_generation_is_dropped(consumer: BatchConsumer) -> None:
    stale = _batch(consumer, {0: (0, 4)})
    stale.generation -= 1
    assert consumer.take_batch(stale) == []
    assert stale not in _in_flight(consumer)

    consumer.app.flow_control.suspend()  # mid-rebalance
    assert consumer.take_batch(_batch(consumer, {0: (0, 4)})) == []


def test_other_topics_keep_fausts_per_offset_accounting(consumer: BatchConsumer) -> None:
    other = TP("other", 0)
    consumer._acked[other] += [0, 1, 3]
    assert consumer._new_offset(other) == 2  # stops at the gap, as faust does


class _Channel:
    """A channel whose put waits until the test lets it through or cancels it."""

    def __init__(self) -> None:
        self.put_task: asyncio.Future[Any] | None = None
        self.items: list[Any] = []

    async def put(self, value: Any) -> None:
        self.put_task = asyncio.current_task()
        await asyncio.sleep(3600)
        self.items.append(value)


def test_a_put_cancelled_by_a_rebalance_drops_the_batch_and_delivery_goes_on() -> None:
    async def scenario() -> None:
        channel = _Channel()
        delivering = asyncio.ensure_future(_deliver(channel, Fetched(1, TOPIC)))  # type: ignore[arg-type]
        while channel.put_task is None:
            await asyncio.sleep(0)
        channel.put_task.cancel()  # what faust's clearing of the channels does
        await asyncio.wait_for(delivering, 1)  # returns: the fetch loop goes on
        assert channel.items == []

        channel = _Channel()
        delivering = asyncio.ensure_future(_deliver(channel, Fetched(1, TOPIC)))  # type: ignore[arg-type]
        while channel.put_task is None:
            await asyncio.sleep(0)
        delivering.cancel()  # the fetch loop itself stopping
        with pytest.raises(asyncio.CancelledError):
            await delivering
        assert channel.put_task.cancelled()

    asyncio.run(scenario())
