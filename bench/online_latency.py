"""Online lookup latency of `headwater serve`, next to a bare FastAPI endpoint reading Redis.

    .venv/bin/python bench/online_latency.py [--seconds 8] [--profile DIR]

1. starts or reuses Kafka and Redis like `headwater up`; in a temp home, applies one source
   and two feature sets over it (10 features: count/sum/mean/max/last over 1h/1d/7d and
   lifetime windows, resolutions 1m and 1h) plus a feature service naming all 10,
2. produces ~25k sample transactions of 2,000 users over 7 days (`ingest_files`) and runs a
   real `headwater worker` until every event is in Redis, then stops it,
3. starts `headwater serve` (uvicorn, one process) and, as the baseline, a bare FastAPI app
   run by uvicorn with the same options in its own process. The bare endpoint takes the same
   request body; for 1 entity it does one Redis HGETALL (the entity's hash of the first
   feature set), for 100 entities one pipelined round trip reading the same hashes Headwater
   reads (both feature sets: 200 HGETALL), with the same client (redis-py + hiredis) from a sync
   endpoint like Headwater's; `--bare async` uses redis.asyncio from an async endpoint,
4. for each server and load (1 entity or 100 entities per request; 1 and 16 concurrent
   keep-alive HTTP/1.1 connections from a raw asyncio client on uvloop, which costs far less
   CPU than either server): a warm-up, then requests for a fixed time; p50/p95/p99 and req/s.
5. with a worker running again and a producer sending `--live-rate` events/s (default 1,000)
   to random users, the 100-entity load once more on both servers: the cache's worst case.
`--profile DIR` then samples the Headwater server with py-spy (after the measurements, which
it would perturb) under the 1-entity 16-client and the 100-entity 1-client loads, and prints
where the time goes: wall time of busy threads, and Python CPU (the GIL holder).

This script sets up, runs the passes and cleans up; the baseline server is
`online_latency_bare.py`, the load generator `http_load.py`, the py-spy pass
`online_latency_profile.py` and the results table with its targets `online_latency_report.py`.
"""

from __future__ import annotations

import argparse
import os
import random
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import orjson
from http_load import load, request_bytes, run_loop
from online_latency_bare import wait_bare
from online_latency_peers import feast_results
from online_latency_profile import profile
from online_latency_report import print_report
from rich.console import Console

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

