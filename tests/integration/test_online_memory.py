"""Redis memory under real operations (issue 12, item 7), against real redis-servers.

* Entity hashes of sets whose features all have windows expire once they cannot matter
  any more (``schemas.tiles.expires_at_ms``), set in the same compare-and-set call as the
  write; sets with lifetime features keep theirs forever.
* A Redis that may evict keys (``maxmemory-policy`` other than ``noeviction``) would drop
  states silently: the store refuses it and a worker does not start, with the fix named.
* A full ``noeviction`` Redis refuses writes: that is an ``OnlineStoreFullError`` naming
  maxmemory and the fix, no entity is stored half-way, and the write goes through once
  memory is raised.

Tests that change a server's configuration start a private redis-server (the shared one
stays as it is) and stop it by its pid.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from headwater.connectors.base import EntityKey
from headwater.connectors.errors import OnlineStoreEvictionError, OnlineStoreFullError
from headwater.connectors.online_redis import RedisOnlineStore, entity_redis_key
from headwater.processes import HeadwaterProcess, free_port
from headwater.schemas.definitions import Feature, FeatureSet
from headwater.schemas.settings import Settings, load_settings
from headwater.schemas.tiles import EXPIRY_GRACE_MS, EntityState, FeatureSetPlan, arrival_seq
from headwater.stack.redis import start_redis, stop_redis
from tests.integration.pipeline import Deployment
from tests.reference import RefEvent, brute_force
from tests.unit.schemas.test_tiles import SOURCE

pytestmark = pytest.mark.integration

MINUTE = 60_000
HOUR = 3_600_000
DAY = 86_400_000


def _feature_set(*, lifetime: bool, ttl_ms: int | None) -> FeatureSet:
    features = [
        Feature(name="n_1h", function="count", window_ms=HOUR),
        Feature(name="sum_2h", function="sum", field="amount", window_ms=2 * HOUR),
        Feature(name="last_2h", function="last", field="merchant", window_ms=2 * HOUR),
    ]
    if lifetime:
        features.append(Feature(name="n_total", function="count"))
    return FeatureSet(
        name=f"mem_{uuid.uuid4().hex[:8]}",
        entity="user",
        source="txns",
        features=tuple(features),
        ttl_ms=ttl_ms,
    )


def _events(newest: int, count: int, first_offset: int = 0) -> list[RefEvent]:
    return [
        (
            {"amount": 1.25 * (i + 1), "qty": 1, "merchant": f"m{i}"},
            newest - (count - 1 - i) * 7 * MINUTE,
            arrival_seq(0, first_offset + i),
        )
        for i in range(count)
    ]


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[Settings]:
    """A redis-server of this test's own, started as `headwater up` starts one."""
    own = load_settings(
        home=tmp_path / "redis", redis={"url": f"redis://127.0.0.1:{free_port()}/0"}
    )
    status = start_redis(own)
    assert status.state == "started"
    try:
        yield own
    finally:
        stop_redis(own)


def _write(
    store: RedisOnlineStore, fs: FeatureSet, key: EntityKey, events: list[RefEvent], now: int
) -> EntityState:
    plan = FeatureSetPlan(fs, SOURCE)
    before = store.read(fs, [key])[0]
    state = EntityState() if before is None else before
    assert plan.apply(state, events, now)
    assert store.write(fs, {key: state}, {key: before}) == []
    return state


# Expiry ------------------------------------------------------------------------------------


def test_windowed_states_expire_once_they_cannot_matter_and_lifetime_ones_never(
    redis_url: str,
) -> None:
    store = RedisOnlineStore(redis_url)
    client = redis.Redis.from_url(redis_url)
    ttl_set = _feature_set(lifetime=False, ttl_ms=DAY)  # TTL longer than the windows
    window_set = _feature_set(lifetime=False, ttl_ms=None)
    lifetime_set = _feature_set(lifetime=True, ttl_ms=None)
    now = time.time_ns() // 1_000_000
    try:
        # An active entity: its hash lives until its newest event is older than max(TTL,
        # longest window), plus the grace, and its values are untouched meanwhile.
        for fs, useful in ((ttl_set, DAY), (window_set, 2 * HOUR)):
            plan = FeatureSetPlan(fs, SOURCE)
            events = _events(now - 10 * MINUTE, 5)
            _write(store, fs, ("active",), events, now)
            name = entity_redis_key(fs, ("active",))
            want_at = now - 10 * MINUTE + useful + EXPIRY_GRACE_MS
            assert client.pexpiretime(name) == want_at
            stored = store.read(fs, [("active",)])[0]
            t = time.time_ns() // 1_000_000
            assert plan.evaluate(stored, t) == brute_force(fs, plan.history_types, events, t)
            # A newer event moves the expiry with it.
            later = _events(now - MINUTE, 1, first_offset=5)
            _write(store, fs, ("active",), later, now)
            assert client.pexpiretime(name) == now - MINUTE + useful + EXPIRY_GRACE_MS
            assert client.pttl(name) > useful

        # An entity whose newest event is older than that is deleted by the write itself
        # (a backfill of old data keeps nothing that no lookup can use): lookups give the
        # empty-window values the state would give, with NOT_FOUND instead of EXPIRED.
        plan = FeatureSetPlan(ttl_set, SOURCE)
        old = _events(now - 2 * DAY, 3)
        state = _write(store, ttl_set, ("dormant",), old, now)
        assert plan.evaluate(state, now) == (plan.evaluate(None, now)[0], "EXPIRED")
        assert not client.exists(entity_redis_key(ttl_set, ("dormant",)))
        assert store.read(ttl_set, [("dormant",)]) == [None]
        assert plan.evaluate(None, now) == brute_force(ttl_set, plan.history_types, [], now)

        # Lifetime features need the state forever: no expiry, even for old events.
        _write(store, lifetime_set, ("old",), old, now)
        assert client.pttl(entity_redis_key(lifetime_set, ("old",))) == -1
    finally:
        for fs in (ttl_set, window_set, lifetime_set):
            keys = list(client.scan_iter(match=f"hw:{fs.name}:v1:*"))
            if keys:
                client.delete(*keys)
        client.close()
        store.close()


