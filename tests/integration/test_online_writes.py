"""A state updated in place and written incrementally (only its changed tiles) leaves Redis
holding exactly that state: what the stream worker does on every batch (real Redis)."""

from __future__ import annotations

import random

import pytest
import redis

from connectors.online_redis import RedisOnlineStore, entity_redis_key
from schemas.tiles import EntityState, FeatureSetPlan, arrival_seq
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
