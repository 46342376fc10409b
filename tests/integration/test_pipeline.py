"""Events produced to Kafka come out of the HTTP API and the Delta table exactly as defined.

The real broker, Redis and Delta on disk; the worker and the API run as real processes. The
yardstick is ``tests.reference.brute_force`` applied to the raw events.
"""

from __future__ import annotations

import random
import time
from datetime import datetime
from pathlib import Path
from typing import cast

import httpx
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from confluent_kafka import Consumer

from headwater.connectors.kafka import EventProducer
from headwater.connectors.offline_delta import DeltaOfflineStore
from headwater.ingest import ingest_files
from headwater.processes import free_port
from headwater.sample_data import generate_transactions
from headwater.serving.features import resolve_features
from headwater.serving.historical import get_historical_features
from tests.integration.pipeline import Deployment
from tests.reference import brute_force
from tests.reference import example_events_by_user as _events_by_user

pytestmark = pytest.mark.integration

MINUTE = 60_000


def _dataset(now_ms: int) -> tuple[pa.Table, pa.Table]:
    """(valid events in arrival order, one event dated too far in the future)."""
    base = generate_transactions(
        end_ms=now_ms // MINUTE * MINUTE, users=40, days=2, events_per_user_day=15, seed=11
    )
    rows = base.to_pylist()
    # Same-millisecond ties, late arrivals and events slightly in the future (within the skew).
    rows.append({**rows[-1], "transaction_id": "tie", "merchant_id": "m_tie", "status": "approved"})
    rows.append(
        {
            **rows[5],
            "transaction_id": "late",
            "status": "approved",
            "event_time": now_ms - 2 * 86_400_000 + 7,
            "merchant_id": "m_late",
        }
    )
    rows.append(
        {
            **rows[10],
            "transaction_id": "future",
            "status": "approved",
            "event_time": now_ms + 120_000,
            "merchant_id": "m_future",
        }
    )
    bad = {**rows[0], "transaction_id": "too_far", "event_time": now_ms + 3_600_000}
    return pa.Table.from_pylist(rows, schema=base.schema), pa.Table.from_pylist(
        [bad], schema=base.schema
    )


def _dead_letters(bootstrap: str, topic: str, expected: int) -> list[dict[str, str]]:
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"dlq-check-{topic}",
            "auto.offset.reset": "earliest",
        }
    )
    consumer.subscribe([topic])
    found: list[dict[str, str]] = []
    deadline = time.monotonic() + 30
    try:
        while len(found) < expected and time.monotonic() < deadline:
            msg = consumer.poll(1.0)
            if msg is None or msg.error():
                continue
            # Dead-letter headers arrive as a list of (name, bytes value) pairs.
            headers = cast(list[tuple[str, bytes]], msg.headers() or [])
            found.append({k: v.decode() for k, v in headers})
    finally:
        consumer.close()
    return found


