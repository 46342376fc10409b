"""Online cost of sketch aggregations: a percentile feature beside a plain sum (issue 18).

    .venv/bin/python bench/online_aggregations.py [--seconds 5] [--no-uncached]

1. starts or reuses Kafka and Redis like `headwater up`; in a temp home, applies one feature
   set per aggregation, each over its own source (same schema, so the same events) and with
   the same shape: three features over 1h/1d/7d at 1m resolution, and a feature service each:
   ``sum`` of the amount, ``approx_percentile`` of the amount (p50/p90/p99, DDSketch),
   ``approx_count_distinct`` of the merchant (HyperLogLog) and ``top_k`` merchants (k 5).
   Bulky functions get coarser tiles for long windows (``FeatureSet.tile_ms``),
2. generates ~25k sample transactions of 2,000 users over 7 days once, produces them to every
   source's topic in turn while one real `headwater worker` runs, and waits until each topic
   is folded into Redis; the worker's ``headwater_batch_seconds`` per source (its metrics
   port) gives the time spent writing each set's micro-batches,
3. per set: entities in Redis, ``MEMORY USAGE`` of the entity hashes (sampled), their fields
   and payload bytes,
4. starts `headwater serve` (the lean ``/v1/online-features`` path; with its cache of decoded
   entity states, and unless ``--no-uncached`` a second one with the cache off,
   ``serving.online_cache_entities=0``, so every lookup decodes and merges the sketches), and
   per set a bare async FastAPI + redis.asyncio endpoint (`online_latency_bare.py`) that
   returns that set's raw hashes: 1 HGETALL, or 100 pipelined,
5. load by load (1 entity and 100 entities per request, 1 and ``--clients`` keep-alive
   connections, `http_load.py`), set by set (each load starting with the next set) and
   server by server: a warm-up then ``--seconds`` each; tables of the sets (tiles, memory,
   fold) and of the lookups: req/s, p50/p99 and ratios (each set vs sum, Headwater vs bare).
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import re
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import orjson
from http_load import load, request_bytes, run_loop
from online_latency_bare import wait_bare
from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

# kind -> (function, field, extra parameters); three windows each, same shape.
SETS: dict[str, tuple[str, str, str]] = {
    "sum": ("sum", "amount", ""),
    "percentile": ("approx_percentile", "amount", ", percentiles: [0.5, 0.9, 0.99]"),
    "count_distinct": ("approx_count_distinct", "merchant_id", ""),
    "top_k": ("top_k", "merchant_id", ", k: 5"),
}
WINDOWS = ("1h", "1d", "7d")
WARMUP = "warmup"
"""A sum set folded first and not measured, so no measured set pays the worker's start-up."""

Result = dict[str, float]


def definitions(sfx: str, kinds: list[str]) -> str:
    """One entity; per kind a source, a feature set of three windows and a feature service."""
    lines = ["entities:", "  - name: user", "    keys: [user_id]", "sources:"]
    for kind in kinds:
        lines += [
            f"  - name: tx_{kind}_{sfx}",
            f"    topic: raw.tx_{kind}_{sfx}",
            "    schema: transactions.avsc",
            "    timestamp: event_time",
        ]
    lines.append("feature_sets:")
    for kind in kinds:
        function, field, extra = SETS["sum" if kind == WARMUP else kind]
        lines += [
            f"  - name: agg_{kind}_{sfx}",
            "    entity: user",
            f"    source: tx_{kind}_{sfx}",
            "    resolution: 1m",
            "    ttl: 30d",
            "    features:",
        ]
        lines += [
            f"      - {{name: f_{w}, function: {function}, field: {field}, window: {w}{extra}}}"
            for w in WINDOWS
        ]
    lines.append("feature_services:")
    for kind in kinds:
        refs = ", ".join(f"agg_{kind}_{sfx}:f_{w}" for w in WINDOWS)
        lines += [f"  - name: svc_{kind}_{sfx}", f"    features: [{refs}]"]
    return "\n".join(lines) + "\n"


