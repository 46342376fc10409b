"""``headwater rebuild-online`` repairs a Redis that lost data (issue 12, item 8).

Against the real services: a worker fills both stores, the feature set's keys are wiped
(what a Redis restarted without its append-only file, or a new Redis, looks like), and the
command recomputes every entity's state from the Delta history with the worker's own fold:
the same values as before the loss and as brute force, for every entity. Only the
version's own keys are touched. It refuses to run next to a live worker. And when Delta
trails Kafka (a worker killed before its Delta commit), the rebuild gives the states of
the history, and a worker started afterwards catches the gap up from Kafka by itself.
"""

from __future__ import annotations

import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import redis

from headwater.connectors.kafka_groups import committed_offsets, consumer_lag, group_members
from headwater.connectors.online_redis import RedisOnlineStore, entity_redis_key
from headwater.ingest import ingest_files
from headwater.sample_data import generate_transactions
from headwater.schemas.tiles import EntityState, FeatureSetPlan, Status
from tests.integration.pipeline import Deployment
from tests.integration.test_exactly_once import (
    FAST_FAILOVER,
    assert_offline_exactly_once,
    assert_online_equals_brute_force,
    start_worker,
)
from tests.reference import brute_force, example_events_by_user

pytestmark = pytest.mark.integration

MINUTE = 60_000


Values = dict[str, tuple[list[object], str]]
"""Per user: feature values and status."""


def _states(deployment: Deployment, users: list[str]) -> list[EntityState | None]:
    fs = deployment.definitions().feature_set(deployment.feature_set)
    store = RedisOnlineStore(deployment.settings.redis.url)
    states = store.read(fs, [(u,) for u in users])
    store.close()
    return states


def _online_values(
    deployment: Deployment, users: list[str], t: int, states: list[EntityState | None] | None = None
) -> Values:
    """Each user's (values, status) at ``t``, from the states in Redis (or ``states``).

    A state serves lookups at or after the time it was written (older tiles are dropped as
    the window slides), so states written at different times are compared at a later ``t``.
    """
    defs = deployment.definitions()
    fs = defs.feature_set(deployment.feature_set)
    plan = FeatureSetPlan(fs, defs.source(fs.source))
    if states is None:
        states = _states(deployment, users)
    out: Values = {}
    for u, state in zip(users, states, strict=True):
        values, status = plan.evaluate(state, t)
        out[u] = (values, str(status))
    return out


def _reference(deployment: Deployment, data: pa.Table, users: list[str], t: int) -> Values:
    fs = deployment.definitions().feature_set(deployment.feature_set)
    types = deployment.history_types()
    by_user = example_events_by_user(data)
    out: Values = {}
    for u in users:
        values, status = brute_force(fs, types, by_user.get(u, []), t)
        out[u] = (values, status)
    return out


def _wipe(client: redis.Redis, deployment: Deployment) -> int:
    keys = list(client.scan_iter(match=f"hw:{deployment.feature_set}:v1:*", count=1000))
    return int(client.delete(*keys)) if keys else 0


def _wait_group_empty(deployment: Deployment, timeout_s: float = 30) -> None:
    settings = deployment.settings
    deadline = time.monotonic() + timeout_s
    while group_members(settings.kafka, settings.worker.group_id):
        assert time.monotonic() < deadline, "the dead worker is still in the consumer group"
        time.sleep(0.5)