# Eviction ----------------------------------------------------------------------------------


def test_an_evicting_redis_is_refused_with_the_fix_and_an_unreadable_policy_warns(
    private_redis: Settings,
) -> None:
    url = private_redis.redis.url
    store = RedisOnlineStore(url)
    client = redis.Redis.from_url(url)
    try:
        assert store.check_no_eviction() is None  # Redis's default, and `headwater up`'s
        for policy in ("allkeys-lru", "volatile-ttl", "allkeys-random"):
            client.config_set("maxmemory-policy", policy)
            with pytest.raises(OnlineStoreEvictionError) as refused:
                store.check_no_eviction()
            text = str(refused.value)
            assert f"maxmemory-policy {policy}" in text
            assert "redis-cli CONFIG SET maxmemory-policy noeviction" in text
            assert "redis.conf" in text

        # A managed Redis that refuses CONFIG: a warning that the policy is unchecked.
        client.acl_setuser(
            "app", enabled=True, passwords=["+secret"], keys=["*"], commands=["+@all", "-config"]
        )
        host_port = url.removeprefix("redis://")
        limited = RedisOnlineStore(f"redis://app:secret@{host_port}")
        warning = limited.check_no_eviction()
        limited.close()
        assert warning is not None and "cannot check the maxmemory-policy" in warning
        assert "noeviction" in warning
    finally:
        client.close()
        store.close()


def test_a_worker_does_not_start_on_an_evicting_redis(
    deployment: Deployment, private_redis: Settings
) -> None:
    client = redis.Redis.from_url(private_redis.redis.url)
    client.config_set("maxmemory-policy", "allkeys-lru")
    client.close()
    worker = HeadwaterProcess(
        ["worker"],
        env={**deployment.env, "HEADWATER_REDIS__URL": private_redis.redis.url},
        log_file=deployment.settings.home / "evicting.log",
    )
    deployment.processes.append(worker)
    code = worker.proc.wait(timeout=60)
    text = worker.log_file.read_text()
    assert code == 1, text
    errors = [line for line in text.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, text
    assert "maxmemory-policy allkeys-lru" in errors[0]
    assert "redis-cli CONFIG SET maxmemory-policy noeviction" in errors[0]


# A full Redis ------------------------------------------------------------------------------


def test_a_full_redis_refuses_writes_with_a_clear_error_and_stores_no_entity_half_way(
    private_redis: Settings,
) -> None:
    url = private_redis.redis.url
    store = RedisOnlineStore(url)
    client = redis.Redis.from_url(url)
    fs = _feature_set(lifetime=True, ttl_ms=None)
    plan = FeatureSetPlan(fs, SOURCE)
    now = time.time_ns() // 1_000_000
    try:
        used = int(client.info("memory")["used_memory"])
        client.config_set("maxmemory", str(used + 2_000_000))
        # Fill it with entity states until Redis refuses.
        written = 0
        with pytest.raises(OnlineStoreFullError) as full:
            for batch in range(1_000):
                keys: list[EntityKey] = [(f"u{batch}-{i}",) for i in range(200)]
                states: dict[EntityKey, EntityState] = {}
                for j, key in enumerate(keys):
                    states[key] = EntityState()
                    plan.apply(states[key], _events(now, 10, first_offset=j * 10), now)
                store.write(fs, states, dict.fromkeys(keys))
                written += len(keys)
        assert written > 0
        text = str(full.value)
        assert "is full (maxmemory reached)" in text and url in text
        assert "CONFIG SET maxmemory" in text

        # Each entity of the refused write is whole or absent, never half-written.
        for key, stored in zip(keys, store.read(fs, keys), strict=True):
            assert stored is None or stored == states[key]

        # Memory raised: writing the entities the refused call left out goes through.
        client.config_set("maxmemory", "0")
        now_stored = dict(zip(keys, store.read(fs, keys), strict=True))
        missing: dict[EntityKey, EntityState] = {}
        for j, key in enumerate(keys):
            if now_stored[key] is None:
                missing[key] = EntityState()
                plan.apply(missing[key], _events(now, 10, first_offset=j * 10), now)
        assert missing
        assert store.write(fs, missing, dict.fromkeys(missing)) == []
        assert store.read(fs, keys) == [states[k] for k in keys]
    finally:
        client.close()
        store.close()
