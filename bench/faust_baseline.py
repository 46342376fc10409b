"""A faust agent that consumes a topic with ``take_events`` and does nothing else.

The ceiling any faust-based worker can reach on this machine: the stream throughput
benchmark runs it as a second baseline next to a bare confluent-kafka consumer.

    python bench/faust_baseline.py TOPIC EVENTS [batch]   # prints "RATE <events/s>" and exits

With ``batch``, the agent gets whole fetches through Headwater's transport
(``stream_workers/transport.py``), as the worker does, instead of faust's per-message path.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
import uuid

import mode.loop

mode.loop.use("uvloop")  # as `headwater worker` does
import faust


def main() -> None:
    topic_name, expected = sys.argv[1], int(sys.argv[2])
    batched = len(sys.argv) > 3 and sys.argv[3] == "batch"
    bootstrap = os.environ.get("HEADWATER_KAFKA__BOOTSTRAP_SERVERS", "127.0.0.1:9092")
    scheme = "kafka"
    if batched:
        from headwater.stream_workers.transport import SCHEME

        scheme = SCHEME
    app = faust.App(
        f"faust-baseline-{uuid.uuid4().hex[:8]}",
        broker=";".join(f"{scheme}://{h}" for h in bootstrap.split(",")),
        web_enabled=False,
        autodiscover=False,
        consumer_auto_offset_reset="earliest",
        topic_allow_declare=False,
        topic_disable_leader=True,
        broker_max_poll_records=5000,
        datadir=tempfile.mkdtemp(prefix="faust-baseline-"),
    )
    topic = app.topic(
        topic_name, key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw"
    )
    seen = {"n": 0, "start": 0.0}

    def count(n: int) -> None:
        if not seen["n"]:
            seen["start"] = time.perf_counter()
        seen["n"] += n
        if seen["n"] >= expected:
            print(f"RATE {seen['n'] / (time.perf_counter() - seen['start']):.0f}", flush=True)
            os._exit(0)

    if batched:
        from headwater.stream_workers.transport import Fetched, batch_routing

        app.topics.add(topic)
        channel = app.channel(maxsize=1)
        batch_routing(app).channels[topic_name] = channel

        async def consume_batches(stream: faust.StreamT[Fetched]) -> None:
            async for fetched in stream:
                records = app.consumer.take_batch(fetched)  # type: ignore[attr-defined]
                app.consumer.ack_batch(fetched)  # type: ignore[attr-defined]
                count(len(records))

        app.agent(channel, concurrency=1)(consume_batches)
    else:

        async def consume(stream: faust.StreamT[bytes]) -> None:
            async for events in stream.take_events(5000, within=0.5):  # type: ignore[attr-defined]
                count(len(events))

        app.agent(topic, concurrency=1)(consume)
    faust.Worker(app, loglevel="WARNING", quiet=True).execute_from_commandline()


if __name__ == "__main__":
    main()