def test_rebuild_online_restores_every_state_from_delta_and_a_worker_catches_up_the_rest(
    deployment: Deployment, tmp_path: Path
) -> None:
    settings = deployment.settings
    end = time.time_ns() // 1_000_000 // MINUTE * MINUTE
    data = generate_transactions(end_ms=end, users=50, days=8, events_per_user_day=12, seed=31)
    first = data.slice(0, data.num_rows * 2 // 3)
    second = data.slice(first.num_rows)
    users = sorted(set(data.column("user_id").to_pylist())) + ["nobody"]
    fs = deployment.definitions().feature_set(deployment.feature_set)
    client = redis.Redis.from_url(settings.redis.url)
    # Keys the rebuild must leave alone: another version of the set, and another set.
    other_version = entity_redis_key(fs, ("u00001",)).replace(":v1:", ":v2:")
    other_set = f"hw:{deployment.feature_set}x:v1:{{u00001}}"
    client.hset(other_version, "o", "keep")
    client.hset(other_set, "o", "keep")
    try:
        worker = start_worker(deployment, {**deployment.env, **FAST_FAILOVER}, "worker0")
        deployment.ingest(first, worker)
        t = time.time_ns() // 1_000_000
        saved = _states(deployment, users)
        before = _online_values(deployment, users, t, saved)
        assert before == _reference(deployment, first, users, t)

        # A version that is not active is named, with the form expected.
        unknown = deployment.cli("rebuild-online", f"{deployment.feature_set}@v9")
        assert unknown.returncode == 1 and "no active version 9" in unknown.stderr, unknown.stderr
        malformed = deployment.cli("rebuild-online", deployment.feature_set)
        assert malformed.returncode == 1 and "is not NAME@vN" in malformed.stderr

        # Refused next to a live worker, with the fix named; nothing changed.
        refused = deployment.cli("rebuild-online")
        assert refused.returncode == 1, refused.stdout + refused.stderr
        assert "active member" in refused.stderr and "stop the workers" in refused.stderr
        assert _online_values(deployment, users, t) == before

        # Redis loses the set (plus a state of an entity the history never had).
        worker.stop()
        _wait_group_empty(deployment)
        client.copy(entity_redis_key(fs, ("u00002",)), entity_redis_key(fs, ("ghost",)))
        wiped = _wipe(client, deployment)
        assert wiped == len(users)  # 50 users + the ghost ("nobody" has no key)
        client.copy(entity_redis_key(fs, ("u00002",)), entity_redis_key(fs, ("ghost",)))
        assert all(v[1] == Status.NOT_FOUND for v in _online_values(deployment, users, t).values())

        done = deployment.cli("rebuild-online", f"{deployment.feature_set}@v1")
        assert done.returncode == 0, done.stdout + done.stderr
        approved = sum(len(v) for v in example_events_by_user(first).values())
        assert f"50 entities rebuilt from {approved} history rows" in done.stdout, done.stdout
        t = time.time_ns() // 1_000_000
        rebuilt = _online_values(deployment, users, t)
        assert rebuilt == _online_values(deployment, users, t, saved)  # every entity, exactly
        assert rebuilt == _reference(deployment, first, users, t)
        assert not client.exists(entity_redis_key(fs, ("ghost",)))
        assert client.hget(other_version, "o") == b"keep"
        assert client.hget(other_set, "o") == b"keep"

        # Delta trails Kafka: a worker that commits Delta only every 60 s is killed after
        # Kafka acknowledged the second part (it is in Redis, not in Delta).
        slow = {
            **deployment.env,
            **FAST_FAILOVER,
            "HEADWATER_WORKER__OFFLINE_FLUSH_SECONDS": "60",
            "HEADWATER_WORKER__OFFLINE_IDLE_FLUSH_SECONDS": "60",
        }
        worker = start_worker(deployment, slow, "worker_slow")
        path = tmp_path / "second.parquet"
        pq.write_table(second, path)
        ingest_files(settings, deployment.source, [path], show_progress=False)
        deadline = time.monotonic() + 120
        while consumer_lag(settings.kafka, settings.worker.group_id, deployment.topic) > 0:
            assert worker.alive() and time.monotonic() < deadline, worker.tail(40)
            time.sleep(0.2)
        time.sleep(1.5)  # past the next offset commit (every second)
        acked = committed_offsets(settings.kafka, settings.worker.group_id, deployment.topic)
        worker.kill()
        history_rows = sum(len(v) for v in example_events_by_user(first).values())
        _wait_group_empty(deployment)
        _wipe(client, deployment)
        done = deployment.cli("rebuild-online")
        assert done.returncode == 0, done.stdout + done.stderr
        assert f"from {history_rows} history rows" in done.stdout, done.stdout  # Delta's only
        t = time.time_ns() // 1_000_000
        assert _online_values(deployment, users, t) == _reference(deployment, first, users, t)

        # A worker started now catches the gap up from Kafka, into Delta and Redis.
        worker = start_worker(deployment, {**deployment.env, **FAST_FAILOVER}, "worker_after")
        deployment.wait_caught_up(worker)
        assert (
            committed_offsets(settings.kafka, settings.worker.group_id, deployment.topic) == acked
        )
        assert "catching up partition" in worker.log_file.read_text()
        assert_offline_exactly_once(deployment, data)
        url = deployment.start_api()
        assert_online_equals_brute_force(deployment, url, data)
    finally:
        client.delete(other_version, other_set)
        client.close()
