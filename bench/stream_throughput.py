"""Stream throughput and freshness of one worker, next to a raw consume baseline.

    .venv/bin/python bench/stream_throughput.py [--events 1000000]

1. preloads a topic with N events of the sample schema (the bundled generator),
2. baseline: confluent-kafka consumes the whole topic and fastavro decodes every message,
3. Headwater: one `headwater worker` process runs from the start of the topic until every
   event is in Redis and Delta (consumer lag 0, which the worker reaches only after writing
   both stores),
4. freshness: while the worker runs, a producer sends 10k events/s, and after 2 s of that load
   every 100 ms for 20 s a probe event for a fresh entity; the time from its produce call
   until it is servable in Redis is measured. The first 2 s are the ramp from an idle worker
   to the new rate (its first batch gathers what arrives while it starts writing, about a
   second's worth), not the steady state the target is about.
Services are started or reused like `headwater up`; everything else lives in a temp dir.
"""

from __future__ import annotations

import argparse
import io
import os
import platform
import statistics
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import fastavro
import pyarrow.parquet as pq
from confluent_kafka import Consumer, TopicPartition
from live_load import delete_online_state, produce_at_rate, sample_event
from rich.console import Console
from rich.table import Table
from stream_peers import feast_materialize, quix_window

from headwater.apply import apply_definitions
from headwater.connectors.catalog import Catalog
from headwater.connectors.kafka import EventProducer, delete_topics
from headwater.connectors.offline_delta import DeltaOfflineStore
from headwater.connectors.online_redis import RedisOnlineStore
from headwater.examples import write_example_definitions
from headwater.ingest import ingest_files
from headwater.processes import HeadwaterProcess, wait_caught_up
from headwater.sample_data import generate_transactions
from headwater.schemas.avro import encode_wire
from headwater.schemas.definitions import FeatureSet, Source
from headwater.schemas.settings import Settings, load_settings
from headwater.stack import start_kafka, start_redis


def raw_consume(bootstrap: str, topic: str, expected: int, schema: dict[str, Any]) -> float:
    """Events/s of a bare confluent-kafka consumer decoding every message with fastavro."""
    parsed = fastavro.parse_schema(schema)
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"raw-{uuid.uuid4().hex}",
            "enable.auto.commit": False,
        }
    )
    metadata = consumer.list_topics(topic, timeout=10).topics[topic]
    consumer.assign([TopicPartition(topic, p, 0) for p in metadata.partitions])
    seen = 0
    start = time.perf_counter()
    while seen < expected:
        for m in consumer.consume(10_000, timeout=5):
            if m.error() is None:
                fastavro.schemaless_reader(io.BytesIO((m.value() or b"")[5:]), parsed)
                seen += 1
    elapsed = time.perf_counter() - start
    consumer.close()
    return seen / elapsed


def faust_consume(topic: str, expected: int, *, batched: bool = False) -> float:
    """Events/s of a faust agent that only consumes (bench/faust_baseline.py); ``batched``:
    through Headwater's batch transport, as the worker consumes."""
    import subprocess

    script = Path(__file__).resolve().parent / "faust_baseline.py"
    out = subprocess.run(
        [sys.executable, str(script), topic, str(expected), *(["batch"] if batched else [])],
        capture_output=True,
        text=True,
        timeout=1800,
        check=False,
    )
    rates = [line.split()[-1] for line in (out.stdout + out.stderr).splitlines() if "RATE" in line]
    if not rates:
        msg = f"faust baseline printed no rate:\n{out.stdout[-2000:]}\n{out.stderr[-2000:]}"
        raise RuntimeError(msg)
    return float(rates[-1])


