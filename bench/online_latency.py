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
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import random
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar

import httpx
import orjson
from fastapi import FastAPI, Request
from fastapi.responses import Response
from rich.console import Console
from rich.table import Table

T = TypeVar("T")

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


def bare_server(port: int, redis_url: str, key_prefixes: str, style: str) -> None:
    """The baseline: the same request body; one HGETALL for one entity, else one pipeline of
    every entity's hash in every feature set (``key_prefixes``, comma-separated)."""
    prefixes = key_prefixes.split(",")
    key_prefix = prefixes[0]
    import redis
    import uvicorn

    app = FastAPI()

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    if style == "sync":
        client = redis.Redis.from_url(redis_url)

        @app.post("/v1/online-features")
        def lookup(body: dict[str, Any]) -> dict[str, int]:
            users = body["entities"]["user_id"]
            if len(users) == 1:
                raws = [client.hgetall(f"{key_prefix}{{{users[0]}}}")]
            else:
                pipe = client.pipeline(transaction=False)
                for prefix in prefixes:
                    for user in users:
                        pipe.hgetall(f"{prefix}{{{user}}}")
                raws = pipe.execute()
            return {"entities": len(raws), "fields": sum(len(r) for r in raws)}
    else:
        import redis.asyncio as aredis

        aclient = aredis.Redis.from_url(redis_url)

        @app.post("/v1/online-features")
        async def lookup_async(request: Request) -> Response:
            users = orjson.loads(await request.body())["entities"]["user_id"]
            if len(users) == 1:
                raws = [await aclient.hgetall(f"{key_prefix}{{{users[0]}}}")]
            else:
                pipe = aclient.pipeline(transaction=False)
                for prefix in prefixes:
                    for user in users:
                        pipe.hgetall(f"{prefix}{{{user}}}")
                raws = await pipe.execute()
            return Response(
                orjson.dumps({"entities": len(raws), "fields": sum(len(r) for r in raws)}),
                media_type="application/json",
            )

    # The options `headwater serve` passes (headwater/cli.py).
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning")


