"""Hot entities against a real Redis: one write that changes tens of thousands of tiles of
one entity (a backfill of a bot or a large merchant) is stored whole, and so is a call
that mixes such an entity with hundreds of small ones (issue 12, item 4).

Lua's ``unpack`` gives at most about 8,000 values, so a script that passed an entity's
changed fields to HSET or HDEL in one ``unpack`` failed with "too many results to unpack"
for more than about 4,000 tiles, on every retry of the batch.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
import redis

from headwater.connectors.base import EntityKey
from headwater.connectors.online_redis import RedisOnlineStore, entity_redis_key
from headwater.schemas.definitions import Feature, FeatureSet
from headwater.schemas.tiles import EntityState, FeatureSetPlan, arrival_seq
from tests.reference import brute_force
from tests.unit.schemas.test_tiles import SOURCE

pytestmark = pytest.mark.integration

MINUTE = 60_000
DAY = 86_400_000
NOW = 1_790_000_000_000 // MINUTE * MINUTE


def _feature_set(window_days: int) -> FeatureSet:
    window = window_days * DAY
    return FeatureSet(
        name=f"hot_{uuid.uuid4().hex[:8]}",
        entity="user",
        source="txns",
        features=(
            Feature(name="n", function="count", window_ms=window),
            Feature(name="amount_sum", function="sum", field="amount", window_ms=window),
            Feature(name="n_1h", function="count", window_ms=3_600_000),
            Feature(name="last_merchant", function="last", field="merchant"),
        ),
    )


@pytest.fixture
def store(redis_url: str) -> Iterator[RedisOnlineStore]:
    store = RedisOnlineStore(redis_url)
    yield store
    store.close()


def _delete_set(redis_url: str, fs: FeatureSet) -> None:
    client = redis.Redis.from_url(redis_url)
    keys = list(client.scan_iter(match=f"hw:{fs.name}:v{fs.version}:*", count=1000))
    if keys:
        client.delete(*keys)
    client.close()


def _minute_events(minutes: int, start_offset: int = 0) -> list[tuple[dict[str, object], int, int]]:
    """One event a minute, ending at NOW, in event-time order."""
    return [
        (
            {"amount": float(i % 97) / 4, "qty": 1, "merchant": f"m{i % 13}"},
            NOW - (minutes - 1 - i) * MINUTE,
            arrival_seq(0, start_offset + i),
        )
        for i in range(minutes)
    ]


def test_one_write_of_ten_thousand_tiles_and_their_deletion_are_stored_whole(
    store: RedisOnlineStore, redis_url: str
) -> None:
    fs = _feature_set(window_days=7)
    plan = FeatureSetPlan(fs, SOURCE)
    key: EntityKey = ("bot",)
    events = _minute_events(30 * 24 * 60)  # 30 days: the last 7 days are 10,080 tiles
    try:
        state = EntityState()
        assert plan.apply(state, events, NOW)
        assert len(state.tiles) == 7 * 24 * 60
        assert store.write(fs, {key: state}, {key: None}) == []
        stored = store.read(fs, [key])[0]
        assert stored == state
        want, status = brute_force(fs, plan.history_types, events, NOW)
        assert plan.evaluate(stored, NOW) == (want, status)
        assert want[0] == 7 * 24 * 60 and want[2] == 60

        # Eight days later one new event: every one of the 10,080 tiles leaves the window
        # and is deleted from the hash in the same write.
        later = NOW + 8 * DAY
        new = [({"amount": 2.5, "qty": 1, "merchant": "late"}, later, arrival_seq(0, len(events)))]
        assert stored is not None
        assert plan.apply(stored, new, later)
        assert store.write(fs, {key: stored}, {key: stored}) == []
        again = store.read(fs, [key])[0]
        assert again is not None and sorted(again.tiles) == [later // MINUTE]
        client = redis.Redis.from_url(redis_url)
        assert client.hlen(entity_redis_key(fs, key)) == 6  # o, L, P, N, v and the one tile
        client.close()
        assert plan.evaluate(again, later) == brute_force(
            fs, plan.history_types, events + new, later
        )
    finally:
        _delete_set(redis_url, fs)


def test_a_hot_entity_among_hundreds_of_small_ones_is_written_with_all_of_them(
    store: RedisOnlineStore, redis_url: str
) -> None:
    fs = _feature_set(window_days=30)
    plan = FeatureSetPlan(fs, SOURCE)
    hot_events = _minute_events(30 * 24 * 60)  # 43,200 tiles: 86,400 arguments alone
    small_events: dict[EntityKey, list[tuple[dict[str, object], int, int]]] = {
        (f"u{i:03d}",): _minute_events(1 + i % 5, start_offset=100_000 + i * 10) for i in range(999)
    }
    keys: list[EntityKey] = [("hot",), *small_events]
    events = {("hot",): hot_events, **small_events}
    try:
        states = {}
        for k in keys:
            states[k] = EntityState()
            assert plan.apply(states[k], events[k], NOW)
        assert store.write(fs, states, dict.fromkeys(keys)) == []
        stored = store.read(fs, keys)
        assert stored == [states[k] for k in keys]
        for k, state in zip(keys, stored, strict=True):
            assert plan.evaluate(state, NOW) == brute_force(fs, plan.history_types, events[k], NOW)
        assert len(stored[0].tiles if stored[0] else []) == 30 * 24 * 60
    finally:
        _delete_set(redis_url, fs)
