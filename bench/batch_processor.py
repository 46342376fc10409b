"""The stream worker's batch processor alone, next to plain Avro decoding of the same messages.

    .venv/bin/python bench/batch_processor.py [--events 300000] [--batch 5000]

No Kafka consumer and no faust: the messages of the sample schema are built in memory (4
partitions, the entity as key, as `headwater ingest` would send them) and handed to
`BatchProcessor.process` in batches, which decodes, validates, filters and transforms them,
writes every entity's state to Redis (compare-and-set) and the rows to Delta. This isolates the
worker's per-event Python from the transport: `bench/stream_throughput.py` measures both
together. The baseline decodes the same messages with fastavro in a loop. The worker's
garbage-collector settings are applied, as `headwater worker` does.
Redis is started or reused like `headwater up`; everything else lives in a temp dir.
"""

from __future__ import annotations

import argparse
import gc
import io
import os
import platform
import tempfile
import time
import uuid
import zlib
from pathlib import Path

import fastavro
from live_load import delete_online_state
from rich.console import Console
from rich.table import Table

from headwater.apply import apply_definitions
from headwater.connectors.catalog import Catalog
from headwater.connectors.kafka import RawMessage
from headwater.connectors.offline_delta import DeltaOfflineStore
from headwater.connectors.online_redis import RedisOnlineStore
from headwater.examples import write_example_definitions
from headwater.sample_data import generate_transactions
from headwater.schemas.avro import encode_wire
from headwater.schemas.settings import load_settings
from headwater.stack import start_redis
from headwater.stream_workers.processor import BatchProcessor

PARTITIONS = 4


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=300_000)
    parser.add_argument("--batch", type=int, default=5000, help="events per batch")
    args = parser.parse_args()
    console = Console()
    base = load_settings()
    console.print(f"redis: {start_redis(base).state}")  # no Kafka: no DLQ, no catch-up here

    work = Path(tempfile.mkdtemp(prefix="hw-bench-"))
    suffix = uuid.uuid4().hex[:6]
    os.environ["HEADWATER_HOME"] = str(work / "home")
    settings = load_settings()
    apply_definitions(settings, write_example_definitions(work / "defs", suffix))
    catalog = Catalog(settings.catalog_url)
    defs = catalog.definitions()
    source = defs.source(f"transactions_{suffix}")
    schema_id = catalog.register_schema(source.subject, source.schema)

    # The same data as the stream benchmark's 1M events (users, days), cut to --events.
    now = time.time_ns() // 1_000_000
    data = generate_transactions(end_ms=now, users=10_101, days=30).slice(0, args.events)
    offsets = [0] * PARTITIONS
    messages = []
    for record in data.to_pylist():
        key = record["user_id"].encode()
        partition = zlib.crc32(key) % PARTITIONS
        value = encode_wire(source.schema, schema_id, record)
        messages.append(RawMessage(partition, offsets[partition], key, value, now))
        offsets[partition] += 1
    console.print(f"{len(messages):,} messages built")

    parsed = fastavro.parse_schema(dict(source.schema.definition))
    started = time.perf_counter()
    for m in messages:
        assert m.value is not None
        fastavro.schemaless_reader(io.BytesIO(m.value[5:]), parsed, None)
    decode_rate = len(messages) / (time.perf_counter() - started)

    processor = BatchProcessor(
        source=source,
        feature_sets=defs.feature_sets_of(source.name),
        entities=defs.entities,
        catalog=catalog,
        online=RedisOnlineStore(settings.redis.url),
        offline=DeltaOfflineStore(settings.offline_root),
        dlq=None,
        writer_id=f"bench-{suffix}",
        max_future_skew_ms=settings.max_future_skew_ms,
        offline_flush_rows=settings.worker.offline_flush_rows,
        offline_flush_seconds=settings.worker.offline_flush_seconds,
    )
    gc.freeze()
    gc.set_threshold(50_000, 50, 100)
    started = time.perf_counter()
    for i in range(0, len(messages), args.batch):
        processor.process(messages[i : i + args.batch])
    processor.flush()
    process_rate = len(messages) / (time.perf_counter() - started)
    delete_online_state(settings.redis.url, f"user_spend_{suffix}")

    table = Table(
        title=f"batch processor, {len(messages):,} events in batches of {args.batch:,} "
        f"({platform.node()}, {os.cpu_count()} cores)"
    )
    table.add_column("measure")
    table.add_column("events/s", justify="right")
    table.add_column("vs decode", justify="right")
    table.add_row("fastavro decode of the same messages", f"{decode_rate:,.0f}", "1.00")
    table.add_row(
        "BatchProcessor.process (Redis + Delta)",
        f"{process_rate:,.0f}",
        f"{process_rate / decode_rate:.2f}",
    )
    console.print(table)


if __name__ == "__main__":
    main()