DEFINITIONS = """\
entities:
  - name: user
    keys: [user_id]
sources:
  - name: transactions_{sfx}
    topic: raw.transactions_{sfx}
    schema: transactions.avsc
    timestamp: event_time
feature_sets:
  - name: user_spend_{sfx}
    entity: user
    source: transactions_{sfx}
    resolution: 1m
    ttl: 30d
    filter: "status == 'approved'"
    features:
      - {{name: txn_count_1h, function: count, window: 1h}}
      - {{name: spend_1d, function: sum, field: amount, window: 1d}}
      - {{name: max_amount_1d, function: max, field: amount, window: 1d}}
      - {{name: avg_amount_7d, function: mean, field: amount, window: 7d}}
      - {{name: last_merchant, function: last, field: merchant_id}}
  - name: user_activity_{sfx}
    entity: user
    source: transactions_{sfx}
    resolution: 1h
    ttl: 30d
    features:
      - {{name: txn_count_1d, function: count, window: 1d}}
      - {{name: spend_7d, function: sum, field: amount, window: 7d}}
      - {{name: max_amount_7d, function: max, field: amount, window: 7d}}
      - {{name: txn_count_total, function: count}}
      - {{name: avg_amount_total, function: mean, field: amount}}
feature_services:
  - name: bench_model_{sfx}
    features: [{features}]
"""
FEATURES = {
    "user_spend": ["txn_count_1h", "spend_1d", "max_amount_1d", "avg_amount_7d", "last_merchant"],
    "user_activity": [
        "txn_count_1d",
        "spend_7d",
        "max_amount_7d",
        "txn_count_total",
        "avg_amount_total",
    ],
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=8.0, help="measured seconds per load")
    parser.add_argument("--warmup", type=float, default=1.0, help="seconds of warm-up per load")
    parser.add_argument(
        "--clients", type=int, default=16, help="concurrent connections of the loaded runs"
    )
    parser.add_argument("--users", type=int, default=2000)
    parser.add_argument("--days", type=int, default=7)
    parser.add_argument("--events-per-user-day", type=float, default=1.5)
    parser.add_argument(
        "--bare",
        choices=("sync", "async"),
        default="sync",
        help="baseline endpoint: sync def + redis-py (like Headwater's) or async + redis.asyncio",
    )
    parser.add_argument(
        "--profile",
        type=Path,
        metavar="DIR",
        help="also py-spy the Headwater server; raw stacks to DIR",
    )
    parser.add_argument(
        "--workers", type=int, default=1, help="headwater serve --workers (server processes)"
    )
    parser.add_argument(
        "--live-rate", type=int, default=1000, help="events/s of the live-stream pass (0: skip it)"
    )
    parser.add_argument(
        "--no-peers", action="store_true", help="skip Feast (installed in .bench-venv on first use)"
    )
    args = parser.parse_args()

    import pyarrow.parquet as pq
    import redis

    from headwater.apply import apply_definitions
    from headwater.connectors.catalog import Catalog
    from headwater.connectors.kafka import delete_topics
    from headwater.connectors.online_redis import entity_redis_key
    from headwater.examples import EXAMPLES
    from headwater.ingest import ingest_files
    from headwater.processes import HeadwaterProcess, free_port, wait_caught_up, wait_http_ok
    from headwater.sample_data import generate_transactions
    from headwater.schemas.settings import load_settings
    from headwater.stack import start_kafka, start_redis

    console = Console()
    if not console.is_terminal:  # logs and pipes: keep the table's rows on one line each
        console = Console(width=170)
    base = load_settings()
    for start in (start_kafka, start_redis):
        console.print(f"{start.__name__}: {start(base).state}")
    work = Path(tempfile.mkdtemp(prefix="hw-online-bench-"))
    sfx = uuid.uuid4().hex[:6]
    port, bare_port = free_port(), free_port()
    env = {
        "HEADWATER_HOME": str(work / "home"),
        "HEADWATER_KAFKA__BOOTSTRAP_SERVERS": base.kafka.bootstrap_servers,
        "HEADWATER_REDIS__URL": base.redis.url,
        "HEADWATER_SERVING__PORT": str(port),
        "HEADWATER_WORKER__GROUP_ID": f"bench-online-{sfx}",
        "HEADWATER_WORKER__METRICS_PORT": "0",
    }
    os.environ.update(env)
    settings = load_settings()
    defs_dir = work / "defs"
    defs_dir.mkdir(parents=True)
    (defs_dir / "transactions.avsc").write_text((EXAMPLES / "transactions.avsc").read_text())
    refs = ", ".join(f"{s}_{sfx}:{f}" for s, names in FEATURES.items() for f in names)
    (defs_dir / "features.yaml").write_text(DEFINITIONS.format(sfx=sfx, features=refs))
    apply_definitions(settings, defs_dir)
    defs = Catalog(settings.catalog_url).definitions()
    source = defs.source(f"transactions_{sfx}")
    sets = [defs.feature_set(f"{s}_{sfx}") for s in FEATURES]
    rdb = redis.Redis.from_url(settings.redis.url)

    results: dict[str, dict[str, dict[str, float]]] = {}
    api = bare = None
    try:
        now_ms = time.time_ns() // 1_000_000
        data = generate_transactions(
            end_ms=now_ms,
            users=args.users,
            days=args.days,
            events_per_user_day=args.events_per_user_day,
            seed=3,
        )
        pq.write_table(data, work / "events.parquet")
        produced = ingest_files(
            settings, source.name, [work / "events.parquet"], show_progress=False
        )
        worker = HeadwaterProcess(["worker"], env=env, log_file=work / "worker.log")
        try:
            waited = wait_caught_up(
                settings.kafka, settings.worker.group_id, source.topic, worker, timeout_s=900
            )
        finally:
            worker.stop()
        hashes = sum(
            1 for fs in sets for _ in rdb.scan_iter(f"hw:{fs.name}:v{fs.version}:*", count=1000)
        )
        fields = [
            rdb.hlen(entity_redis_key(fs, (f"u{u:05d}",)))
            for fs in sets
            for u in range(0, args.users, 97)
        ]
        console.print(
            f"{produced:,} events of {args.users:,} users in Redis after {waited:.1f} s "
            f"({hashes:,} hashes, {sum(fields) / len(fields):.1f} fields each on average)"
        )

        rng = random.Random(1)
        users = [f"u{u:05d}" for u in range(args.users)]
        service = f"bench_model_{sfx}"

        def bodies(per_request: int, n: int) -> list[bytes]:
            return [
                orjson.dumps(
                    {
                        "feature_service": service,
                        "entities": {"user_id": rng.sample(users, per_request)},
                    }
                )
                for _ in range(n)
            ]

        loads = [
            ("1 entity", bodies(1, 2000), 1),
            ("1 entity", bodies(1, 2000), args.clients),
            ("100 entities", bodies(100, 200), 1),
            ("100 entities", bodies(100, 200), args.clients),
        ]

        api = HeadwaterProcess(
            ["serve", "--workers", str(args.workers)], env=env, log_file=work / "api.log"
        )
        bare = subprocess.Popen(
            [
                sys.executable,
                str(Path(__file__).with_name("online_latency_bare.py")),
                str(bare_port),
                settings.redis.url,
                ",".join(f"hw:{fs.name}:v{fs.version}:" for fs in sets),
                args.bare,
            ]
        )
        wait_http_ok(f"http://127.0.0.1:{port}/healthz", api)
        wait_bare(f"http://127.0.0.1:{bare_port}", bare)
        sample = httpx.post(
            f"http://127.0.0.1:{port}/v1/online-features",
            content=loads[2][1][0],
            headers={"content-type": "application/json"},
            timeout=10,
        ).json()
        statuses = Counter(s for r in sample["results"] for s in r["statuses"])
        console.print(
            f"sample: {len(sample['features'])} features x {len(sample['results'])} entities, "
            f"statuses {dict(statuses)}; first row {sample['results'][0]['values']}"
        )
        for name, server_port in (("headwater", port), ("bare", bare_port)):
            results[name] = {}
            for label, requests, clients in loads:
                reqs = [request_bytes(server_port, "/v1/online-features", b) for b in requests]
                r = run_loop(
                    lambda reqs=reqs, clients=clients, sp=server_port: load(
                        sp, reqs, clients, args.seconds, args.warmup
                    )
                )
                key = f"{label}, {clients} client{'s' if clients > 1 else ''}"
                results[name][key] = r
                if r["failures"] == r["requests"]:
                    msg = f"every request to {name} failed; see the lines above and the logs in {work}"
                    raise RuntimeError(msg)
                console.print(
                    f"{name:9} {key:26} {r['requests_s']:8,.0f} req/s  p50 {r['p50_ms']:6.2f}  "
                    f"p95 {r['p95_ms']:6.2f}  p99 {r['p99_ms']:6.2f} ms  failures {r['failures']:.0f}"
                )
        if not args.no_peers:
            try:
                results.update(
                    feast_results(
                        work,
                        settings.redis.url,
                        users,
                        [(label, int(label.split()[0]), clients) for label, _, clients in loads],
                        args.seconds,
                        args.warmup,
                        console,
                    )
                )
            except RuntimeError as exc:
                console.print(f"[red]Feast peer not measured[/]: {exc}")
        if args.live_rate:
            # The same 100-entity lookups while a worker applies a live stream: entities
            # written since their last read cost Headwater a second round trip and a decode.
            live_worker = HeadwaterProcess(["worker"], env=env, log_file=work / "worker-live.log")
            stop = threading.Event()
            from live_load import produce_at_rate

            rng = random.Random(7)
            producer_thread = threading.Thread(
                target=produce_at_rate,
                args=(settings, source, args.live_rate, stop, lambda _: rng.choice(users), "live"),
                daemon=True,
            )
            producer_thread.start()
            try:
                time.sleep(5)  # the worker joins the group and starts applying
                for name, server_port in (("headwater", port), ("bare", bare_port)):
                    reqs = [
                        request_bytes(server_port, "/v1/online-features", b) for b in loads[2][1]
                    ]
                    r = run_loop(
                        lambda reqs=reqs, sp=server_port: load(
                            sp, reqs, 1, args.seconds, args.warmup
                        )
                    )
                    key = f"100 entities, 1 client, live {args.live_rate:,} ev/s"
                    results[name][key] = r
                    console.print(
                        f"{name:9} {key:38} {r['requests_s']:8,.0f} req/s  p50 {r['p50_ms']:6.2f}"
                    )
            finally:
                stop.set()
                producer_thread.join()
                live_worker.stop()
        if args.profile:
            for label, requests, clients in (loads[1], loads[2]):
                reqs = [request_bytes(port, "/v1/online-features", b) for b in requests]
                profile(
                    api.pid,
                    args.profile / f"{label.replace(' ', '')}-{clients}clients",
                    args.seconds,
                    lambda s, reqs=reqs, clients=clients: run_loop(
                        lambda: load(port, reqs, clients, s, 0.5)
                    ),
                    console,
                )
    finally:
        if api is not None:
            api.stop()
        if bare is not None:
            bare.terminate()
            bare.wait(timeout=30)
        delete_topics(settings.kafka, [source.topic, f"dlq.{source.name}"])
        for fs in sets:
            for keys in _batched(rdb.scan_iter(f"hw:{fs.name}:v{fs.version}:*", count=1000), 1000):
                rdb.delete(*keys)
        rdb.close()

    print_report(
        console,
        results,
        seconds=args.seconds,
        clients=args.clients,
        bare_style=args.bare,
        work=work,
    )


def _batched(iterable: Any, n: int) -> Any:
    batch: list[Any] = []
    for item in iterable:
        batch.append(item)
        if len(batch) == n:
            yield batch
            batch = []
    if batch:
        yield batch


if __name__ == "__main__":
    main()
