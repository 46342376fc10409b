"""Scheduled SQL ingestion with ``--watermark`` against real SQLite and PostgreSQL: no row lost,
none repeated.

Rows committed after a run with the same watermark value as that run's maximum (a batch
writer that stamps many rows with one timestamp, a second transaction in the same
millisecond) must be ingested by the next run, once; a rerun with nothing new repeats none.
"""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime
from typing import Any

import pytest
import sqlalchemy as sa

from headwater.connectors.kafka import admin_client, read_range
from headwater.ingest import Ingestor
from headwater.schedule import Ledger
from headwater.schemas.avro import decode_wire
from tests.integration.pipeline import Deployment

pytestmark = pytest.mark.integration

T0 = 1_764_000_000_000


def _table(url: str, name: str, tz_times: bool) -> tuple[sa.Engine, sa.Table]:
    meta = sa.MetaData()
    time_type: Any = sa.DateTime(timezone=True) if tz_times else sa.BigInteger()
    table = sa.Table(
        name,
        meta,
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("transaction_id", sa.Text),
        sa.Column("user_id", sa.Text),
        sa.Column("merchant_id", sa.Text),
        sa.Column("amount", sa.Float),
        sa.Column("currency", sa.Text),
        sa.Column("status", sa.Text),
        sa.Column("event_time", time_type),
    )
    engine = sa.create_engine(url)
    meta.create_all(engine)
    return engine, table


def _topic_transaction_ids(deployment: Deployment) -> Counter[str]:
    kafka = deployment.settings.kafka
    source = deployment.definitions().source(deployment.source)
    partitions = admin_client(kafka).list_topics(timeout=10).topics[deployment.topic].partitions
    ids: Counter[str] = Counter()
    for p in partitions:
        for batch in read_range(kafka, deployment.topic, p, 0, 1 << 62):
            for m in batch:
                assert m.value is not None
                ids[decode_wire(m.value, source.schema)["transaction_id"]] += 1
    return ids


@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
def test_rows_committed_later_at_the_last_watermark_are_ingested_once(
    deployment: Deployment, tmp_path: Any, postgres_url: str, database: str
) -> None:
    tz_times = database == "postgresql"
    url = postgres_url if tz_times else f"sqlite:///{tmp_path / 'events.db'}"
    engine, table = _table(url, f"tx_{deployment.suffix}", tz_times)

    def when(ms: int) -> Any:
        return datetime.fromtimestamp(ms / 1000, UTC) if tz_times else ms

    def insert(*rows: tuple[int, int, str]) -> None:
        """(id, event time offset in ms, user) rows, committed together."""
        with engine.begin() as conn:
            conn.execute(
                table.insert(),
                [
                    {
                        "id": i,
                        "transaction_id": f"t{i}",
                        "user_id": user,
                        "merchant_id": "m1",
                        "amount": float(i),
                        "currency": "EUR",
                        "status": "approved",
                        "event_time": when(T0 + dt),
                    }
                    for i, dt, user in rows
                ],
            )

    ingestor = Ingestor.for_source(deployment.settings, deployment.source, show_progress=False)
    query = f"SELECT * FROM {table.name}"

    def run() -> int:
        """One scheduled run, with the bookkeeping read afresh as a new process would."""
        ledger = Ledger.for_source(deployment.settings.home, deployment.source)
        return ingestor.ingest_sql(url, query, watermark="event_time", ledger=ledger).produced

    insert((1, 0, "u1"), (2, 1000, "u2"), (3, 2000, "u1"), (4, 2000, "u2"))
    assert run() == 4
    # Committed after that run, with the run's highest watermark (2000), and one newer row.
    insert((5, 2000, "u3"), (6, 2000, "u1"), (7, 3000, "u2"))
    assert run() == 3
    assert run() == 0  # nothing new: nothing repeated
    insert((8, 3000, "u3"))  # again at the (new) highest value
    assert run() == 1
    assert run() == 0
    engine.dispose()

    assert _topic_transaction_ids(deployment) == Counter(f"t{i}" for i in range(1, 9))