def test_events_flow_to_online_and_offline_with_brute_force_values(
    deployment: Deployment, tmp_path: Path
) -> None:
    settings = deployment.settings
    defs = deployment.definitions()
    fs = defs.feature_set(deployment.feature_set)
    field_types = deployment.history_types()

    metrics_port = free_port()
    deployment.env["HEADWATER_WORKER__METRICS_PORT"] = str(metrics_port)
    worker = deployment.start_worker()
    now_ms = time.time_ns() // 1_000_000
    valid, too_far = _dataset(now_ms)
    pq.write_table(valid, tmp_path / "valid.parquet")
    pq.write_table(too_far, tmp_path / "too_far.parquet")
    # Bad events first, on their own: a batch with no valid event must not stop the worker.
    ingest_files(settings, deployment.source, [tmp_path / "too_far.parquet"], show_progress=False)
    garbage = EventProducer(settings.kafka)
    garbage.produce(deployment.topic, b"\x07not avro", b"u00001")
    garbage.flush()
    deployment.wait_caught_up(worker)
    assert worker.alive()
    assert (
        ingest_files(settings, deployment.source, [tmp_path / "valid.parquet"], show_progress=False)
        == valid.num_rows
    )
    deployment.wait_caught_up(worker)

    # Bad events went to the dead-letter topic with their reasons, and did not stop the worker.
    letters = _dead_letters(settings.kafka.bootstrap_servers, f"dlq.{deployment.source}", 2)
    assert sorted(h["hw.reason"] for h in letters) == ["future", "undecodable"]
    assert all(
        h["hw.source_topic"] == deployment.topic and h["hw.offset"].isdigit() for h in letters
    )
    assert worker.alive()

    # The worker's Prometheus endpoint counts what happened.
    metrics = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10).text
    source = deployment.source
    assert f'headwater_events_in_total{{source="{source}"}} {float(valid.num_rows + 2)}' in metrics
    assert (
        f'headwater_events_dead_lettered_total{{reason="future",source="{source}"}} 1.0' in metrics
    )
    assert (
        f'headwater_events_dead_lettered_total{{reason="undecodable",source="{source}"}} 1.0'
        in metrics
    )
    assert f'headwater_batch_seconds_count{{source="{source}"}}' in metrics
    # Freshness per partition: the newest event time applied on each partition.
    prefix = 'headwater_partition_newest_event_time_seconds{partition="'
    newest = {
        int(line.split('partition="')[1].split('"')[0]): float(line.rsplit(" ", 1)[1])
        for line in metrics.splitlines()
        if line.startswith(prefix) and f'source="{source}"' in line
    }
    history = DeltaOfflineStore(settings.offline_location).history(fs)
    assert set(history.column("_partition").to_pylist()) <= set(newest)
    assert max(newest.values()) == max(valid.column("event_time").to_pylist()) / 1000

    # Online: every user's served values equal brute force at served_at.
    url = deployment.start_api()
    by_user = _events_by_user(valid)
    users = sorted(by_user) + ["nobody"]
    refs = [f"{fs.name}:{f.name}" for f in fs.features]
    response = httpx.post(
        f"{url}/v1/online-features",
        json={"features": refs, "entities": {"user_id": users}},
        timeout=30,
    ).json()
    served_at = datetime.fromisoformat(response["served_at"])
    t = (served_at.timestamp() * 1000).__round__()
    assert response["features"] == refs
    assert [r["entity"]["user_id"] for r in response["results"]] == users
    for result in response["results"]:
        user = result["entity"]["user_id"]
        want, status = brute_force(fs, field_types, by_user.get(user, []), t)
        assert result["values"] == want, user
        assert result["statuses"] == [status] * len(refs), user
    assert response["results"][-1]["statuses"][0] == "NOT_FOUND"
    assert response["results"][-1]["values"][:4] == [0, 0.0, 0, 0.0]
    # The event dated two minutes ahead is not served yet, but it is stored.
    assert all("m_future" not in r["values"] for r in response["results"])

    # Offline: the Delta history holds exactly the valid, approved events, each once, with
    # the transformed fields.
    offline = DeltaOfflineStore(settings.offline_root)
    history = offline.history(fs)
    approved = [row for rows in by_user.values() for row, _, _ in rows]
    assert history.num_rows == len(approved) < valid.num_rows
    assert sorted(history.column("transaction_id").to_pylist()) == sorted(
        r["transaction_id"] for r in approved
    )
    assert len(
        set(
            zip(
                history.column("_partition").to_pylist(),
                history.column("_offset").to_pylist(),
                strict=True,
            )
        )
    ) == len(approved)
    cents = dict(
        zip(
            history.column("transaction_id").to_pylist(),
            history.column("amount_cents").to_pylist(),
            strict=True,
        )
    )
    assert cents == {r["transaction_id"]: r["amount_cents"] for r in approved}

    # Point-in-time retrieval at random label times equals brute force, no row dropped.
    rng = random.Random(5)
    label_users = [rng.choice(users) for _ in range(300)]
    label_times = [now_ms - rng.randrange(0, 3 * 86_400_000) for _ in label_users]
    labels = pa.table({"user_id": label_users, "event_timestamp": label_times})
    resolved = resolve_features(defs, refs)
    training = get_historical_features(offline, resolved, labels)
    assert training.num_rows == len(label_users)
    assert training.column("user_id").to_pylist() == label_users
    for i, row in enumerate(training.to_pylist()):
        want, _ = brute_force(fs, field_types, by_user.get(label_users[i], []), label_times[i])
        assert [row[f.name] for f in fs.features] == want, (i, label_users[i], label_times[i])
    # Offline at served_at gives what was served online.
    at_served = get_historical_features(
        offline, resolved, pa.table({"user_id": users, "event_timestamp": [t] * len(users)})
    )
    assert [[row[f.name] for f in fs.features] for row in at_served.to_pylist()] == [
        r["values"] for r in response["results"]
    ]
    applied = sum(len(v) for v in by_user.values())
    assert (
        f'headwater_events_applied_total{{feature_set="{fs.qualified_name}"}} {float(applied)}'
        in httpx.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10).text
    )
    api_metrics = httpx.get(f"{url}/metrics/", timeout=10).text
    assert (
        'headwater_http_requests_total{route="/v1/online-features",status="200"} 1.0' in api_metrics
    )


def test_history_of_a_burst_reaches_delta_once_the_stream_goes_quiet(
    deployment: Deployment,
) -> None:
    """Rows wait for ``offline_flush_seconds`` (10 minutes here) only while batches keep
    coming; once none came for ``offline_idle_flush_seconds`` they are committed."""
    deployment.env["HEADWATER_WORKER__OFFLINE_FLUSH_SECONDS"] = "600"
    deployment.env["HEADWATER_WORKER__OFFLINE_IDLE_FLUSH_SECONDS"] = "0.5"
    worker = deployment.start_worker()
    data = generate_transactions(
        end_ms=time.time_ns() // 1_000_000, users=30, days=1, events_per_user_day=10, seed=3
    )
    path = deployment.settings.home / "burst.parquet"
    pq.write_table(data, path)
    ingest_files(deployment.settings, deployment.source, [path], show_progress=False)
    # Far less than the 600 s flush interval (and than its 300 s timer tick).
    deployment.wait_caught_up(worker, timeout_s=30)

    fs = deployment.definitions().feature_set(deployment.feature_set)
    history = DeltaOfflineStore(deployment.settings.offline_root).history(fs)
    approved = [r["transaction_id"] for r in data.to_pylist() if r["status"] == "approved"]
    assert sorted(history.column("transaction_id").to_pylist()) == sorted(approved)
