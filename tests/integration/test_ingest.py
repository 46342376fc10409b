"""`headwater ingest` against the real broker: every format and database, and a scheduled run.

The same events are written as CSV, JSON lines, Parquet, Avro, a SQLite table and a
PostgreSQL table; each copy is ingested and consumed back, and per entity (= per partition)
the decoded records must equal the input rows in their order.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import time
import uuid
from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

import fastavro
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import sqlalchemy as sa
from confluent_kafka import Consumer

from headwater.ingest import Ingestor
from headwater.sample_data import generate_transactions
from headwater.schedule import Ledger
from headwater.schemas.avro import decode_wire
from tests.integration.pipeline import Deployment

pytestmark = pytest.mark.integration

FIELDS = ["transaction_id", "user_id", "merchant_id", "amount", "currency", "status", "event_time"]


def _rows(prefix: str, n: int = 60, seed: int = 5) -> list[dict[str, Any]]:
    table = generate_transactions(
        end_ms=1_764_000_000_000, users=6, days=1, events_per_user_day=10, seed=seed
    )
    rows = table.slice(0, n).to_pylist()
    return [
        {**{k: r[k] for k in FIELDS}, "transaction_id": f"{prefix}-{i}"} for i, r in enumerate(rows)
    ]


def _consume(
    bootstrap: str, topic: str, expected: int, timeout_s: float = 60
) -> list[tuple[bytes, dict[str, bytes]]]:
    """(raw value, headers) of every message, in partition order, once ``expected`` arrived."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"ingest-check-{uuid.uuid4().hex}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    consumer.subscribe([topic])
    found: list[tuple[bytes, dict[str, bytes]]] = []
    deadline = time.monotonic() + timeout_s
    try:
        while len(found) < expected and time.monotonic() < deadline:
            msg = consumer.poll(1.0)
            if msg is None or msg.error():
                continue
            # The producer writes a wire-format value and bytes-valued headers to every event.
            headers = cast(list[tuple[str, bytes]], msg.headers() or [])
            found.append((cast(bytes, msg.value()), dict(headers)))
        extra = consumer.poll(2.0)  # nothing more than expected
        assert extra is None or extra.error(), "more messages than expected"
    finally:
        consumer.close()
    return found


def _by_prefix_and_user(
    records: list[dict[str, Any]],
) -> dict[tuple[str, str], list[dict[str, Any]]]:
    grouped: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for r in records:
        grouped[(r["transaction_id"].split("-")[0], r["user_id"])].append(r)
    return dict(grouped)


def _write_files(d: Path, schema: Any) -> list[Path]:
    d.mkdir()
    rows = _rows("csv")
    with (d / "a.csv").open("w", newline="") as fh:
        writer = csv.DictWriter(fh, FIELDS)
        writer.writeheader()
        # ISO-8601 event times in the CSV, epoch ms elsewhere.
        writer.writerows(
            {**r, "event_time": datetime.fromtimestamp(r["event_time"] / 1000, UTC).isoformat()}
            for r in rows
        )
    (d / "b.jsonl").write_text("".join(json.dumps(r) + "\n" for r in _rows("jsonl")))
    pq.write_table(pa.Table.from_pylist(_rows("parquet")), d / "c.parquet")
    with (d / "d.avro").open("wb") as fh:
        fastavro.writer(fh, schema.parsed, _rows("avro"))
    return [d / "a.csv", d / "b.jsonl", d / "c.parquet", d / "d.avro"]


def _fill_table(url: str, table_name: str, rows: list[dict[str, Any]], *, tz_times: bool) -> None:
    meta = sa.MetaData()
    time_type: Any = sa.DateTime(timezone=True) if tz_times else sa.BigInteger()
    table = sa.Table(
        table_name,
        meta,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        *(sa.Column(name, sa.Float if name == "amount" else sa.Text) for name in FIELDS[:-1]),
        sa.Column("event_time", time_type),
    )
    engine = sa.create_engine(url)
    meta.create_all(engine)
    if tz_times:
        rows = [
            {**r, "event_time": datetime.fromtimestamp(r["event_time"] / 1000, UTC)} for r in rows
        ]
    with engine.begin() as conn:
        conn.execute(table.insert(), rows)
    engine.dispose()


