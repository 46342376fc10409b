"""Backfills by replay with hot keys go through a real worker in one run, with exact values
(issue 12, item 4).

A replay hands the worker batches of up to ``worker.batch_max_events`` events; an entity
with many events in one batch (a bot, a large merchant, or one entity with an event a
minute) changes thousands of tiles in one write. The Redis compare-and-set script used to
pass them to HSET in one Lua ``unpack``, which fails beyond about 8,000 values: the worker
exited with 70 on such a batch, and again on every restart.

The yardstick is ``tests.reference.brute_force`` over the raw events (the example feature
set's filter and transforms written out by hand).
"""

from __future__ import annotations

import re
import time
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

import httpx
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from headwater.connectors.offline_delta import DeltaOfflineStore
from headwater.connectors.online_redis import RedisOnlineStore
from headwater.ingest import ingest_files
from headwater.sample_data import SAMPLE_SCHEMA
from headwater.schemas.tiles import FeatureSetPlan, Status
from headwater.serving.features import resolve_features
from headwater.serving.historical import get_historical_features
from tests.integration.pipeline import Deployment
from tests.integration.test_exactly_once import (
    assert_offline_exactly_once,
    assert_online_equals_brute_force,
    assert_point_in_time_equals_brute_force,
    start_worker,
)
from tests.reference import brute_force, example_events_by_user

pytestmark = pytest.mark.integration

MINUTE = 60_000
HOUR = 3_600_000
DAY = 86_400_000

BACKFILL_WORKER = {
    # Production's batch size: a backlog is written in batches of up to 100,000 events.
    "HEADWATER_WORKER__BATCH_MAX_EVENTS": "100000",
    "HEADWATER_WORKER__BATCH_MAX_SECONDS": "1",
    "HEADWATER_WORKER__OFFLINE_FLUSH_SECONDS": "5",
}
APPLIED = re.compile(r": (\d+) events applied")


def transactions(
    users: Sequence[str] | np.ndarray, times: np.ndarray, rng: np.random.Generator
) -> pa.Table:
    """Rows of the example source for these users at these event times, in the given order:
    lognormal amounts with cents, 5 % declined, 400 merchants."""
    n = len(times)
    amounts = np.round(rng.lognormal(3.2, 1.0, n), 2)
    merchants = np.char.add("m", rng.integers(0, 400, n).astype(str))
    status = np.where(rng.random(n) < 0.05, "declined", "approved")
    return pa.table(
        {
            "transaction_id": pa.array(np.char.add("t", np.arange(n).astype(str))),
            "user_id": pa.array(np.asarray(users)),
            "merchant_id": pa.array(merchants),
            "amount": pa.array(amounts),
            "currency": pa.array(np.full(n, "EUR")),
            "status": pa.array(status),
            "event_time": pa.array(times.astype(np.int64)),
        },
        schema=SAMPLE_SCHEMA,
    )


def replay(deployment: Deployment, data: pa.Table, tmp_path: Path) -> float:
    """Produce ``data`` as ``headwater ingest`` does, then let one worker replay all of it from
    the topic in one run; returns the worker's seconds. The worker must never exit."""
    path = tmp_path / "backfill.parquet"
    pq.write_table(data, path)
    produced = ingest_files(deployment.settings, deployment.source, [path], show_progress=False)
    assert produced == data.num_rows
    started = time.monotonic()
    worker = start_worker(deployment, {**deployment.env, **BACKFILL_WORKER}, "backfill")
    deployment.wait_caught_up(worker, timeout_s=300)
    elapsed = time.monotonic() - started
    assert worker.alive()
    log = worker.log_file.read_text(errors="replace")
    assert "CRITICAL" not in log, log[-3000:]
    applied = [int(n) for n in APPLIED.findall(log)]
    assert sum(applied) == data.num_rows, applied  # one run: nothing replayed twice
    return elapsed


