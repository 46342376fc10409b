"""Every way in ends as the same events on a source topic: the same data sent through HTTP
push, a standard Confluent Avro producer, file replay, SQL replay and notebook ingestion (each
into its own source and feature set) gives identical features; and a backfill after live
ingestion gives what ingesting everything at once gives."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import sqlalchemy as sa
from confluent_kafka import Producer
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroSerializer
from confluent_kafka.serialization import MessageField, SerializationContext

from headwater import FeatureStore
from headwater.apply import apply_definitions
from headwater.connectors.offline_delta import DeltaOfflineStore
from headwater.examples import write_example_definitions
from headwater.ingest import Ingestor, ingest_files
from headwater.processes import wait_caught_up
from headwater.sample_data import generate_transactions
from tests.integration.pipeline import Deployment
from tests.reference import brute_force
from tests.reference import example_events_by_user as _events_by_user

pytestmark = pytest.mark.integration

PATHS = ("push", "producer", "file", "sql", "notebook")
META = {"_partition", "_offset", "_arrival_ms", "_event_date"}


def _add_definitions(deployment: Deployment, tag: str) -> str:
    """Example definitions renamed ``<name>_<suffix>_<tag>`` (entity and service too)."""
    suffix = f"{deployment.suffix}_{tag}"
    directory = write_example_definitions(deployment.defs_dir / tag, suffix)
    path = directory / "features.yaml"
    text = path.read_text().replace("- name: user\n", f"- name: user_{suffix}\n")
    text = text.replace("entity: user\n", f"entity: user_{suffix}\n").replace(
        "fraud_model", f"fraud_model_{suffix}"
    )
    path.write_text(text)
    return suffix


def _wait(deployment: Deployment, worker, suffix: str) -> None:  # type: ignore[no-untyped-def]
    settings = deployment.settings
    defs = deployment.definitions()
    wait_caught_up(
        settings.kafka,
        settings.worker.group_id,
        f"raw.transactions_{suffix}",
        worker,
        120,
        offline=(
            DeltaOfflineStore(settings.offline_root),
            [defs.feature_set(f"user_spend_{suffix}")],
        ),
    )


def _features(store: FeatureStore, suffix: str, users: list[str]) -> tuple[list[list[Any]], int]:
    fs = store.catalog.definitions().feature_set(f"user_spend_{suffix}")
    result = store.get_online_features(
        {"user_id": users}, [f"{fs.name}:{f.name}" for f in fs.features]
    )
    return result.values, result.served_at_ms


def _history(store: FeatureStore, suffix: str) -> list[tuple[Any, ...]]:
    fs = store.catalog.definitions().feature_set(f"user_spend_{suffix}")
    table = store.offline.history(fs)
    columns = [c for c in table.column_names if c not in META]
    return sorted(tuple(row[c] for c in columns) for row in table.select(columns).to_pylist())


def test_every_ingestion_path_gives_identical_features(
    deployment: Deployment, tmp_path: Path
) -> None:
    suffixes = {path: _add_definitions(deployment, path) for path in PATHS}
    settings = deployment.settings
    apply_definitions(settings, deployment.defs_dir)
    now = time.time_ns() // 1_000_000
    data = generate_transactions(
        end_ms=now // 60_000 * 60_000, users=20, days=2, events_per_user_day=8, seed=17
    )
    rows = data.to_pylist()
    url = deployment.start_api()
    worker = deployment.start_worker()

    # HTTP push, in request order.
    for start in range(0, len(rows), 100):
        response = httpx.post(
            f"{url}/v1/push/transactions_{suffixes['push']}",
            json={"events": rows[start : start + 100]},
            timeout=60,
        )
        assert response.status_code == 202, response.text
    # A standard Confluent producer with no Headwater code, through the registry API.
    topic = f"raw.transactions_{suffixes['producer']}"
    with SchemaRegistryClient({"url": f"{url}/registry"}) as registry:
        serialize = AvroSerializer(
            registry, (deployment.defs_dir / "producer" / "transactions.avsc").read_text()
        )
        producer = Producer(
            {"bootstrap.servers": settings.kafka.bootstrap_servers, "enable.idempotence": True}
        )
        for row in rows:
            producer.produce(
                topic,
                key=row["user_id"].encode(),
                value=serialize(row, SerializationContext(topic, MessageField.VALUE)),
            )
        assert producer.flush(30) == 0
    # File replay.
    pq.write_table(data, tmp_path / "events.parquet")
    ingest_files(
        settings,
        f"transactions_{suffixes['file']}",
        [tmp_path / "events.parquet"],
        show_progress=False,
    )
    # SQL replay from SQLite.
    db = f"sqlite:///{tmp_path / 'events.db'}"
    engine = sa.create_engine(db)
    data.to_pandas().to_sql("events", engine, index=False)
    engine.dispose()
    sql = Ingestor.for_source(settings, f"transactions_{suffixes['sql']}", show_progress=False)
    assert sql.ingest_sql(db, "SELECT * FROM events ORDER BY rowid").produced == len(rows)
    # Notebook ingestion of a pandas frame.
    with FeatureStore(settings) as store:
        assert store.ingest(data.to_pandas(), source=f"transactions_{suffixes['notebook']}") == len(
            rows
        )

    for suffix in suffixes.values():
        _wait(deployment, worker, suffix)
    users = sorted({r["user_id"] for r in rows}) + ["nobody"]
    with FeatureStore(settings) as store:
        values = {path: _features(store, suffix, users) for path, suffix in suffixes.items()}
        histories = {path: _history(store, suffix) for path, suffix in suffixes.items()}
        reference = store.catalog.definitions().feature_set(f"user_spend_{suffixes['file']}")
    for path in PATHS[1:]:
        assert values[path][0] == values["push"][0], path
        assert histories[path] == histories["push"], path
    # And they are the defined values, not just equal to each other.
    events = _events_by_user(data)
    types = {
        **dict(
            reference_types := store.catalog.definitions()
            .source(f"transactions_{suffixes['file']}")
            .schema.field_types
        ),
        "amount_cents": "long",
        "is_large": "long",
    }
    del reference_types
    values_file, served_at = values["file"]
    for user, got in zip(users, values_file, strict=True):
        assert got == brute_force(reference, types, events.get(user, []), served_at)[0], user


def test_backfill_after_live_ingestion_equals_ingesting_everything_at_once(
    deployment: Deployment, tmp_path: Path
) -> None:
    live_then_backfill = _add_definitions(deployment, "backfill")
    all_at_once = _add_definitions(deployment, "once")
    settings = deployment.settings
    apply_definitions(settings, deployment.defs_dir)
    now = time.time_ns() // 1_000_000
    data = generate_transactions(
        end_ms=now // 60_000 * 60_000, users=20, days=10, events_per_user_day=6, seed=29
    )
    cut = now - 2 * 86_400_000
    times = data.column("event_time").to_pylist()
    recent = data.filter(pa.array([t >= cut for t in times]))
    old = data.filter(pa.array([t < cut for t in times]))
    pq.write_table(recent, tmp_path / "recent.parquet")
    pq.write_table(old, tmp_path / "old.parquet")
    pq.write_table(data, tmp_path / "all.parquet")
    worker = deployment.start_worker()

    # Live first (the last two days), then the older history as a backfill; the other set gets
    # everything at once in time order.
    ingest_files(
        settings,
        f"transactions_{live_then_backfill}",
        [tmp_path / "recent.parquet"],
        show_progress=False,
    )
    _wait(deployment, worker, live_then_backfill)
    ingest_files(
        settings,
        f"transactions_{live_then_backfill}",
        [tmp_path / "old.parquet"],
        show_progress=False,
    )
    # A rerun of the same backfill (as after a crash) produces nothing again.
    assert (
        ingest_files(
            settings,
            f"transactions_{live_then_backfill}",
            [tmp_path / "old.parquet"],
            show_progress=False,
        )
        == 0
    )
    ingest_files(
        settings, f"transactions_{all_at_once}", [tmp_path / "all.parquet"], show_progress=False
    )
    _wait(deployment, worker, live_then_backfill)
    _wait(deployment, worker, all_at_once)

    users = sorted(set(data.column("user_id").to_pylist()))
    with FeatureStore(settings) as store:
        backfilled, _ = _features(store, live_then_backfill, users)
        once, _ = _features(store, all_at_once, users)
        assert backfilled == once
        assert _history(store, live_then_backfill) == _history(store, all_at_once)
        fs = store.catalog.definitions().feature_set(f"user_spend_{live_then_backfill}")
    # The backfilled old events did not replace the newer `last` values.
    last = [f.name for f in fs.features].index("last_merchant")
    newest: dict[str, tuple[int, str]] = {}
    for row in recent.to_pylist():
        if row["status"] == "approved" and (
            row["user_id"] not in newest or row["event_time"] >= newest[row["user_id"]][0]
        ):
            newest[row["user_id"]] = (row["event_time"], row["merchant_id"])
    for user, values in zip(users, backfilled, strict=True):
        if user in newest:
            assert values[last] == newest[user][1], user
