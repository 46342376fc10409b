"""A state updated in place and written incrementally (only its changed tiles) leaves Redis
holding exactly that state: what the stream worker does on every batch (real Redis)."""

from __future__ import annotations

import random

import pytest
import redis

from headwater.connectors.online_redis import RedisOnlineStore, entity_redis_key
from headwater.schemas.tiles import EntityState, FeatureSetPlan, arrival_seq
from tests.unit.schemas.test_tiles import FS, SOURCE

pytestmark = pytest.mark.integration

PLAN = FeatureSetPlan(FS, SOURCE)
R = FS.resolution_ms
START = 1_790_000_000_000


def _fields(client: redis.Redis, key: str) -> set[bytes | str]:
    return {f for f in client.hkeys(key) if f != b"v"}


@pytest.mark.parametrize("seed", range(3))
def test_in_place_writes_equal_a_fresh_read(redis_url: str, seed: int) -> None:
    rng = random.Random(seed)
    store = RedisOnlineStore(redis_url)
    client = redis.Redis.from_url(redis_url)
    keys = [(f"incremental-{seed}-{i}",) for i in range(4)]
    names = [entity_redis_key(FS, k) for k in keys]
    client.delete(*names)
    states: dict[tuple[str, ...], EntityState | None] = dict.fromkeys(keys)
    offset = 0
    now = START
    try:
        for _ in range(40):
            # The clock moves by up to 20 tiles: the largest window (60 tiles) slides, so
            # tiles fall out of retention and must be deleted from the hash as well.
            now += rng.randrange(0, 20 * R)
            batch = {}
            for key in rng.sample(keys, rng.randint(1, len(keys))):
                events = []
                for _ in range(rng.randint(1, 4)):
                    e = now - rng.randrange(0, 90 * R) + rng.choice([0, 0, 0, 30_000])
                    row = {"amount": rng.choice([None, 0.1, 2.5, -7.0]), "qty": 1, "merchant": "m"}
                    events.append((row, e, arrival_seq(0, offset)))
                    offset += 1
                before = states[key]
                state = EntityState() if before is None else before
                assert PLAN.apply(state, events, now)
                batch[key] = (state, before)
            conflicts = store.write(
                FS, {k: s for k, (s, _) in batch.items()}, {k: b for k, (_, b) in batch.items()}
            )
            assert conflicts == []
            for key, (state, _) in batch.items():
                states[key] = state
                assert state.changed == set()
                fresh = store.read(FS, [key])[0]
                assert fresh == state  # tiles, lifetime, newest, pending and offsets
                assert fresh is not None and fresh.stored == state.stored
                expected = {b"o", b"L", b"P", b"N"} | {b"t:%d" % k for k in state.tiles}
                assert _fields(client, entity_redis_key(FS, key)) == expected
                assert PLAN.evaluate(fresh, now) == PLAN.evaluate(state, now)
    finally:
        client.delete(*names)
        client.close()
        store.close()


def test_a_store_from_settings_keeps_to_its_key_prefix(redis_url: str) -> None:
    """Every process builds its store from the same settings, and a prefix set there (the
    demo's ``hw-demo``) is what writes, reads and the key listing of maintenance use."""
    from headwater.schemas.settings import RedisSettings

    store = RedisOnlineStore.from_settings(
        RedisSettings(url=redis_url, key_prefix="hw-prefix-test")
    )
    state = EntityState()
    PLAN.apply(state, [({"amount": 1.0}, START, arrival_seq(0, 0))], START)
    client = redis.Redis.from_url(redis_url)
    try:
        assert store.write(FS, {("p1",): state}, {("p1",): None}) == []
        name = store.key(FS, ("p1",))
        assert name == entity_redis_key(FS, ("p1",), "hw-prefix-test")
        assert client.exists(name)
        assert not client.exists(entity_redis_key(FS, ("p1",)))
        assert list(store.stored_keys(FS)) == [name]
        assert store.read(FS, [("p1",)])[0] is not None
    finally:
        client.delete(name)
        store.close()
        client.close()
