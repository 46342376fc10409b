"""Feast, the peer of Headwater's online lookups and materialization (run by the peer venv).

    python feast_peer.py prepare REPO REDIS_URL PARQUET  -> {"materialize_s", "rows", "features"}
    python feast_peer.py sdk REPO USERS_FILE ENTITIES REPEATS  -> {"p50_ms", "p95_ms", "p99_ms"}
    python feast_peer.py serve REPO PORT [OPTIONS...]  (Feast's HTTP feature server, `feast
        serve` with its defaults or the given options, until stopped)
    python feast_peer.py teardown REPO  (deletes the project's keys from Redis)

The repo is a feature_store.yaml with the Redis online store and a local registry; the one
feature view reads the Parquet file (``user_id``, ``event_ts`` and feature columns).
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlparse

import pyarrow.parquet as pq
import yaml
from feast import Entity, FeatureStore, FeatureView, Field, FileSource
from feast.types import Float64, Int64, String

PROJECT = "hw_bench_peer"
VIEW = "peer_view"
_TYPES = {"double": Float64, "int64": Int64, "string": String, "large_string": String}


def _config(repo: Path, redis_url: str) -> None:
    url = urlparse(redis_url)
    db = (url.path or "/0").strip("/") or "0"
    connection = f"{url.hostname}:{url.port or 6379},db={db}"
    if url.password:
        connection += f",password={url.password}"
    config = {
        "project": PROJECT,
        "registry": str(repo / "registry.db"),
        "provider": "local",
        "online_store": {"type": "redis", "connection_string": connection},
        "offline_store": {"type": "file"},
        "entity_key_serialization_version": 3,
    }
    (repo / "feature_store.yaml").write_text(yaml.safe_dump(config))


def prepare(repo: Path, redis_url: str, parquet: Path) -> dict[str, object]:
    repo.mkdir(parents=True, exist_ok=True)
    _config(repo, redis_url)
    store = FeatureStore(repo_path=str(repo))
    schema = pq.read_schema(parquet)
    fields = [
        Field(name=f.name, dtype=_TYPES[str(f.type)])
        for f in schema
        if f.name not in ("user_id", "event_ts")
    ]
    user = Entity(name="user", join_keys=["user_id"])
    view = FeatureView(
        name=VIEW,
        entities=[user],
        ttl=timedelta(days=3650),
        schema=fields,
        source=FileSource(path=str(parquet), timestamp_field="event_ts"),
        online=True,
    )
    store.apply([user, view])
    rows = pq.read_metadata(parquet).num_rows
    started = time.perf_counter()
    store.materialize(
        start_date=datetime(1970, 1, 2, tzinfo=UTC),
        end_date=datetime.now(UTC) + timedelta(minutes=1),
    )
    return {
        "materialize_s": time.perf_counter() - started,
        "rows": rows,
        "features": [f"{VIEW}:{f.name}" for f in fields],
    }


def sdk(repo: Path, users_file: Path, entities: int, repeats: int) -> dict[str, float]:
    import random

    store = FeatureStore(repo_path=str(repo))
    features = [f"{VIEW}:{f.name}" for f in store.get_feature_view(VIEW).features]
    users = users_file.read_text().split()
    rng = random.Random(5)
    times = []
    for i in range(repeats + 20):
        rows = [{"user_id": u} for u in rng.sample(users, entities)]
        started = time.perf_counter()
        store.get_online_features(features=features, entity_rows=rows).to_dict()
        if i >= 20:  # warm-up first
            times.append((time.perf_counter() - started) * 1000)
    times.sort()
    return {
        "p50_ms": statistics.median(times),
        "p95_ms": times[int(len(times) * 0.95)],
        "p99_ms": times[int(len(times) * 0.99)],
    }


def main() -> None:
    command, repo = sys.argv[1], Path(sys.argv[2])
    if command == "prepare":
        print(json.dumps(prepare(repo, sys.argv[3], Path(sys.argv[4]))))
    elif command == "sdk":
        print(json.dumps(sdk(repo, Path(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]))))
    elif command == "serve":
        feast = str(Path(sys.executable).with_name("feast"))
        os.execv(
            feast,
            [feast, "-c", str(repo), "serve", "-h", "127.0.0.1", "-p", sys.argv[3], *sys.argv[4:]],
        )
    elif command == "teardown":
        FeatureStore(repo_path=str(repo)).teardown()
        print(json.dumps({"teardown": True}))
    else:
        raise SystemExit(f"unknown command {command!r}")


if __name__ == "__main__":
    main()