def _request(port: int, path: str, body: bytes) -> bytes:
    head = (
        f"POST {path} HTTP/1.1\r\nhost: 127.0.0.1:{port}\r\ncontent-type: application/json\r\n"
        f"content-length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


async def _exchange(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes
) -> tuple[int, bytes]:
    """One HTTP/1.1 keep-alive request; the servers always answer with a content-length."""
    writer.write(request)
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    lower = head.lower()
    at = lower.find(b"content-length:")
    if at < 0:
        msg = f"response without content-length: {head[:300]!r}"
        raise RuntimeError(msg)
    length = int(lower[at + 15 : lower.find(b"\r\n", at)])
    return status, await reader.readexactly(length)


async def load(
    port: int, requests: list[bytes], clients: int, seconds: float, warmup: float
) -> dict[str, float]:
    """``clients`` keep-alive connections send ``requests`` round-robin, each waiting for its
    answer; ``warmup`` seconds first (not counted), then ``seconds`` measured."""
    conns = [await asyncio.open_connection("127.0.0.1", port) for _ in range(clients)]
    latencies: list[float] = []
    failures = 0

    async def run(worker: int, deadline: float, record: bool) -> None:
        nonlocal failures
        reader, writer = conns[worker]
        i = worker
        clock = time.perf_counter
        while clock() < deadline:
            t0 = clock()
            status, body = await _exchange(reader, writer, requests[i % len(requests)])
            if record:
                latencies.append(clock() - t0)
                if status != 200:
                    failures += 1
                    if failures <= 3:
                        print(f"unexpected {status}: {body[:300]!r}", file=sys.stderr)
            i += clients

    await asyncio.gather(*(run(w, time.perf_counter() + warmup, False) for w in range(clients)))
    start = time.perf_counter()
    await asyncio.gather(*(run(w, start + seconds, True) for w in range(clients)))
    elapsed = time.perf_counter() - start
    for _, writer in conns:
        writer.close()
    latencies.sort()
    n = len(latencies)
    return {
        "requests_s": (n - failures) / elapsed,
        "p50_ms": latencies[n // 2] * 1000,
        "p95_ms": latencies[int(n * 0.95)] * 1000,
        "p99_ms": latencies[int(n * 0.99)] * 1000,
        "requests": n,
        "failures": failures,
    }


# Called without arguments; ``...`` admits the lambdas that bind loop variables as defaults.
def run_loop(coro_fn: Callable[..., Coroutine[Any, Any, T]]) -> T:
    try:
        import uvloop

        factory = uvloop.new_event_loop
    except ImportError:  # pragma: no cover - uvloop comes with faust
        factory = None
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(coro_fn())


def wait_bare(url: str, proc: subprocess.Popen[bytes], timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            msg = f"bare server exited with {proc.returncode}"
            raise RuntimeError(msg)
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    msg = f"bare server at {url} did not answer within {timeout_s:g} s"
    raise TimeoutError(msg)


_IDLE = ("Condition.wait", "Queue.get", "select (selectors", "_worker (concurrent")
# (label, frame function name): inclusive share of the stages of the lookup path.
_STAGES = (
    ("uvicorn + FastAPI on the event loop (whole request)", "RequestResponseCycle.run_asgi"),
    ("endpoint in the thread pool (online_features)", "create_app.<locals>.online_features"),
    ("  Catalog.definitions (freshness query to the catalog)", "Catalog.definitions"),
    ("  resolve_features (builds the FeatureSetPlans)", "resolve_features"),
    ("    of which compile_expression", "compile_expression"),
    ("  RedisOnlineStore.read (one pipeline per feature set)", "RedisOnlineStore.read"),
    ("    of which _decode (JSON of every tile)", "_decode"),
    ("  FeatureSetPlan.evaluate", "FeatureSetPlan.evaluate"),
    ("FastAPI serialize_response (return value -> JSON)", "serialize_response"),
)


def _read_raw(path: Path) -> tuple[Counter[str], Counter[str], int]:
    """Own and inclusive samples per frame of py-spy raw output, idle stacks dropped."""
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        frames = stack.split(";")
        if not stack or frames[-1].startswith(_IDLE):
            continue
        n = int(count)
        total += n
        own[frames[-1]] += n
        for name in {f.split(" (")[0] for f in frames}:
            inclusive[name] += n
    return own, inclusive, max(total, 1)


def profile(
    pid: int, out: Path, seconds: float, run_load: Callable[..., Any], console: Console
) -> None:
    """Two py-spy recordings of ``pid`` while ``run_load`` runs, raw collapsed stacks to
    ``out``-wall.txt and ``out``-gil.txt; prints the stages of the lookup path and top frames.

    wall: every thread sampled, idle ones (the thread pool waiting for work) dropped: where
    requests spend their time; a thread waiting to get the GIL back after a socket or SQLite
    call counts in that call. gil (``--gil``): only the thread holding the GIL: where the
    Python CPU goes (py-spy finds the holder in about half the samples here; shares hold).
    """
    out.parent.mkdir(parents=True, exist_ok=True)
    rate, duration = 200, max(1, int(seconds))
    py_spy = str(Path(sys.executable).parent / "py-spy")
    errors: list[str] = []

    def record() -> None:
        for view, extra in (("wall", []), ("gil", ["--gil"])):
            done = subprocess.run(
                [
                    py_spy,
                    "record",
                    "-p",
                    str(pid),
                    "-f",
                    "raw",
                    *extra,
                    "-r",
                    str(rate),
                    "-d",
                    str(duration),
                    "-o",
                    f"{out}-{view}.txt",
                ],
                capture_output=True,
                check=False,
            )
            if done.returncode != 0:
                errors.append(done.stderr.decode(errors="replace")[-500:])

    spy = threading.Thread(target=record)
    spy.start()
    result = run_load(2 * duration + 2.0)  # outlasts both recordings
    spy.join()
    if errors:
        console.print(f"py-spy failed: {errors[0]}")
        return
    views = {view: _read_raw(Path(f"{out}-{view}.txt")) for view in ("wall", "gil")}
    console.print(
        f"py-spy on the server at {result['requests_s']:,.0f} req/s (sampling slows it) -> {out}-*.txt"
    )
    stages = Table(title=f"{out.name}: where a request's time goes (inclusive % of samples)")
    stages.add_column("stage")
    for view in views:
        stages.add_column(f"{view} %", justify="right")
    for label, name in _STAGES:
        stages.add_row(
            label, *(f"{100 * inc[name] / total:.1f}" for _, inc, total in views.values())
        )
    console.print(stages)
    top = Table(title=f"{out.name}: top frames by own time")
    for view in views:
        top.add_column(f"{view} %", justify="right")
        top.add_column(f"{view} frame")
    rows = [own.most_common(12) for own, _, _ in views.values()]
    totals = [total for _, _, total in views.values()]
    for i in range(12):
        cells: list[str] = []
        for ranked, total in zip(rows, totals, strict=True):
            frame, n = ranked[i] if i < len(ranked) else ("", 0)
            cells += [f"{100 * n / total:.1f}" if frame else "", frame]
        top.add_row(*cells)
    console.print(top)


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
        "--live-rate", type=int, default=1000, help="events/s of the live-stream pass (0: skip it)"
    )
    parser.add_argument("--bare-server", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.bare_server:
        port, url, prefix, style = args.bare_server
        bare_server(int(port), url, prefix, style)
        return

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

        api = HeadwaterProcess(["serve"], env=env, log_file=work / "api.log")
        bare = subprocess.Popen(
            [
                sys.executable,
                __file__,
                "--bare-server",
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
                reqs = [_request(server_port, "/v1/online-features", b) for b in requests]
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
                    reqs = [_request(server_port, "/v1/online-features", b) for b in loads[2][1]]
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
                reqs = [_request(port, "/v1/online-features", b) for b in requests]
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

    table = Table(
        title=f"POST /v1/online-features, 10 features of 2 feature sets, {args.seconds:g} s per load "
        f"({platform.node()}, {os.cpu_count()} cores)"
    )
    for col in (
        "load",
        "headwater req/s",
        "headwater p50 / p95 / p99 ms",
        f"bare ({args.bare}) req/s",
        "bare p50 / p95 / p99 ms",
        "req/s hw / bare",
        "p50 hw / bare",
    ):
        table.add_column(col, justify="right")
    # ``h`` and ``b`` are one load's results here and every load's results below.
    h: dict[str, Any]
    b: dict[str, Any]
    for key, h in results["headwater"].items():
        b = results["bare"][key]
        table.add_row(
            key,
            f"{h['requests_s']:,.0f}",
            f"{h['p50_ms']:.2f} / {h['p95_ms']:.2f} / {h['p99_ms']:.2f}",
            f"{b['requests_s']:,.0f}",
            f"{b['p50_ms']:.2f} / {b['p95_ms']:.2f} / {b['p99_ms']:.2f}",
            f"{h['requests_s'] / b['requests_s']:.2f}",
            f"{h['p50_ms'] / b['p50_ms']:.2f}x",
        )
    console.print(table)
    h, b = results["headwater"], results["bare"]
    loaded = f"{args.clients} clients"
    one, hundred = f"1 entity, {loaded}", f"100 entities, {loaded}"
    checks = [
        (
            f"1 entity, {loaded}: req/s headwater / bare >= 0.9",
            h[one]["requests_s"] / b[one]["requests_s"],
            ">=",
            0.9,
        ),
        (f"1 entity, {loaded}: headwater p99 < 10 ms", h[one]["p99_ms"], "<", 10.0),
        (
            "100 entities, 1 client: p50 time headwater / bare <= 2",
            h["100 entities, 1 client"]["p50_ms"] / b["100 entities, 1 client"]["p50_ms"],
            "<=",
            2.0,
        ),
        (
            f"100 entities, {loaded}: time per request headwater / bare <= 2",
            b[hundred]["requests_s"] / h[hundred]["requests_s"],
            "<=",
            2.0,
        ),
    ]
    for text, value, op, target in checks:
        ok = value >= target if op == ">=" else value < target if op == "<" else value <= target
        console.print(f"{'[green]met[/]' if ok else '[red]NOT met[/]'}  {text}: {value:.2f}")
    failures = sum(r["failures"] for server in results.values() for r in server.values())
    console.print(f"failures (non-200 answers): {failures:.0f}; logs in {work}")


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