def test_one_entity_with_an_event_a_minute_for_30_days_replays_in_one_run(
    deployment: Deployment, tmp_path: Path
) -> None:
    rng = np.random.default_rng(4)
    end = time.time_ns() // 1_000_000 // MINUTE * MINUTE - MINUTE
    minutes = 30 * 24 * 60  # 43,200 events; the 7-day window holds 10,080 tiles
    times = end - (minutes - 1 - np.arange(minutes)) * MINUTE
    data = transactions(np.full(minutes, "bot"), times, rng)
    replay(deployment, data, tmp_path)

    # The stored state holds a tile per approved event of the longest window, 7 days (about
    # 9,600 of 10,080 minutes), and nothing older: thousands of tiles in one write.
    fs = deployment.definitions().feature_set(deployment.feature_set)
    store = RedisOnlineStore(deployment.settings.redis.url)
    state = store.read(fs, [("bot",)])[0]
    store.close()
    assert state is not None and len(state.tiles) > 9_000
    assert min(state.tiles) * MINUTE > end - 7 * DAY

    assert_offline_exactly_once(deployment, data)
    url = deployment.start_api()
    served_at = assert_online_equals_brute_force(deployment, url, data)
    label_times = [
        end - 29 * DAY + 17,
        end - 7 * DAY - MINUTE,
        end - DAY,
        end - HOUR + 1,
        served_at,
    ]
    assert_point_in_time_equals_brute_force(deployment, data, label_times)


def hot_key_backfill(
    *, events: int, users: int, hot_users: int, hot_share: float, days: int, end: int, seed: int
) -> pa.Table:
    """A replay of ``events`` over ``users`` users and ``days`` days, in arrival order: the first
    ``hot_users`` users (bots, large merchants) carry ``hot_share`` of the events, every other
    user has at least one, with a long tail; 2 % of rows arrive up to 6 hours late."""
    rng = np.random.default_rng(seed)
    hot = int(events * hot_share)
    cold_users = users - hot_users
    ids = np.concatenate(
        [
            rng.integers(0, hot_users, hot),
            hot_users + np.arange(cold_users),
            hot_users
            + np.minimum(
                rng.pareto(1.5, events - hot - cold_users) * cold_users / 20, cold_users - 1
            ).astype(np.int64),
        ]
    )
    times = end - rng.integers(0, days * DAY, events)
    late = rng.random(events) < 0.02
    arrival = times + np.where(late, rng.integers(1, 6 * HOUR, events), 0)
    order = np.argsort(arrival, kind="stable")
    names = np.char.add("u", np.char.zfill(ids[order].astype(str), 6))
    return transactions(names, times[order], rng)


def _reference_users(
    data: pa.Table, users: list[str]
) -> dict[str, list[tuple[dict[str, object], int, int]]]:
    """Brute-force events of ``users`` only (arrival order kept: a filter preserves it)."""
    mask = pc.is_in(data.column("user_id"), pa.array(users))
    return example_events_by_user(data.filter(mask))


