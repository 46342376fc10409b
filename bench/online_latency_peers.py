"""Feast's own HTTP feature server and SDK under `bench/online_latency.py`'s loads.

Feast (from the benchmark-only venv, `bench/peer_env.py`) serves the same users with 10
float features each from the same Redis, materialized from a Parquet file; `feast serve`
runs twice, with its defaults and tuned (no worker recycling every 1,000 requests, a
registry refreshed hourly), and the SDK's in-process `get_online_features` is timed for 100
entities. Feast keeps its keys under its own project and deletes them (`teardown`) at the end.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.parquet as pq
from http_load import load, request_bytes, run_loop
from online_latency_bare import wait_bare
from peer_env import run_peer, start_peer
from rich.console import Console

__all__ = ["feast_results"]

FEAST_SERVERS = (
    ("feast", []),
    ("feast tuned", ["--max-requests", "10000000", "--registry_ttl_sec", "3600"]),
)


def feast_results(
    work: Path,
    redis_url: str,
    users: Sequence[str],
    loads: Sequence[tuple[str, int, int]],
    seconds: float,
    warmup: float,
    console: Console,
) -> dict[str, dict[str, dict[str, float]]]:
    """Results per Feast server (``feast``, ``feast tuned``) and load label, plus the SDK's
    100-entity latency under ``feast sdk``; ``loads`` are (label, entities, clients)."""
    import random

    from headwater.processes import free_port

    repo = work / "feast"
    parquet = work / "feast-online.parquet"
    now = pa.array([time.time_ns() // 1_000_000] * len(users), pa.timestamp("ms", tz="UTC"))
    columns: dict[str, Any] = {"user_id": list(users), "event_ts": now}
    columns.update({f"f{j}": [float(i * j) for i in range(len(users))] for j in range(10)})
    pq.write_table(pa.table(columns), parquet)
    (work / "feast-users.txt").write_text(" ".join(users))
    results: dict[str, dict[str, dict[str, float]]] = {}
    try:
        prepared = run_peer("feast_peer.py", "prepare", repo, redis_url, parquet)
        features = prepared["features"]
        rng = random.Random(9)
        for name, options in FEAST_SERVERS:
            port = free_port()
            server = start_peer(
                "feast_peer.py", "serve", repo, port, *options, log=work / f"{name}.log"
            )
            try:
                wait_bare(f"http://127.0.0.1:{port}", server, timeout_s=120, path="/health")
                results[name] = {}
                for label, per_request, clients in loads:
                    bodies = [
                        orjson.dumps(
                            {
                                "features": features,
                                "entities": {"user_id": rng.sample(list(users), per_request)},
                            }
                        )
                        for _ in range(200)
                    ]
                    reqs = [request_bytes(port, "/get-online-features", b) for b in bodies]
                    r = run_loop(
                        lambda reqs=reqs, clients=clients, port=port: load(
                            port, reqs, clients, seconds, warmup
                        )
                    )
                    key = f"{label}, {clients} client{'s' if clients > 1 else ''}"
                    results[name][key] = r
                    console.print(
                        f"{name:11} {key:26} {r['requests_s']:8,.0f} req/s  "
                        f"p50 {r['p50_ms']:6.2f}  p99 {r['p99_ms']:6.2f} ms  "
                        f"failures {r['failures']:.0f}"
                    )
            finally:
                server.terminate()
                server.wait(timeout=30)
        sdk = run_peer("feast_peer.py", "sdk", repo, work / "feast-users.txt", 100, 200)
        results["feast sdk"] = {"100 entities, in-process": sdk}
        console.print(f"feast sdk   100 entities in-process p50 {sdk['p50_ms']:.2f} ms")
    finally:
        if (repo / "feature_store.yaml").exists():
            run_peer("feast_peer.py", "teardown", repo)
    return results
