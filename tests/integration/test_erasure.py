"""Right to erasure end to end (issue 14): ``headwater erase --entity user_id=...`` against a
running worker, real Kafka, Redis and Delta.

The erased user's Redis state and every Delta row holding them are gone (every table under
the offline root is read, the kept input of a saved training set and the response log too),
the other users' online values and history are exactly brute force over their events, and
the audit has the entry. Then the raw topic is replayed two ways, and the erased user's old
events stay out while the others come back: ``headwater rebuild-online`` (from Delta), and a
new feature-set version that the worker computes from the start of the topic. An event of the
same id produced after the erasure is new data, and is processed.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import httpx
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
import redis
from deltalake import DeltaTable

from headwater.connectors.catalog import Catalog
from headwater.connectors.catalog.audit import AuditQuery
from headwater.connectors.offline_delta import DeltaOfflineStore, read_delta
from headwater.connectors.online_redis import entity_redis_key
from headwater.sample_data import generate_transactions
from headwater.serving.features import resolve_features
from headwater.serving.response_log import ResponseLog
from headwater.serving.training_sets import retrieve
from tests.integration.pipeline import Deployment
from tests.integration.test_exactly_once import FAST_FAILOVER, start_worker
from tests.integration.test_rebuild_online import (
    _online_values,
    _reference,
    _wait_group_empty,
    _wipe,
)
from tests.integration.test_versions import _edit, _wait_for
from tests.reference import example_events_by_user

pytestmark = pytest.mark.integration

MINUTE = 60_000
ERASED = "u00001"


def _tables(root: Path) -> dict[str, pa.Table]:
    """Every Delta table under ``root``, read whole."""
    return {
        str(log.parent.relative_to(root)): read_delta(DeltaTable(str(log.parent)))
        for log in sorted(root.rglob("_delta_log"))
    }


def _rows_of(table: pa.Table, user: str) -> int:
    """Rows of ``table`` that hold ``user``: in a ``user_id`` column or an ``entity`` JSON."""
    if "user_id" in table.column_names:
        return int(pc.sum(pc.equal(table.column("user_id"), user).cast(pa.int64())).as_py() or 0)
    if "entity" in table.column_names:
        return sum(json.loads(e).get("user_id") == user for e in table.column("entity").to_pylist())
    return 0


def _without(data: pa.Table, user: str) -> pa.Table:
    return data.filter(pc.not_equal(data.column("user_id"), user))


def _approved_ids(data: pa.Table) -> list[str]:
    return sorted(
        r["transaction_id"] for rows in example_events_by_user(data).values() for r, _, _ in rows
    )


def test_erase_removes_a_user_everywhere_and_replays_of_the_raw_topic_skip_them(
    deployment: Deployment, tmp_path: Path
) -> None:
    settings = deployment.settings
    end = time.time_ns() // 1_000_000 // MINUTE * MINUTE
    data = generate_transactions(end_ms=end, users=12, days=2, events_per_user_day=15, seed=14)
    users = sorted(set(data.column("user_id").to_pylist()))
    assert ERASED in users
    others = [u for u in users if u != ERASED]
    kept = _without(data, ERASED)
    catalog = Catalog(settings.catalog_url)
    fs = catalog.definitions().feature_set(deployment.feature_set)
    offline = DeltaOfflineStore(settings.offline_root)
    client = redis.Redis.from_url(settings.redis.url)

    worker = start_worker(deployment, {**deployment.env, **FAST_FAILOVER}, "worker0")
    deployment.ingest(data, worker)
    assert client.exists(entity_redis_key(fs, (ERASED,)))
    # A saved training set and logged responses that hold the user (and another).
    label = pa.table({"user_id": [ERASED, "u00002"], "event_timestamp": [end, end]})
    retrieve(
        offline,
        catalog,
        resolve_features(catalog.definitions(), [f"{fs.name}:spend_1d"]),
        label,
        save_as="before_erasure",
    )
    log = ResponseLog(settings.offline_root, sample_rate=1.0, flush_seconds=3600)
    for user in (ERASED, "u00002"):
        log.record(
            end, (f"{fs.qualified_name}:spend_1d",), [{"user_id": user}], [[1.0]], [["PRESENT"]]
        )
    log.close()
    assert _rows_of(_tables(settings.offline_root)["_served_responses"], ERASED) == 1

    # Bad requests are refused naming the field and the fix; nothing is recorded.
    unknown = deployment.cli("erase", "--entity", f"usr_id={ERASED}")
    assert unknown.returncode == 1 and "unknown key field 'usr_id'" in unknown.stderr
    assert "'user_id'" in unknown.stderr, unknown.stderr
    malformed = deployment.cli("erase", "--entity", ERASED)
    assert malformed.returncode == 1 and "write FIELD=VALUE" in malformed.stderr
    assert catalog.erasures.all() == [] and catalog.audit(AuditQuery(action="erase")) == []

    # The user's partition ends with a push (a transaction: its marker takes the last offset
    # and no reader ever gets it), so stored positions stop below the log's end; the erasure
    # must still see the workers caught up. (Declined: no history row, no feature changes.)
    url = deployment.start_api()
    event = {
        "transaction_id": "pushed",
        "user_id": ERASED,
        "merchant_id": "m1",
        "amount": 1.0,
        "currency": "EUR",
        "status": "declined",
        "event_time": end - 1000,
    }
    pushed = httpx.post(f"{url}/v1/push/{deployment.source}", json={"events": [event]}, timeout=30)
    assert pushed.status_code == 202, pushed.text
    deployment.wait_caught_up(worker)

    # The erasure, next to the running worker.
    done = deployment.cli("erase", "--entity", f"user_id={ERASED}", "--wait-seconds", "40")
    assert done.returncode == 0, done.stdout + done.stderr
    out = " ".join(done.stdout.split())
    approved = len(example_events_by_user(data)[ERASED])
    assert f"erased user user_id={ERASED}" in out, out
    assert "online: 1 key(s) deleted" in out
    assert f"history {fs.qualified_name}: {approved} row(s) deleted" in out, out
    assert "training set before_erasure: 1 row(s) deleted" in out
    assert "response log: 1 row(s) deleted" in out
    assert "kept 168 h" in out and "run `headwater erase --vacuum` then" in out

    # Gone from Redis and from every Delta table and kept copy.
    assert not client.exists(entity_redis_key(fs, (ERASED,)))
    tables = _tables(settings.offline_root)
    assert fs.name + "__v1" in tables and "_served_responses" in tables
    assert {name: _rows_of(t, ERASED) for name, t in tables.items()} == dict.fromkeys(tables, 0)
    assert _rows_of(tables["_served_responses"], "u00002") == 1
    kept_input = pq.read_table(
        settings.offline_root / "_training_sets" / "before_erasure" / "entities.parquet"
    )
    assert kept_input.column("user_id").to_pylist() == ["u00002"]
    # The others: history and online values exactly as brute force over their events.
    history = offline.history(fs)
    assert sorted(history.column("transaction_id").to_pylist()) == _approved_ids(kept)
    t = time.time_ns() // 1_000_000
    assert _online_values(deployment, others, t) == _reference(deployment, kept, others, t)

    # The old files stay for the retention; a vacuum now says when it can run.
    early = deployment.cli("erase", "--vacuum")
    assert early.returncode == 0 and "retention not passed" in early.stdout, early.stdout

    # Audited, by the user who ran the command.
    (entry,) = catalog.audit(AuditQuery(action="erase"))
    assert entry.outcome == "ok" and entry.actor.startswith("cli:")
    assert entry.target == f'user:["{ERASED}"]'
    assert entry.detail["topics"][deployment.topic]["ends"]
    (request,) = catalog.erasures.all()
    assert request.detail["removed"]["history_rows"] == {fs.qualified_name: approved}

    # A new event of the same id, produced after the erasure, is new data: processed.
    fresh = data.filter(pc.equal(data.column("user_id"), ERASED)).slice(0, 1)
    fresh = fresh.set_column(
        fresh.schema.get_field_index("status"), "status", pa.array(["approved"])
    ).set_column(
        fresh.schema.get_field_index("transaction_id"), "transaction_id", pa.array(["after"])
    )
    deployment.ingest(fresh, worker)
    t = time.time_ns() // 1_000_000
    every = [*users, "nobody"]
    after = pa.concat_tables([kept, fresh])
    assert _online_values(deployment, every, t) == _reference(deployment, after, every, t)
    assert sorted(offline.history(fs).column("transaction_id").to_pylist()) == _approved_ids(after)

    # Replay 1: rebuild-online from Delta (workers stopped, Redis wiped).
    worker.stop()
    _wait_group_empty(deployment)
    _wipe(client, deployment)
    rebuilt = deployment.cli("rebuild-online")
    assert rebuilt.returncode == 0, rebuilt.stdout + rebuilt.stderr
    t = time.time_ns() // 1_000_000
    assert _online_values(deployment, every, t) == _reference(deployment, after, every, t)

    # Replay 2: a new version, which the worker computes from the start of the raw topic.
    worker = start_worker(deployment, {**deployment.env, **FAST_FAILOVER}, "worker1")
    _edit(
        deployment,
        "{name: spend_1h, function: sum, field: amount, window: 1h}",
        "{name: spend_1h, function: sum, field: amount, window: 2h}",
    )
    applied = deployment.cli("apply", str(deployment.defs_dir))
    assert applied.returncode == 0, applied.stdout + applied.stderr
    v2 = catalog.definitions().feature_set(deployment.feature_set, 2)
    want = _approved_ids(after)
    _wait_for(
        lambda: (
            offline.version(v2) is not None
            and sorted(offline.history(v2).column("transaction_id").to_pylist()) == want
        ),
        "v2 to catch up from the raw topic without the erased user's old events",
    )
    v2_history = offline.history(v2)
    assert v2_history.filter(pc.equal(v2_history.column("user_id"), ERASED)).column(
        "transaction_id"
    ).to_pylist() == ["after"]
    # Served values of v2 (now the latest) for everyone: the erased user's new event only.
    t = time.time_ns() // 1_000_000
    assert _online_values(deployment, every, t) == _reference(deployment, after, every, t)
    assert worker.alive()
    client.close()
    catalog.close()