def test_a_30_day_replay_of_1m_events_with_hot_keys_is_exact(
    deployment: Deployment, tmp_path: Path
) -> None:
    end = time.time_ns() // 1_000_000 // MINUTE * MINUTE - MINUTE
    data = hot_key_backfill(
        events=1_000_000, users=100_000, hot_users=3, hot_share=0.15, days=30, end=end, seed=12
    )
    seconds = replay(deployment, data, tmp_path)
    defs = deployment.definitions()
    fs = defs.feature_set(deployment.feature_set)
    plan = FeatureSetPlan(fs, defs.source(fs.source))
    types = deployment.history_types()
    approved = data.filter(pc.equal(data.column("status"), "approved"))

    # Every hot user and a random sample of 2,000 others, exactly, online (served values)...
    all_users = sorted(set(data.column("user_id").to_pylist()))
    assert len(all_users) == 100_000
    rng = np.random.default_rng(1)
    sample = ["u000000", "u000001", "u000002"] + list(
        rng.choice(all_users[3:], 2_000, replace=False)
    )
    by_user = _reference_users(data, sample)
    assert min(len(by_user[u]) for u in sample[:3]) > 45_000
    url = deployment.start_api()
    refs = [f"{fs.name}:{f.name}" for f in fs.features]
    response = httpx.post(
        f"{url}/v1/online-features",
        json={"features": refs, "entities": {"user_id": [*sample, "nobody"]}},
        timeout=60,
    )
    assert response.status_code == 200, response.text
    body = response.json()
    t = round(datetime.fromisoformat(body["served_at"]).timestamp() * 1000)
    wrong = []
    for result in body["results"]:
        user = result["entity"]["user_id"]
        want, status = brute_force(fs, types, by_user.get(user, []), t)
        if result["values"] != want or result["statuses"] != [status] * len(refs):
            wrong.append((user, result["values"], result["statuses"][0], want, status))
    assert not wrong, f"{len(wrong)} of {len(sample) + 1} users differ, e.g. {wrong[:2]}"

    # ... and offline (point-in-time retrieval at label times across the 30 days).
    offline = DeltaOfflineStore(deployment.settings.offline_root)
    history = offline.history(fs, columns=["_partition", "_offset"])
    assert history.num_rows == approved.num_rows
    positions = pc.add(
        pc.multiply(pc.cast(history.column("_partition"), pa.int64()), 1 << 40),
        history.column("_offset"),
    )
    assert pc.count_distinct(positions).as_py() == history.num_rows
    label_times = [end - 20 * DAY + 7, end - 6 * DAY - 5 * HOUR, end - HOUR + 1, t]
    pit_users = sample[:3] + sample[3:303]
    label_users = [u for _ in label_times for u in pit_users]
    times = [lt for lt in label_times for _ in pit_users]
    training = get_historical_features(
        offline,
        resolve_features(defs, refs),
        pa.table({"user_id": label_users, "event_timestamp": times}),
    )
    wrong_rows = []
    for i, row in enumerate(training.to_pylist()):
        want, _ = brute_force(fs, types, by_user.get(label_users[i], []), times[i])
        if [row[f.name] for f in fs.features] != want:
            wrong_rows.append((label_users[i], times[i]))
    assert not wrong_rows, (
        f"{len(wrong_rows)} of {len(label_users)} label rows differ, e.g. {wrong_rows[:3]}"
    )

    # Totals over all 100,000 users, from the stored states, against the raw events.
    store = RedisOnlineStore(deployment.settings.redis.url)
    totals = np.zeros(len(fs.features))
    statuses: dict[Status, int] = {}
    for start in range(0, len(all_users), 10_000):
        keys = [(u,) for u in all_users[start : start + 10_000]]
        for state in store.read(fs, keys):
            values, status = plan.evaluate(state, t)
            statuses[status] = statuses.get(status, 0) + 1
            totals += [v if isinstance(v, int | float) and v is not None else 0 for v in values]
    store.close()
    # Users with an approved event in the last 7 days (the TTL) are PRESENT, others with one
    # are EXPIRED (empty values), users with declined events only are NOT_FOUND.
    newest = approved.group_by("user_id").aggregate([("event_time", "max")])
    assert fs.ttl_ms is not None
    is_active = pc.greater_equal(newest.column("event_time_max"), t - fs.ttl_ms)
    active = newest.filter(is_active).column("user_id")
    expected = {
        Status.PRESENT: len(active),
        Status.EXPIRED: newest.num_rows - len(active),
        Status.NOT_FOUND: len(all_users) - newest.num_rows,
    }
    assert statuses == {s: n for s, n in expected.items() if n}, (statuses, expected)
    live = approved.filter(pc.is_in(approved.column("user_id"), active))
    e = live.column("event_time")
    names = [f.name for f in fs.features]
    assert totals[names.index("txn_count_total")] == live.num_rows
    for feature, days in (("txn_count_1d", 1), ("txn_count_1h", 1 / 24)):
        inside = pc.greater(pc.floor(pc.divide(e, float(MINUTE))), t // MINUTE - days * 1440)
        assert totals[names.index(feature)] == pc.sum(inside).as_py(), feature
    in_7d = pc.greater(pc.floor(pc.divide(e, float(MINUTE))), t // MINUTE - 7 * 1440)
    cents = pc.cast(pc.round(pc.multiply(live.column("amount"), 100)), pa.int64())
    assert totals[names.index("spend_cents_7d")] == pc.sum(cents.filter(in_7d)).as_py()
    print(f"\nreplayed {data.num_rows} events in {seconds:.1f}s; statuses {statuses}")