def test_every_format_and_database_is_produced_in_order(
    deployment: Deployment, tmp_path: Path, postgres_url: str
) -> None:
    settings = deployment.settings
    source = deployment.definitions().source(deployment.source)
    files = _write_files(tmp_path / "in", source.schema)
    sqlite_url = f"sqlite:///{tmp_path / 'events.db'}"
    pg_table = f"tx_{deployment.suffix}"
    _fill_table(sqlite_url, "tx", _rows("sqlite"), tz_times=False)
    _fill_table(postgres_url, pg_table, _rows("postgres"), tz_times=True)

    ingestor = Ingestor.for_source(settings, deployment.source, show_progress=False)
    ledger = Ledger.for_source(settings.home, deployment.source)
    assert ingestor.ingest_files(files, ledger).produced == 4 * 60
    assert ingestor.ingest_sql(sqlite_url, "SELECT * FROM tx").produced == 60
    pg_query = f"SELECT * FROM {pg_table}"
    assert ingestor.ingest_sql(postgres_url, pg_query, watermark="id", ledger=ledger).produced == 60
    # Reruns repeat nothing: the files are in the ledger, the PostgreSQL watermark moved.
    assert ingestor.ingest_files(files, ledger).skipped_files == 4
    assert ingestor.ingest_sql(postgres_url, pg_query, watermark="id", ledger=ledger).produced == 0

    messages = _consume(settings.kafka.bootstrap_servers, deployment.topic, 6 * 60)
    assert len(messages) == 6 * 60
    got = _by_prefix_and_user([decode_wire(value, source.schema) for value, _ in messages])
    expected: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for prefix in ("csv", "jsonl", "parquet", "avro", "sqlite", "postgres"):
        expected |= _by_prefix_and_user(_rows(prefix))
    assert got == expected
    ids = [headers["hw.event_id"] for _, headers in messages]
    assert len(set(ids)) == len(ids) and all(len(i) == 64 for i in ids)


def test_scheduled_cli_picks_up_a_file_added_between_runs_exactly_once(
    deployment: Deployment, tmp_path: Path
) -> None:
    source = deployment.definitions().source(deployment.source)
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    first, second = _rows("first", 30), _rows("second", 40, seed=9)
    (inbox / "1.jsonl").write_text("".join(json.dumps(r) + "\n" for r in first))
    env = {**os.environ, **deployment.env, "PYTHONUNBUFFERED": "1"}
    command = [
        sys.executable,
        "-m",
        "headwater",
        "ingest",
        str(inbox),
        "--source",
        deployment.source,
        "--schedule",
        "6s",
        "--max-runs",
        "2",
    ]
    process = subprocess.Popen(
        command, env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        assert process.stdout is not None
        first_line = ""
        while "run 1:" not in first_line:
            first_line = process.stdout.readline()
            assert first_line or process.poll() is None, "the command ended before its first run"
        assert "ingested 30 events" in first_line
        (inbox / "2.jsonl").write_text("".join(json.dumps(r) + "\n" for r in second))
        rest = process.communicate(timeout=60)[0]
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0, rest
    assert "run 2: ingested 40 events" in rest and "skipped 1 file(s)" in rest

    # A plain rerun skips both files; the ledger lives under the deployment's home.
    rerun = subprocess.run(
        command[:7], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60, check=False
    )
    assert (
        rerun.returncode == 0
        and "ingested 0 events" in rerun.stdout
        and "skipped 2 file(s)" in rerun.stdout
    )
    ledger = json.loads(
        (deployment.settings.home / "ingest" / f"{deployment.source}.json").read_text()
    )
    assert sorted(Path(p).name for p in ledger["files"]) == ["1.jsonl", "2.jsonl"]

    messages = _consume(deployment.settings.kafka.bootstrap_servers, deployment.topic, 70)
    got = _by_prefix_and_user([decode_wire(value, source.schema) for value, _ in messages])
    assert got == _by_prefix_and_user(first) | _by_prefix_and_user(second)
