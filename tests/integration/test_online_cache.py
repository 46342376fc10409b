"""The API's cache of decoded online states never serves a stale state (real Redis)."""

from __future__ import annotations

from typing import cast

import pytest
import redis

from headwater.connectors.online_redis import RedisOnlineStore, entity_redis_key
from headwater.schemas.tiles import EntityState, FeatureSetPlan, arrival_seq
from tests.unit.schemas.test_tiles import FS, SOURCE

pytestmark = pytest.mark.integration

PLAN = FeatureSetPlan(FS, SOURCE)
NOW = 1_790_000_000_000


def _write(
    store: RedisOnlineStore, key: tuple[str, ...], amounts: list[float], offset0: int = 0
) -> None:
    before = store.read(FS, [key])[0]
    state = before or EntityState()
    if before is not None:
        state = EntityState(
            tiles=dict(before.tiles),
            lifetime=dict(before.lifetime),
            newest=before.newest,
            pending=list(before.pending),
            offsets=dict(before.offsets),
            stored=before.stored,
        )
    events = [
        ({"amount": a, "qty": 1, "merchant": "m"}, NOW - 1000 * i, arrival_seq(0, offset0 + i))
        for i, a in enumerate(amounts)
    ]
    PLAN.apply(state, events, NOW)
    assert store.write(FS, {key: state}, {key: before}) == []


def _sum_life(state: EntityState | None) -> float:
    values, _ = PLAN.evaluate(state, NOW)
    return cast(float, values[[f.name for f in FS.features].index("sum_life")])


def test_cached_states_are_reused_only_while_unchanged(redis_url: str) -> None:
    writer = RedisOnlineStore(redis_url)
    reader = RedisOnlineStore(redis_url, cache_entities=10)
    client = redis.Redis.from_url(redis_url)
    keys = [(f"cache-test-{i}",) for i in range(15)]
    client.delete(*[entity_redis_key(FS, k) for k in keys])
    try:
        _write(writer, keys[0], [1.0, 2.0])
        first = reader.read(FS, [keys[0]])[0]
        assert _sum_life(first) == 3.0
        assert reader.read(FS, [keys[0]])[0] is first  # unchanged: the decoded state is reused

        _write(writer, keys[0], [4.0], offset0=10)  # a new event: the token changes
        second = reader.read(FS, [keys[0]])[0]
        assert second is not first
        assert _sum_life(second) == 7.0

        # Deleted and written afresh with other content: never the old cached state.
        client.delete(entity_redis_key(FS, keys[0]))
        assert reader.read(FS, [keys[0]]) == [None]
        _write(writer, keys[0], [0.5])
        assert _sum_life(reader.read(FS, [keys[0]])[0]) == 0.5

        # The writer's own reads and diffs never touch the token field.
        stored = writer.read(FS, [keys[0]])[0]
        assert stored is not None and b"v" not in stored.stored

        for i, key in enumerate(keys[1:], start=1):
            _write(writer, key, [float(i)])
        got = reader.read(FS, keys)
        assert [_sum_life(s) for s in got] == [0.5, *[float(i) for i in range(1, 15)]]
        assert len(reader._cache) == 10  # bounded
    finally:
        client.delete(*[entity_redis_key(FS, k) for k in keys])
        client.close()
        writer.close()
        reader.close()
