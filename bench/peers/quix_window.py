"""Quix Streams, the peer of the stream worker (run by the benchmark-only venv).

    python quix_window.py BOOTSTRAP TOPIC EVENTS SCHEMA_JSON STATE_DIR  -> {"events_s", ...}

Consumes the preloaded topic from its start in a new consumer group, decodes the
Confluent-framed Avro with fastavro, and keeps, per user (the message key), the sum and count
of ``amount`` over a 1-hour sliding window by event time (Quix's RocksDB state): the closest
Quix form of the example feature set's windowed features. Stops after EVENTS messages and
reports the rate from the first message to the last.
"""

from __future__ import annotations

import io
import json
import sys
import time
import uuid
from typing import Any

import fastavro
from quixstreams import Application
from quixstreams.dataframe.windows import Count, Sum
from quixstreams.models.serializers import Deserializer


class ConfluentAvro(Deserializer):
    """The Confluent wire format: magic byte and schema id, then the Avro body."""

    def __init__(self, schema: dict[str, Any]) -> None:
        super().__init__()
        self._schema = fastavro.parse_schema(schema)

    def __call__(self, value: bytes, ctx: Any) -> Any:
        return fastavro.schemaless_reader(io.BytesIO(value[5:]), self._schema, None)


def main() -> None:
    bootstrap, topic_name, events, schema_path, state_dir = sys.argv[1:6]
    with open(schema_path) as fh:
        schema = json.load(fh)
    app = Application(
        broker_address=bootstrap,
        consumer_group=f"bench-quix-{uuid.uuid4().hex[:8]}",
        auto_offset_reset="earliest",
        state_dir=state_dir,
        loglevel="WARNING",
    )
    topic = app.topic(
        topic_name,
        key_deserializer="str",
        value_deserializer=ConfluentAvro(schema),
        timestamp_extractor=lambda value, headers, ts, ttype: int(value["event_time"]),
    )
    seen = {"n": 0, "first": 0.0, "last": 0.0}

    def count(_: Any) -> None:
        now = time.perf_counter()
        if not seen["n"]:
            seen["first"] = now
        seen["n"] += 1
        seen["last"] = now

    sdf = app.dataframe(topic)
    sdf = sdf.update(count)
    sdf = sdf.sliding_window(duration_ms=3_600_000).agg(spend=Sum("amount"), n=Count()).current()
    app.run(sdf, count=int(events), timeout=600, collect=False)
    elapsed = max(seen["last"] - seen["first"], 1e-9)
    print(json.dumps({"events": seen["n"], "seconds": elapsed, "events_s": seen["n"] / elapsed}))


if __name__ == "__main__":
    main()
