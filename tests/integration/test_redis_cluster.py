"""The online store on a real Redis Cluster (six redis-servers: three primaries, three
replicas): states written by the worker's script calls read back equal on the sync and the
API's asyncio paths, keys of every primary are listed and deleted, a batch costs one round
trip per node for writes (one ``WAIT`` each) and for a 100-entity lookup, a node that lost
its scripts gets them again, and writes that too few replicas confirmed fail loudly. Also
``headwater up --redis-cluster`` / ``headwater down`` as a user runs them.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
import redis.asyncio.cluster
import redis.cluster

from headwater.connectors.errors import OnlineStoreError
from headwater.connectors.online_redis import RedisOnlineStore
from headwater.connectors.online_redis_async import AsyncRedisReader
from headwater.connectors.redis_client import redis_client
from headwater.connectors.redis_timeouts import RedisTimeouts
from headwater.schemas.settings import RedisSettings, Settings, load_settings
from headwater.schemas.tiles import EntityState, FeatureSetPlan, arrival_seq
from headwater.stack import process
from headwater.stack.redis_cluster import (
    CLUSTER_NODES,
    cluster_node_paths,
    cluster_ports,
    redis_cluster_ready,
)
from tests.integration.redis_cluster import NODE_TIMEOUT_MS, consecutive_free_ports
from tests.unit.schemas.test_tiles import FS, SOURCE

pytestmark = [pytest.mark.integration, pytest.mark.distributed]

PLAN = FeatureSetPlan(FS, SOURCE)
NOW = 1_790_000_000_000


@pytest.fixture
def store_settings(redis_cluster: Settings) -> Iterator[Settings]:
    """The cluster's settings with a key prefix of this test's own (its keys only)."""
    prefix = f"hwtest-{uuid.uuid4().hex[:8]}"
    settings = redis_cluster.model_copy(
        update={"redis": redis_cluster.redis.model_copy(update={"key_prefix": prefix})}
    )
    yield settings
    store = RedisOnlineStore.from_settings(settings.redis)
    store.delete_keys(list(store.stored_keys(FS)))
    store.close()


def _states(count: int, amount: float, first_offset: int = 0) -> dict[tuple[str], EntityState]:
    states = {}
    for i in range(count):
        state = EntityState()
        row = {"amount": amount + i, "qty": 1, "merchant": "m"}
        assert PLAN.apply(state, [(row, NOW - 1000, arrival_seq(0, first_offset + i))], NOW)
        states[(f"user-{i}",)] = state
    return states


def _primaries(client: redis.cluster.RedisCluster) -> dict[str, redis.Redis]:
    return {n.name: client.get_redis_connection(n) for n in client.get_primaries()}


def _calls(node: redis.Redis, command: str) -> int:
    stats = node.info("commandstats")
    return int(stats.get(f"cmdstat_{command}", {}).get("calls", 0))


def test_states_round_trip_on_every_primary(store_settings: Settings) -> None:
    store = RedisOnlineStore.from_settings(store_settings.redis)
    client = redis_client(store_settings.redis)
    assert isinstance(client, redis.cluster.RedisCluster)
    try:
        assert store.ping()
        assert store.durability_problem() is None  # every node: appendfsync always
        assert store.check_no_eviction() is None
        states = _states(120, 1.5)
        keys = list(states)
        primaries = _primaries(client)

        assert store.write(FS, states, dict.fromkeys(keys)) == []  # loads the script too

        names = [store.key(FS, k) for k in keys]
        owners = Counter(client.get_node_from_key(n).name for n in names)
        assert set(owners) == set(primaries) and len(primaries) == CLUSTER_NODES // 2
        # WAIT returned: the replicas hold every key too.
        replicas = [client.get_redis_connection(n) for n in client.get_replicas()]
        assert sum(int(n.dbsize()) for n in replicas) >= len(keys)

        assert store.read(FS, keys) == [states[k] for k in keys]
        assert store.read(FS, [("never-written",)]) == [None]
        reader = AsyncRedisReader(store, RedisTimeouts(connect_s=1.0, read_s=1.0))

        async def lookup() -> list[list[EntityState | None]]:
            try:
                return await reader.read_many([(FS, keys), (FS, [("never-written",)])])
            finally:
                await reader.close()

        assert asyncio.run(lookup()) == [[states[k] for k in keys], [None]]

        # A second batch updates the states read back, in place (compare-and-set on the
        # stored offsets), as the worker does.
        current = dict(zip(keys, store.read(FS, keys), strict=True))
        for j, key in enumerate(keys):
            state = current[key]
            assert state is not None
            row = {"amount": 3.0, "qty": 2, "merchant": "m"}
            assert PLAN.apply(state, [(row, NOW - 500, arrival_seq(0, 1000 + j))], NOW)
        updated = {k: s for k, s in current.items() if s is not None}
        waits_before = {name: _calls(node, "wait") for name, node in primaries.items()}
        assert store.write(FS, updated, current) == []
        # One round trip per primary: each got its calls followed by exactly one WAIT.
        waits = {
            name: _calls(node, "wait") - waits_before[name] for name, node in primaries.items()
        }
        assert waits == dict.fromkeys(primaries, 1), waits
        assert store.read(FS, keys) == [updated[k] for k in keys]

        listed = sorted(store.stored_keys(FS))
        assert listed == sorted(names)
        assert store.delete_keys(listed) == len(names)
        assert store.read(FS, keys[:3]) == [None, None, None]
    finally:
        client.close()
        store.close()


def test_a_100_entity_lookup_is_one_round_trip_per_node(
    store_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = RedisOnlineStore.from_settings(store_settings.redis, cache_entities=1000)
    states = _states(100, 2.0)
    keys = list(states)
    assert store.write(FS, states, dict.fromkeys(keys)) == []
    trips: Counter[str] = Counter()
    real = redis.asyncio.cluster.ClusterNode.execute_pipeline

    async def counted(self: redis.asyncio.cluster.ClusterNode, commands: Any) -> bool:
        trips[self.name] += 1
        return await real(self, commands)

    monkeypatch.setattr(redis.asyncio.cluster.ClusterNode, "execute_pipeline", counted)
    reader = AsyncRedisReader(store, RedisTimeouts(connect_s=1.0, read_s=1.0))

    async def lookups() -> list[list[list[EntityState | None]]]:
        try:
            await reader.ping()  # connections made before counting
            out = []
            for _ in range(3):
                trips.clear()
                out.append(await reader.read_many([(FS, keys)]))
                rounds.append(dict(trips))
            return out
        finally:
            await reader.close()

    rounds: list[dict[str, int]] = []
    results = asyncio.run(lookups())
    assert all(r == [[states[k] for k in keys]] for r in results)
    primaries = {f"{n.host}:{n.port}" for n in _primary_nodes(store_settings)}
    # Cold cache: HGET v on every node, then HGETALL of all (one trip per node each);
    # warm: only the HGET v round, one trip per node.
    assert rounds[0] == dict.fromkeys(primaries, 2), rounds
    assert rounds[1] == rounds[2] == dict.fromkeys(primaries, 1), rounds
    store.close()


def _primary_nodes(settings: Settings) -> list[redis.cluster.ClusterNode]:
    client = redis_client(settings.redis)
    assert isinstance(client, redis.cluster.RedisCluster)
    try:
        return list(client.get_primaries())
    finally:
        client.close()


def test_a_node_that_lost_its_scripts_gets_them_again(store_settings: Settings) -> None:
    store = RedisOnlineStore.from_settings(store_settings.redis)
    client = redis_client(store_settings.redis)
    assert isinstance(client, redis.cluster.RedisCluster)
    try:
        first = _states(30, 1.0)
        assert store.write(FS, first, dict.fromkeys(first)) == []
        for node in _primaries(client).values():
            node.script_flush()  # as after a restart without the script, or a promotion
        second = _states(30, 5.0, first_offset=100)
        assert store.write(FS, second, {k: first[k] for k in second}) == []
        assert store.read(FS, list(second)) == list(second.values())
    finally:
        client.close()
        store.close()


def test_writes_a_stalled_replica_does_not_confirm_fail_and_name_the_setting(
    store_settings: Settings,
) -> None:
    """A replica that does not confirm in time (stopped with SIGSTOP, so still listed in the
    slot map) fails the write: the worker must not acknowledge what a failover to it could
    lose. Once it runs again, the same write goes through."""
    timeout_ms = 300
    strict = store_settings.redis.model_copy(update={"wait_timeout_ms": timeout_ms})
    store = RedisOnlineStore.from_settings(strict)
    client = redis_client(store_settings.redis)
    assert isinstance(client, redis.cluster.RedisCluster)
    states = {("stalled-replica",): next(iter(_states(1, 1.0).values()))}
    name = store.key(FS, ("stalled-replica",))
    primary, replica = client.nodes_manager.slots_cache[client.keyslot(name)][:2]
    pid = process.read_pid_file(cluster_node_paths(store_settings, replica.port).pid_file)
    assert pid is not None and process.pid_runs(pid, "redis-server")
    try:
        os.kill(pid, signal.SIGSTOP)
        try:
            with pytest.raises(OnlineStoreError, match=r"redis\.wait_replicas") as caught:
                store.write(FS, states, dict.fromkeys(states))
        finally:
            os.kill(pid, signal.SIGCONT)
        text = str(caught.value)
        assert f"only 0 of 1 replicas of the Redis node {primary.name}" in text
        assert f"redis.wait_timeout_ms={timeout_ms}" in text
        # The write ran on the primary, only unconfirmed; a retry (as the worker's) of the
        # same states finds them applied and rewrites nothing.
        relaxed = RedisOnlineStore.from_settings(store_settings.redis)
        assert relaxed.read(FS, list(states)) == list(states.values())
        relaxed.close()
    finally:
        client.close()
        store.close()


def test_a_standalone_redis_without_replicas_fails_writes_that_wait_for_one(
    redis_url: str,
) -> None:
    settings = RedisSettings(url=redis_url, wait_replicas=1, wait_timeout_ms=50)
    store = RedisOnlineStore.from_settings(settings)
    key = (f"wait-{uuid.uuid4().hex[:8]}",)
    states = {key: next(iter(_states(1, 1.0).values()))}
    try:
        with pytest.raises(
            OnlineStoreError, match=r"only 0 of 1 replicas .*redis\.wait_replicas=1"
        ):
            store.write(FS, states, dict.fromkeys(states))
    finally:
        store.delete_keys([store.key(FS, key)])
        store.close()


def _headwater(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """``headwater ARGS`` as a user runs it, with ``env``."""
    return subprocess.run(
        [sys.executable, "-m", "headwater", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_headwater_up_redis_cluster_and_down(tmp_path: Path, kafka_bootstrap: str) -> None:
    base = consecutive_free_ports(CLUSTER_NODES)
    env = {
        **os.environ,
        "HEADWATER_HOME": str(tmp_path / "home"),
        "HEADWATER_KAFKA__BOOTSTRAP_SERVERS": kafka_bootstrap,  # answers: reused, not ours
        "HEADWATER_REDIS__URL": f"redis://127.0.0.1:{base}",
        "HEADWATER_STACK__REDIS_CLUSTER_NODE_TIMEOUT_MS": str(NODE_TIMEOUT_MS),
        "COLUMNS": "200",
    }
    settings = load_settings(
        home=tmp_path / "home",
        kafka={"bootstrap_servers": kafka_bootstrap},
        redis={"url": f"redis://127.0.0.1:{base}", "cluster": True},
    )

    def headwater(*args: str) -> subprocess.CompletedProcess[str]:
        return _headwater(env, *args)

    up = headwater("up", "--redis-cluster")
    pids = [
        process.read_pid_file(cluster_node_paths(settings, port).pid_file)
        for port in cluster_ports(settings)
    ]
    try:
        assert up.returncode == 0, up.stdout + up.stderr
        assert "export HEADWATER_REDIS__CLUSTER=true" in up.stdout
        others = [f"127.0.0.1:{port}" for port in cluster_ports(settings)[1:]]
        assert f"export HEADWATER_REDIS__CLUSTER_NODES='{json.dumps(others)}'" in up.stdout
        for i, port in enumerate(cluster_ports(settings), start=1):
            assert f"redis-{i} " in up.stdout and f"127.0.0.1:{port}" in up.stdout
        assert all(pid is not None and process.pid_runs(pid, "redis-server") for pid in pids)
        assert redis_cluster_ready(settings)
        store = RedisOnlineStore.from_settings(settings.redis)
        assert store.durability_problem() is None
        store.close()
        again = headwater("up", "--redis-cluster")  # idempotent: every node reused
        assert again.returncode == 0, again.stdout + again.stderr
        assert "started" not in again.stdout.split("redis", 1)[1]
    finally:
        down = headwater("down")
    assert down.returncode == 0, down.stdout + down.stderr
    assert down.stdout.count("stopped") == CLUSTER_NODES  # and no "not running" single server
    assert "not running" not in down.stdout.split("redis", 1)[1]
    assert all(pid is not None and not process.pid_alive(pid) for pid in pids)
    assert not any(process.port_open("127.0.0.1", port) for port in cluster_ports(settings))


def test_up_secure_redis_cluster_requires_the_acl_user_on_every_node(tmp_path: Path) -> None:
    """``up --secure --redis-cluster``: every node refuses a client without the ACL user,
    replicas authenticate to their primaries (the cluster gets ready), the store works with
    the printed identity, and the password is on no command line and in no output."""
    from headwater.stack.secure import secure_settings
    from tests.integration.services import free_ports

    base = consecutive_free_ports(CLUSTER_NODES)
    kafka_port, controller_port = free_ports(2)
    home = tmp_path / "home"
    env = {
        **os.environ,
        "HEADWATER_HOME": str(home),
        "HEADWATER_KAFKA__BOOTSTRAP_SERVERS": f"127.0.0.1:{kafka_port}",
        "HEADWATER_STACK__CONTROLLER_PORT": str(controller_port),
        "HEADWATER_REDIS__URL": f"redis://127.0.0.1:{base}",
        "COLUMNS": "200",
    }
    plain = load_settings(
        home=home,
        kafka={"bootstrap_servers": f"127.0.0.1:{kafka_port}"},
        redis={"url": f"redis://127.0.0.1:{base}", "cluster": True},
        stack={"controller_port": controller_port},
    )

    def headwater(*args: str) -> subprocess.CompletedProcess[str]:
        return _headwater(env, *args)

    up = headwater("up", "--secure", "--redis-cluster")
    try:
        assert up.returncode == 0, up.stdout + up.stderr
        secure = secure_settings(plain)
        password = secure.redis.password
        assert password is not None and secure.redis.username == "headwater"
        secret = password.get_secret_value()
        assert secret not in up.stdout + up.stderr
        assert "export HEADWATER_REDIS__CLUSTER=true" in up.stdout
        for port in cluster_ports(plain):
            anonymous = redis.Redis(host="127.0.0.1", port=port, socket_timeout=2)
            with pytest.raises(redis.AuthenticationError):
                anonymous.ping()
            anonymous.close()
            pid = process.read_pid_file(cluster_node_paths(plain, port).pid_file)
            assert pid is not None
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().decode()
            assert secret not in argv
        assert not redis_cluster_ready(plain)  # without the identity nothing answers
        assert redis_cluster_ready(secure)  # replicas in sync: masterauth works
        prefixed = secure.redis.model_copy(update={"key_prefix": f"hwsec-{uuid.uuid4().hex[:6]}"})
        store = RedisOnlineStore.from_settings(prefixed)
        try:
            states = _states(30, 2.5)
            assert store.write(FS, states, dict.fromkeys(states)) == []
            assert store.read(FS, list(states)) == list(states.values())
        finally:
            store.close()
    finally:
        down = headwater("down")
    assert down.returncode == 0, down.stdout + down.stderr
    assert not any(process.port_open("127.0.0.1", port) for port in cluster_ports(plain))
    assert not process.port_open("127.0.0.1", kafka_port)
