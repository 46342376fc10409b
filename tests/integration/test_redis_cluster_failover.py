"""A Redis Cluster primary killed with SIGKILL while a real worker is applying a stream: its
replica is promoted, the worker and the API carry on after a bounded pause, and at the end
online = offline = the brute-force reference, every event stored exactly once.

Acknowledged states survive because the worker acknowledges Kafka offsets only after its
batch's writes were confirmed by the primary's replica (``WAIT``, ``redis.wait_replicas``):
the promoted replica holds everything acknowledged, and what it lacks was never
acknowledged and is replayed (exactly, by the stored offsets). A lost acknowledged state
would show here as a user short of events, since nothing replays committed offsets.

The killed node is then started again with the stack code (as ``headwater up
--redis-cluster`` does) and rejoins as the new primary's replica.
"""

from __future__ import annotations

import os
import signal
import time
from collections import Counter
from pathlib import Path

import httpx
import pytest
import redis.cluster

from headwater.connectors.online_redis import entity_redis_key
from headwater.connectors.redis_client import redis_client
from headwater.sample_data import generate_transactions
from headwater.schemas.definitions import FeatureSet
from headwater.schemas.settings import Settings
from headwater.stack import process, start_redis_cluster
from headwater.stack.redis_cluster import cluster_node_paths, redis_cluster_ready
from tests.integration.pipeline import make_deployment
from tests.integration.test_exactly_once import (
    FAST_FAILOVER,
    SlowProducer,
    applied_batches,
    assert_offline_exactly_once,
    assert_online_equals_brute_force,
    log_text,
    start_worker,
)
from tests.integration.test_store_outages import dead_letters

pytestmark = [pytest.mark.integration, pytest.mark.distributed]

MINUTE = 60_000
PAUSE_BOUND_S = 30.0
"""How long the API may fail lookups after the kill: failure detection (cluster-node-timeout,
2 s here), the replica's election, and the clients' slot-map refresh."""


def test_primary_killed_mid_stream_fails_over_and_loses_nothing(
    tmp_path: Path, kafka_bootstrap: str, redis_cluster: Settings
) -> None:
    data = generate_transactions(
        end_ms=time.time_ns() // 1_000_000 // MINUTE * MINUTE,
        users=15,
        days=2,
        events_per_user_day=30,
        seed=41,
    )
    half = data.num_rows // 3
    first, second = data.slice(0, half), data.slice(half)
    with make_deployment(
        tmp_path,
        kafka_bootstrap,
        redis_cluster.redis.url,
        redis={"cluster": True, "cluster_nodes": redis_cluster.redis.cluster_nodes},
    ) as deployment:
        worker = start_worker(deployment, {**deployment.env, **FAST_FAILOVER}, "worker")
        deployment.ingest(first, worker)
        url = deployment.start_api()
        assert_online_equals_brute_force(deployment, url, first)

        # The victim: the primary holding most of this deployment's users.
        fs = deployment.definitions().feature_set(deployment.feature_set)
        users = sorted(set(data.column("user_id").to_pylist()))
        client = redis_client(deployment.settings.redis)
        assert isinstance(client, redis.cluster.RedisCluster)
        owners = Counter(client.get_node_from_key(entity_redis_key(fs, (u,))).name for u in users)
        client.close()
        victim = owners.most_common(1)[0][0]
        victim_user = next(u for u in users if _owner(deployment.settings, fs, u) == victim)
        port = int(victim.rsplit(":", 1)[1])
        pid = process.read_pid_file(cluster_node_paths(redis_cluster, port).pid_file)
        assert pid is not None and process.pid_runs(pid, "redis-server")

        producer = SlowProducer(deployment, second, chunk=40, pause_s=0.25)
        producer.start()
        try:
            batches = len(applied_batches(worker))
            assert process.wait_until(lambda: len(applied_batches(worker)) > batches + 1, 60)
            os.kill(pid, signal.SIGKILL)  # mid-stream: the worker is writing batches
            killed = time.monotonic()
            assert process.wait_until(lambda: not process.pid_alive(pid), 10)

            # The API answers again, for a user of the killed primary, within the bound.
            recovered = _await_lookup(url, fs.name, fs.features[0].name, victim_user)
            pause = recovered - killed
            print(
                f"lookups of the killed primary's users answered again {pause:.1f}s after the kill"
            )
            assert pause < PAUSE_BOUND_S, pause
            assert _owner(deployment.settings, fs, victim_user) != victim  # promoted replica

            produced = producer.finish()
            assert produced == second.num_rows
            deployment.wait_caught_up(worker, timeout_s=180)
            assert worker.alive(), worker.tail(40)
            text = log_text(worker)
            assert "CRITICAL" not in text
            if "redis is failing" in text:  # waited out, with backoff, and said so
                assert "redis is back" in text

            # Nothing acknowledged was lost and nothing was counted twice.
            assert_online_equals_brute_force(deployment, url, data)
            assert_offline_exactly_once(deployment, data)
            assert dead_letters(deployment) == 0
            ready = httpx.get(f"{url}/readyz", timeout=10)
            assert ready.status_code == 200 and ready.json()["checks"]["redis"] == "ok", ready.text
        finally:
            if producer.is_alive():
                producer.finish()
            # The killed node, started again as `headwater up --redis-cluster` does, rejoins
            # as a replica, and the session's cluster is whole for the tests after this one.
            statuses = {s.address: s.state for s in start_redis_cluster(redis_cluster)}
        assert statuses[f"redis://127.0.0.1:{port}"] == "started"
        assert redis_cluster_ready(redis_cluster)
        node = redis_client(
            redis_cluster.redis.model_copy(
                update={"url": f"redis://127.0.0.1:{port}", "cluster": False, "cluster_nodes": []}
            )
        )
        assert node.info("replication")["role"] == "slave"
        node.close()
        # The worker goes on writing through the rejoined cluster.
        assert_online_equals_brute_force(deployment, url, data)


def _owner(settings: Settings, fs: FeatureSet, user: str) -> str:
    """The primary that serves ``user``'s key now (a fresh slot map)."""
    client = redis_client(settings.redis)
    assert isinstance(client, redis.cluster.RedisCluster)
    try:
        return str(client.get_node_from_key(entity_redis_key(fs, (user,))).name)
    finally:
        client.close()


def _await_lookup(url: str, feature_set: str, feature: str, user: str) -> float:
    """Poll a lookup of ``user`` until it answers 200; when it did (monotonic seconds)."""
    deadline = time.monotonic() + PAUSE_BOUND_S * 2
    last = None
    while time.monotonic() < deadline:
        try:
            last = httpx.post(
                f"{url}/v1/online-features",
                json={"features": [f"{feature_set}:{feature}"], "entities": {"user_id": [user]}},
                timeout=5,
            )
            if last.status_code == 200:
                return time.monotonic()
            assert last.status_code == 503, last.text  # unavailable, never a wrong answer
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"lookups did not recover: {last and last.text}")
