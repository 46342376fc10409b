"""When a stored entity state stops mattering (``expires_at_ms``): windows, TTL, pending
events and lifetime features."""

from __future__ import annotations

from headwater.schemas.definitions import Feature, FeatureSet
from headwater.schemas.tiles import EXPIRY_GRACE_MS, EntityState, expires_at_ms

HOUR = 3_600_000


def _set(*features: Feature, ttl_ms: int | None = None) -> FeatureSet:
    return FeatureSet(name="fs", entity="user", source="txns", features=features, ttl_ms=ttl_ms)


WINDOWED = (
    Feature(name="n_1h", function="count", window_ms=HOUR),
    Feature(name="n_3h", function="count", window_ms=3 * HOUR),
)


def test_the_longest_window_or_a_longer_ttl_plus_the_grace() -> None:
    state = EntityState(newest=10 * HOUR)
    assert expires_at_ms(_set(*WINDOWED), state) == 13 * HOUR + EXPIRY_GRACE_MS
    assert expires_at_ms(_set(*WINDOWED, ttl_ms=HOUR), state) == 13 * HOUR + EXPIRY_GRACE_MS
    assert expires_at_ms(_set(*WINDOWED, ttl_ms=24 * HOUR), state) == 34 * HOUR + EXPIRY_GRACE_MS


def test_events_in_the_writers_future_count_as_newest() -> None:
    state = EntityState(newest=10 * HOUR, pending=[[11 * HOUR, 5, {}]])
    assert expires_at_ms(_set(*WINDOWED), state) == 14 * HOUR + EXPIRY_GRACE_MS
    only_pending = EntityState(pending=[[11 * HOUR, 5, {}]])
    assert expires_at_ms(_set(*WINDOWED), only_pending) == 14 * HOUR + EXPIRY_GRACE_MS
    assert expires_at_ms(_set(*WINDOWED), EntityState()) is None


def test_a_lifetime_feature_keeps_the_state_forever() -> None:
    lifetime = _set(*WINDOWED, Feature(name="n", function="count"), ttl_ms=HOUR)
    assert expires_at_ms(lifetime, EntityState(newest=0)) is None