def scrape(port: int) -> dict[tuple[str, str], float]:
    """The worker's Prometheus text: (metric name, label string) -> value."""
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    out: dict[tuple[str, str], float] = {}
    for m in re.finditer(r"^(\w+)(\{[^}]*\})? (\S+)$", text, re.MULTILINE):
        out[(m.group(1), m.group(2) or "")] = float(m.group(3))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="measured seconds per load")
    parser.add_argument("--warmup", type=float, default=1.0, help="seconds of warm-up per load")
    parser.add_argument("--clients", type=int, default=16, help="connections of the loaded runs")
    parser.add_argument("--users", type=int, default=2000)
    parser.add_argument("--days", type=int, default=7)
    parser.add_argument("--events-per-user-day", type=float, default=1.5)
    parser.add_argument(
        "--sets",
        default=",".join(SETS),
        help=f"comma-separated kinds to measure, of {list(SETS)} (sum is the reference)",
    )
    parser.add_argument(
        "--no-uncached", action="store_true", help="skip the server with its entity cache off"
    )
    args = parser.parse_args()
    kinds = [k for k in args.sets.split(",") if k]
    if "sum" not in kinds or any(k not in SETS for k in kinds):
        parser.error(f"--sets: kinds of {list(SETS)}, sum among them")

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
    if not console.is_terminal:
        console = Console(width=200)
    base = load_settings()
    for start in (start_kafka, start_redis):
        console.print(f"{start.__name__}: {start(base).state}")
    work = Path(tempfile.mkdtemp(prefix="hw-agg-bench-"))
    sfx = uuid.uuid4().hex[:6]
    port, uncached_port, metrics_port = free_port(), free_port(), free_port()
    env = {
        "HEADWATER_HOME": str(work / "home"),
        "HEADWATER_KAFKA__BOOTSTRAP_SERVERS": base.kafka.bootstrap_servers,
        "HEADWATER_REDIS__URL": base.redis.url,
        "HEADWATER_SERVING__PORT": str(port),
        "HEADWATER_WORKER__GROUP_ID": f"bench-agg-{sfx}",
        "HEADWATER_WORKER__METRICS_PORT": str(metrics_port),
    }
    os.environ.update(env)
    settings = load_settings()
    defs_dir = work / "defs"
    defs_dir.mkdir(parents=True)
    (defs_dir / "transactions.avsc").write_text((EXAMPLES / "transactions.avsc").read_text())
    (defs_dir / "features.yaml").write_text(definitions(sfx, [WARMUP, *kinds]))
    apply_definitions(settings, defs_dir)
    defs = Catalog(settings.catalog_url).definitions()
    sources = {k: defs.source(f"tx_{k}_{sfx}") for k in [WARMUP, *kinds]}
    sets = {k: defs.feature_set(f"agg_{k}_{sfx}") for k in [WARMUP, *kinds]}
    rdb = redis.Redis.from_url(settings.redis.url)
    users = [f"u{u:05d}" for u in range(args.users)]

    # kind -> facts of the set (tiles, memory, fold); kind -> server -> load -> result
    facts: dict[str, dict[str, Any]] = {}
    results: dict[str, dict[str, dict[str, Result]]] = {}
    servers: list[tuple[str, int]] = []
    api = uncached = None
    bares: dict[str, subprocess.Popen[bytes]] = {}
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
        worker = HeadwaterProcess(["worker"], env=env, log_file=work / "worker.log")
        try:
            for kind in [WARMUP, *kinds]:
                fs = sets[kind]
                t0 = time.monotonic()
                produced = ingest_files(
                    settings, sources[kind].name, [work / "events.parquet"], show_progress=False
                )
                ingested = time.monotonic() - t0
                wait_caught_up(
                    settings.kafka,
                    settings.worker.group_id,
                    sources[kind].topic,
                    worker,
                    timeout_s=900,
                )
                wall = time.monotonic() - t0
                metrics = scrape(metrics_port)
                label = f'{{source="{sources[kind].name}"}}'
                batch_s = metrics.get(("headwater_batch_seconds_sum", label), float("nan"))
                batches = metrics.get(("headwater_batch_seconds_count", label), 0.0)
                tiles = sorted({fs.tile_ms(f) // 60_000 for f in fs.features})
                facts[kind] = {
                    "events": produced,
                    "wall_s": wall,
                    "ingest_s": ingested,
                    "batch_s": batch_s,
                    "batches": batches,
                    "tiles_min": tiles,
                }
                console.print(
                    f"{kind:15} {produced:,} events; produced in {ingested:.1f} s, folded into "
                    f"Redis {wall:.1f} s after the first was sent; worker batch time {batch_s:.2f} s in {batches:.0f} batches; "
                    f"tiles {tiles} min"
                )
        finally:
            worker.stop()

        sample_users = users[:: max(1, len(users) // 200)]
        for kind in kinds:
            fs = sets[kind]
            keys = [entity_redis_key(fs, (u,)) for u in sample_users]
            mems = [rdb.memory_usage(k, samples=0) or 0 for k in keys]
            present = [m for m in mems if m]
            hashes = [rdb.hgetall(k) for k in keys]
            payload = [sum(len(f) + len(v) for f, v in h.items()) for h in hashes if h]
            fields = [len(h) for h in hashes if h]
            n = sum(1 for _ in rdb.scan_iter(f"hw:{fs.name}:v{fs.version}:*", count=1000))
            facts[kind].update(
                entities=n,
                mem_mean=statistics.fmean(present),
                mem_median=statistics.median(present),
                mem_max=max(present),
                fields=statistics.fmean(fields),
                payload=statistics.fmean(payload),
            )
            console.print(
                f"{kind:15} {n:,} entity hashes; MEMORY USAGE mean {facts[kind]['mem_mean']:,.0f} B "
                f"(median {facts[kind]['mem_median']:,.0f}, max {facts[kind]['mem_max']:,} B), "
                f"{facts[kind]['fields']:.1f} fields, {facts[kind]['payload']:,.0f} B of fields "
                f"and values (sample of {len(present)})"
            )

        api = HeadwaterProcess(["serve"], env=env, log_file=work / "api.log")
        servers.append(("headwater", port))
        if not args.no_uncached:
            uncached = HeadwaterProcess(
                ["serve"],
                env={
                    **env,
                    "HEADWATER_SERVING__PORT": str(uncached_port),
                    "HEADWATER_SERVING__ONLINE_CACHE_ENTITIES": "0",
                },
                log_file=work / "api-uncached.log",
            )
            servers.append(("hw no cache", uncached_port))
        bare_ports = {k: free_port() for k in kinds}
        for kind in kinds:
            fs = sets[kind]
            bares[kind] = subprocess.Popen(
                [
                    sys.executable,
                    str(Path(__file__).with_name("online_latency_bare.py")),
                    str(bare_ports[kind]),
                    settings.redis.url,
                    f"hw:{fs.name}:v{fs.version}:",
                    "async",
                ]
            )
        wait_http_ok(f"http://127.0.0.1:{port}/healthz", api)
        if uncached is not None:
            wait_http_ok(f"http://127.0.0.1:{uncached_port}/healthz", uncached)
        for kind in kinds:
            wait_bare(f"http://127.0.0.1:{bare_ports[kind]}", bares[kind])

        rng = random.Random(1)
        shapes = [(1, 2000, 1), (1, 2000, args.clients), (100, 200, 1), (100, 200, args.clients)]
        picks = [[rng.sample(users, per) for _ in range(n)] for per, n, _ in shapes]

        def wire(kind: str, server_port: int, entity_lists: list[list[str]]) -> list[bytes]:
            service = f"svc_{kind}_{sfx}"
            return [
                request_bytes(
                    server_port,
                    "/v1/online-features",
                    orjson.dumps({"feature_service": service, "entities": {"user_id": e}}),
                )
                for e in entity_lists
            ]

        for kind in kinds:
            first = httpx.post(
                f"http://127.0.0.1:{port}/v1/online-features",
                content=orjson.dumps(
                    {"feature_service": f"svc_{kind}_{sfx}", "entities": {"user_id": users[:100]}}
                ),
                headers={"content-type": "application/json"},
                timeout=10,
            ).json()
            statuses = Counter(s for r in first["results"] for s in r["statuses"])
            console.print(
                f"{kind:15} sample: {dict(statuses)}; first row {first['results'][0]['values']}"
            )
            results[kind] = {name: {} for name, _ in (*servers, ("bare", 0))}
            # Every server reads every entity once before the measured loads (the cache's
            # first fill, connection pools, first-call costs).
            for _, server_port in (*servers, ("bare", bare_ports[kind])):
                reqs = wire(kind, server_port, picks[3])
                run_loop(lambda reqs=reqs, sp=server_port: load(sp, reqs, 4, 0.2, 1.5))
        # Load by load, then set by set (each load starting with the next set), then server
        # by server: the sets compared are measured minutes apart at most.
        for i, ((per, _, clients), entity_lists) in enumerate(zip(shapes, picks, strict=True)):
            key = f"{per} ent x {clients} conn"
            for kind in kinds[i % len(kinds) :] + kinds[: i % len(kinds)]:
                for name, server_port in (*servers, ("bare", bare_ports[kind])):
                    reqs = wire(kind, server_port, entity_lists)
                    r = run_loop(
                        lambda reqs=reqs, clients=clients, sp=server_port: load(
                            sp, reqs, clients, args.seconds, args.warmup
                        )
                    )
                    results[kind][name][key] = r
                    if r["failures"] == r["requests"]:
                        msg = f"every request to {name} failed; logs in {work}"
                        raise RuntimeError(msg)
                    console.print(
                        f"{kind:15} {name:12} {key:18} {r['requests_s']:8,.0f} req/s  "
                        f"p50 {r['p50_ms']:7.2f}  p99 {r['p99_ms']:7.2f} ms  "
                        f"failures {r['failures']:.0f}"
                    )
    finally:
        for proc in (api, uncached):
            if proc is not None:
                proc.stop()
        for bare in bares.values():
            bare.terminate()
            bare.wait(timeout=30)
        delete_topics(
            settings.kafka, [t for s in sources.values() for t in (s.topic, f"dlq.{s.name}")]
        )
        for fs in sets.values():
            pattern = f"hw:{fs.name}:v{fs.version}:*"
            batch: list[bytes] = []
            for key in rdb.scan_iter(pattern, count=1000):
                batch.append(key)
                if len(batch) == 1000:
                    rdb.delete(*batch)
                    batch = []
            if batch:
                rdb.delete(*batch)
        rdb.close()

    report(console, kinds, facts, results, [n for n, _ in servers], args, work)


def report(
    console: Console,
    kinds: list[str],
    facts: dict[str, dict[str, Any]],
    results: dict[str, dict[str, dict[str, Result]]],
    servers: list[str],
    args: argparse.Namespace,
    work: Path,
) -> None:
    """The set table (memory, fold) and the lookup table, as rich tables and as Markdown."""
    where = f"{platform.node()}, {os.cpu_count()} cores"
    set_rows = []
    for kind in kinds:
        f = facts[kind]
        set_rows.append(
            [
                kind,
                ", ".join(f"{t}m" for t in f["tiles_min"]),
                f"{f['mem_mean']:,.0f}",
                f"{f['mem_mean'] / facts['sum']['mem_mean']:.1f}x",
                f"{f['fields']:.0f}",
                f"{f['payload']:,.0f}",
                f"{f['entities'] * f['mem_mean'] / 2**20:,.1f}",
                f"{f['batch_s']:.2f} ({f['batch_s'] / facts['sum']['batch_s']:.1f}x)",
                f"{f['events'] / f['batch_s']:,.0f}",
                f"{f['wall_s']:.1f}",
            ]
        )
    set_cols = [
        "set",
        "tiles",
        "MEMORY USAGE B/entity",
        "vs sum",
        "fields",
        "field+value B",
        "MiB all entities",
        "worker batch s (vs sum)",
        "events/s in batches",
        "produce+fold wall s",
    ]
    names = [*servers, "bare"]
    lookup_cols = ["load", "set"]
    lookup_cols += [f"{n} req/s (p50 / p99 ms)" for n in names]
    lookup_cols += [f"{n} req/s vs sum" for n in names]
    lookup_cols += [f"{n} / bare req/s" for n in servers]
    lookup_rows = []
    for key in results["sum"]["bare"]:
        for kind in kinds:
            rs = {n: results[kind][n][key] for n in names}
            row = [key, kind]
            row += [
                f"{r['requests_s']:,.0f} ({r['p50_ms']:.2f} / {r['p99_ms']:.2f})"
                for r in rs.values()
            ]
            row += [
                f"{rs[n]['requests_s'] / results['sum'][n][key]['requests_s']:.2f}" for n in names
            ]
            row += [f"{rs[n]['requests_s'] / rs['bare']['requests_s']:.2f}" for n in servers]
            lookup_rows.append(row)
    for title, cols, rows in (
        ("Feature sets (3 features over 1h/1d/7d, resolution 1m)", set_cols, set_rows),
        (
            f"POST /v1/online-features, {args.seconds:g} s per load ({where})",
            lookup_cols,
            lookup_rows,
        ),
    ):
        table = Table(title=title)
        for col in cols:
            table.add_column(col, justify="right")
        for row in rows:
            table.add_row(*row)
        console.print(table)
    print("\nMarkdown:\n")
    for cols, rows in ((set_cols, set_rows), (lookup_cols, lookup_rows)):
        print("| " + " | ".join(cols) + " |")
        print("|" + "|".join("---" if i < 2 else "---:" for i in range(len(cols))) + "|")
        for row in rows:
            print("| " + " | ".join(row) + " |")
        print()
    failures = sum(
        r["failures"]
        for by_server in results.values()
        for s in by_server.values()
        for r in s.values()
    )
    console.print(f"failures (non-200 answers): {failures:.0f}; logs in {work}")


if __name__ == "__main__":
    main()
