"""The stream benchmark's peers: Quix Streams on the same topic, Feast materialize of the
same rows (both from the benchmark-only venv, `bench/peer_env.py`)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from peer_env import run_peer

__all__ = ["feast_materialize", "quix_window"]


def quix_window(
    work: Path, bootstrap: str, topic: str, events: int, schema: dict[str, Any]
) -> dict[str, float]:
    """Quix Streams' 1-hour sliding sum and count of ``amount`` per user over ``topic``."""
    (work / "quix").mkdir(exist_ok=True)
    schema_path = work / "quix" / "schema.json"
    schema_path.write_text(json.dumps(schema))
    return run_peer(
        "quix_window.py", bootstrap, topic, events, schema_path, work / "quix" / "state"
    )


def feast_materialize(work: Path, redis_url: str, data: pa.Table) -> dict[str, float]:
    """Feast's materialize of ``data`` (the benchmark's events, as a Parquet feature source
    with every field a feature) into the same Redis; its keys are deleted afterwards."""
    repo = work / "feast-materialize"
    parquet = work / "feast-events.parquet"
    times = pc.cast(data.column("event_time"), pa.timestamp("ms", tz="UTC"))
    table = data.drop_columns(["event_time"]).append_column("event_ts", times)
    pq.write_table(table, parquet)
    try:
        result = run_peer("feast_peer.py", "prepare", repo, redis_url, parquet)
    finally:
        if (repo / "feature_store.yaml").exists():
            run_peer("feast_peer.py", "teardown", repo)
    return {"seconds": float(result["materialize_s"]), "rows": float(result["rows"])}