def freshness(
    settings: Settings,
    source: Source,
    schema_id: int,
    fs: FeatureSet,
    seconds: float,
    rate: int,
    warmup_s: float = 2.0,
) -> list[float]:
    """Produce ``rate`` events/s; after ``warmup_s``, probe for ``seconds``; return
    produce -> servable latencies (ms) of the probes."""
    producer = EventProducer(settings.kafka, linger_ms=5)
    store = RedisOnlineStore(settings.redis.url)
    latencies: list[float] = []
    stop = threading.Event()

    thread = threading.Thread(
        target=produce_at_rate,
        args=(settings, source, rate, stop, lambda i: f"u{i % 5000:05d}"),
        daemon=True,
    )
    thread.start()
    time.sleep(warmup_s)
    deadline = time.perf_counter() + seconds
    n = 0
    while time.perf_counter() < deadline:
        user = f"probe-{uuid.uuid4().hex[:8]}"
        record = sample_event(f"p{n}", user)
        sent = time.perf_counter()
        producer.produce(source.topic, encode_wire(source.schema, schema_id, record), user.encode())
        while store.read(fs, [(user,)])[0] is None:
            if time.perf_counter() - sent > 30:
                break
            time.sleep(0.002)
        latencies.append((time.perf_counter() - sent) * 1000)
        n += 1
        time.sleep(max(0.0, 0.1 - (time.perf_counter() - sent)))
    stop.set()
    thread.join()
    producer.flush()
    store.close()
    return latencies


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument(
        "--workers",
        type=int,
        default=1,
        help="worker processes in the one consumer group (scale-out)",
    )
    parser.add_argument("--freshness-seconds", type=float, default=20.0)
    parser.add_argument(
        "--rates", default="10000,2000", help="freshness load(s), events/s, comma-separated"
    )
    parser.add_argument(
        "--no-peers",
        action="store_true",
        help="skip Quix Streams and Feast (installed in .bench-venv on first use)",
    )
    args = parser.parse_args()
    console = Console()
    base = load_settings()
    for start in (start_kafka, start_redis):
        console.print(f"{start.__name__}: {start(base).state}")

    work = Path(tempfile.mkdtemp(prefix="hw-bench-"))
    suffix = uuid.uuid4().hex[:6]
    env = {
        "HEADWATER_HOME": str(work / "home"),
        "HEADWATER_KAFKA__BOOTSTRAP_SERVERS": base.kafka.bootstrap_servers,
        "HEADWATER_REDIS__URL": base.redis.url,
        "HEADWATER_WORKER__GROUP_ID": f"bench-{suffix}",
        "HEADWATER_WORKER__METRICS_PORT": "0",
    }
    os.environ.update(env)
    settings = load_settings()
    apply_definitions(settings, write_example_definitions(work / "defs", suffix))
    defs = Catalog(settings.catalog_url).definitions()
    source = defs.source(f"transactions_{suffix}")
    fs = defs.feature_set(f"user_spend_{suffix}")
    schema_id = Catalog(settings.catalog_url).register_schema(source.subject, source.schema)

    days = 30
    users = max(1, round(args.events / (days * 3.3)))
    data = generate_transactions(end_ms=time.time_ns() // 1_000_000, users=users, days=days).slice(
        0, args.events
    )
    path = work / "events.parquet"
    pq.write_table(data, path)
    t0 = time.perf_counter()
    produced = ingest_files(settings, source.name, [path], show_progress=False)
    produce_s = time.perf_counter() - t0
    console.print(f"preloaded {produced:,} events in {produce_s:.1f} s")

    raw_rate = raw_consume(
        settings.kafka.bootstrap_servers, source.topic, produced, dict(source.schema.definition)
    )
    console.print(f"raw consume + decode: {raw_rate:,.0f} events/s")
    faust_rate = faust_consume(source.topic, produced)
    console.print(f"bare faust agent: {faust_rate:,.0f} events/s")
    batch_rate = faust_consume(source.topic, produced, batched=True)
    console.print(f"bare faust agent, batch transport: {batch_rate:,.0f} events/s")
    peers: dict[str, dict[str, float]] = {}
    if not args.no_peers:
        try:
            peers["quix"] = quix_window(
                work,
                settings.kafka.bootstrap_servers,
                source.topic,
                produced,
                dict(source.schema.definition),
            )
            console.print(f"quix streams sliding window: {peers['quix']['events_s']:,.0f} events/s")
            peers["feast"] = feast_materialize(work, settings.redis.url, data)
            console.print(f"feast materialize: {peers['feast']['seconds']:.1f} s")
        except RuntimeError as exc:
            console.print(f"[red]peer not measured[/]: {exc}")

    workers = [
        HeadwaterProcess(["worker"], env=env, log_file=work / f"worker{'' if i == 0 else i}.log")
        for i in range(args.workers)
    ]
    worker = workers[0]
    t0 = time.perf_counter()
    try:
        wait_caught_up(
            settings.kafka,
            settings.worker.group_id,
            source.topic,
            worker,
            timeout_s=3600,
            offline=(DeltaOfflineStore(settings.offline_root), [fs]),
        )
        total_s = time.perf_counter() - t0
        first_batch = _first_batch(work / "worker.log")
        console.print(f"worker: all {produced:,} events in Redis and Delta after {total_s:.1f} s")
        rates = [int(r) for r in args.rates.split(",")]
        measured = {}
        for rate in rates:
            measured[rate] = freshness(
                settings, source, schema_id, fs, args.freshness_seconds, rate
            )
            # Let the worker drain what the load left behind before the next rate.
            wait_caught_up(
                settings.kafka, settings.worker.group_id, source.topic, worker, timeout_s=600
            )
    finally:
        for process in workers:
            process.stop()
    # After the first batch: its time (start-up included) and its events left out.
    first_s, first_events = first_batch if first_batch is not None else (0.0, 0)
    steady_s = total_s - first_s
    hw_rate = produced / total_s
    steady_rate = (produced - first_events) / steady_s
    table = Table(
        title=f"stream throughput, {produced:,} events ({platform.node()}, {os.cpu_count()} cores)"
    )
    table.add_column("measure")
    table.add_column("value", justify="right")
    table.add_column("vs raw", justify="right")
    table.add_row("producer (headwater ingest), events/s", f"{produced / produce_s:,.0f}", "")
    table.add_row("raw confluent consume + fastavro decode, events/s", f"{raw_rate:,.0f}", "1.00")
    table.add_row(
        "bare faust agent (take_events, no work), events/s",
        f"{faust_rate:,.0f}",
        f"{faust_rate / raw_rate:.2f}",
    )
    table.add_row(
        "bare faust agent on Headwater's batch transport (no work), events/s",
        f"{batch_rate:,.0f}",
        f"{batch_rate / raw_rate:.2f}",
    )
    table.add_row(
        "headwater worker end to end (incl. start-up), events/s",
        f"{hw_rate:,.0f}",
        f"{hw_rate / raw_rate:.2f}",
    )
    table.add_row(
        "headwater worker after its first batch, events/s",
        f"{steady_rate:,.0f}",
        f"{steady_rate / raw_rate:.2f}",
    )
    table.add_row(
        "headwater worker after its first batch vs bare faust",
        "",
        f"{steady_rate / faust_rate:.2f} of faust",
    )
    if "quix" in peers:
        quix = peers["quix"]["events_s"]
        table.add_row(
            "quix streams, 1 h sliding sum + count per user, events/s",
            f"{quix:,.0f}",
            f"{quix / raw_rate:.2f} (headwater {steady_rate / quix:.1f}x)",
        )
    table.add_row(
        f"headwater backfill of {produced:,} events into Redis + Delta, with aggregations, s",
        f"{total_s:.1f}",
        "",
    )
    if "feast" in peers:
        feast_s = peers["feast"]["seconds"]
        table.add_row(
            f"feast materialize of the same {peers['feast']['rows']:,.0f} rows into Redis "
            "(latest row per user, no aggregations), s",
            f"{feast_s:.1f}",
            f"headwater {feast_s / total_s:.2f}x as fast",
        )
    for rate, latencies in measured.items():
        q = statistics.quantiles(latencies, n=100) if len(latencies) > 1 else latencies * 99
        table.add_row(
            f"freshness at {rate:,}/s: produce -> servable p50 / p99, ms ({len(latencies)} probes)",
            f"{statistics.median(latencies):.0f} / {q[98]:.0f}",
            "",
        )
    console.print(table)
    delete_topics(settings.kafka, [source.topic, source.dlq_topic])
    delete_online_state(settings.redis.url, fs.name)


def _first_batch(log: Path) -> tuple[float, int] | None:
    """Seconds from worker start until its first batch was applied, and that batch's events,
    from the (first) worker's log."""
    import datetime as dt

    started = None
    for line in log.read_text(errors="replace").splitlines():
        if line.startswith("[") and started is None:
            started = line[1:24]
        if "events applied" in line and started is not None:
            events = int(line.split(" events applied")[0].rsplit(" ", 1)[1])
            stamp = "%Y-%m-%d %H:%M:%S,%f"
            elapsed = dt.datetime.strptime(line[1:24], stamp) - dt.datetime.strptime(started, stamp)
            return elapsed.total_seconds() + 1.0, events  # + interpreter start before the log
    return None


if __name__ == "__main__":
    main()
