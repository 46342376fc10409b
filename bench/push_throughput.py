"""HTTP push throughput of `headwater serve`, next to a bare FastAPI endpoint.

    .venv/bin/python bench/push_throughput.py [--seconds 10] [--clients 16]

1. starts or reuses Kafka and Redis like `headwater up`, applies the example definitions
   with a unique suffix in a temp home,
2. starts `headwater serve` (uvicorn, one process) and, as the baseline, a bare FastAPI app
   in its own uvicorn process on the same machine whose endpoint reads the same JSON body,
   parses it and answers 202 with the count (no validation, no Kafka),
3. for each server: 16 concurrent async clients (aiohttp; `--client httpx` is available but
   its async client is the bottleneck at ~700 req/s on this box) post for a fixed time, first
   single-event requests (requests/s), then 1000-event requests (events/s).
Every Headwater 202 means Kafka (acks=all) acknowledged every event of the request.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import aiohttp
import httpx
import orjson
from fastapi import FastAPI, Request
from fastapi.responses import Response
from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def bare_server(port: int) -> None:
    """The baseline: a FastAPI endpoint that accepts the same JSON and does nothing with it."""
    import uvicorn

    app = FastAPI()

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.post("/v1/push/{source}", status_code=202)
    async def push(source: str, request: Request) -> Response:
        events = orjson.loads(await request.body())["events"]
        return Response(
            orjson.dumps({"accepted": len(events)}), status_code=202, media_type="application/json"
        )

    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning")


async def load(
    url: str,
    bodies: list[bytes],
    per_request: int,
    clients: int,
    seconds: float,
    client_lib: str = "aiohttp",
) -> dict[str, float]:
    """Post ``bodies`` round-robin from ``clients`` concurrent clients for ``seconds``."""
    latencies: list[float] = []
    failures = 0
    headers = {"content-type": "application/json"}
    if client_lib == "httpx":
        session: Any = httpx.AsyncClient(
            limits=httpx.Limits(max_connections=clients, max_keepalive_connections=clients),
            timeout=60,
        )

        async def post(body: bytes) -> tuple[int, str]:
            r = await session.post(url, content=body, headers=headers)
            return r.status_code, r.text
    else:
        session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=clients), timeout=aiohttp.ClientTimeout(total=60)
        )

        async def post(body: bytes) -> tuple[int, str]:
            async with session.post(url, data=body, headers=headers) as r:
                return r.status, await r.text()

    async with session:
        # Warm-up: connections, the producer, the catalog cache.
        await asyncio.gather(*(post(bodies[i % len(bodies)]) for i in range(clients)))
        deadline = time.perf_counter() + seconds

        async def one(worker: int) -> None:
            nonlocal failures
            i = worker
            while time.perf_counter() < deadline:
                t0 = time.perf_counter()
                status, text = await post(bodies[i % len(bodies)])
                latencies.append(time.perf_counter() - t0)
                if status != 202:
                    failures += 1
                    if failures <= 3:
                        print(f"unexpected {status}: {text[:300]}", file=sys.stderr)
                i += clients

        start = time.perf_counter()
        await asyncio.gather(*(one(w) for w in range(clients)))
        elapsed = time.perf_counter() - start
    latencies.sort()
    ok = len(latencies) - failures
    return {
        "requests_s": ok / elapsed,
        "events_s": ok * per_request / elapsed,
        "p50_ms": statistics.median(latencies) * 1000,
        "p99_ms": latencies[int(len(latencies) * 0.99)] * 1000,
        "failures": failures,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument(
        "--client",
        choices=("aiohttp", "httpx"),
        default="aiohttp",
        help="load generator; httpx's async client tops out near 700 req/s here, below either server",
    )
    parser.add_argument("--bare-server", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.bare_server:
        bare_server(args.bare_server)
        return

    from headwater.apply import apply_definitions
    from headwater.connectors.kafka import delete_topics
    from headwater.examples import write_example_definitions
    from headwater.processes import HeadwaterProcess, free_port, wait_http_ok
    from headwater.sample_data import generate_transactions
    from headwater.schemas.settings import load_settings
    from headwater.stack import start_kafka, start_redis

    console = Console()
    base = load_settings()
    for start in (start_kafka, start_redis):
        console.print(f"{start.__name__}: {start(base).state}")
    work = Path(tempfile.mkdtemp(prefix="hw-push-bench-"))
    suffix = uuid.uuid4().hex[:6]
    port, bare_port = free_port(), free_port()
    env = {
        "HEADWATER_HOME": str(work / "home"),
        "HEADWATER_KAFKA__BOOTSTRAP_SERVERS": base.kafka.bootstrap_servers,
        "HEADWATER_REDIS__URL": base.redis.url,
        "HEADWATER_SERVING__PORT": str(port),
    }
    os.environ.update(env)
    settings = load_settings()
    apply_definitions(settings, write_example_definitions(work / "defs", suffix))
    source = f"transactions_{suffix}"

    now_ms = time.time_ns() // 1_000_000
    rows = generate_transactions(
        end_ms=now_ms, users=2000, days=1, events_per_user_day=10, seed=1
    ).to_pylist()
    single = [orjson.dumps({"events": [r]}) for r in rows[:5000]]
    batches = [orjson.dumps({"events": rows[i : i + 1000]}) for i in range(0, 10_000, 1000)]

    api = HeadwaterProcess(["serve"], env=env, log_file=work / "api.log")
    bare = subprocess.Popen([sys.executable, __file__, "--bare-server", str(bare_port)])
    results: dict[str, dict[str, dict[str, float]]] = {}
    try:
        wait_http_ok(f"http://127.0.0.1:{port}/healthz", api)
        bare_url = f"http://127.0.0.1:{bare_port}"
        for _ in range(100):
            try:
                if httpx.get(f"{bare_url}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.2)
        for name, url in (("headwater", f"http://127.0.0.1:{port}"), ("bare FastAPI", bare_url)):
            results[name] = {}
            for label, bodies, n in (
                ("1 event/request", single, 1),
                ("1000 events/request", batches, 1000),
            ):
                r = asyncio.run(
                    load(
                        f"{url}/v1/push/{source}",
                        bodies,
                        n,
                        args.clients,
                        args.seconds,
                        args.client,
                    )
                )
                results[name][label] = r
                console.print(
                    f"{name:12} {label:20} {r['requests_s']:9,.0f} req/s {r['events_s']:11,.0f} events/s "
                    f"p50 {r['p50_ms']:.1f} ms p99 {r['p99_ms']:.1f} ms failures {r['failures']:.0f}"
                )
    finally:
        api.stop()
        bare.terminate()
        bare.wait(timeout=30)
        delete_topics(settings.kafka, [f"raw.{source}", f"dlq.{source}"])

    table = Table(
        title=f"HTTP push, {args.clients} {args.client} clients x {args.seconds:g} s, {platform.node()}, {os.cpu_count()} CPUs"
    )
    for col in (
        "load",
        "headwater req/s",
        "headwater events/s",
        "p50 / p99 ms",
        "bare req/s",
        "bare events/s",
        "headwater / bare",
    ):
        table.add_column(col, justify="right")
    for label in results["headwater"]:
        h, b = results["headwater"][label], results["bare FastAPI"][label]
        table.add_row(
            label,
            f"{h['requests_s']:,.0f}",
            f"{h['events_s']:,.0f}",
            f"{h['p50_ms']:.1f} / {h['p99_ms']:.1f}",
            f"{b['requests_s']:,.0f}",
            f"{b['events_s']:,.0f}",
            f"{h['events_s'] / b['events_s']:.2f}",
        )
    console.print(table)
    console.print(
        f"Headwater 202s are acknowledged by Kafka (acks=all); failures: "
        f"{sum(r['failures'] for r in results['headwater'].values()):.0f}"
    )


if __name__ == "__main__":
    main()
