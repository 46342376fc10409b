"""Errors raised by the I/O connectors."""

from __future__ import annotations

from schemas.errors import ConfigError, FeatureStoreError

__all__ = [
    "KafkaUnavailableError",
    "OfflineStoreError",
    "OnlineStoreError",
    "OnlineStoreEvictionError",
    "OnlineStoreFullError",
    "ProduceError",
]


class KafkaUnavailableError(FeatureStoreError, ConnectionError):
    """No Kafka broker answered in time."""


class ProduceError(FeatureStoreError):
    """Kafka did not acknowledge every event."""


class OnlineStoreError(FeatureStoreError):
    """The online store (Redis) failed or holds unexpected data."""


class OnlineStoreFullError(OnlineStoreError):
    """The online store is out of memory and refuses writes (Redis ``maxmemory`` reached with
    ``noeviction``): a store fault to retry with backoff once memory is freed or raised."""


class OnlineStoreEvictionError(OnlineStoreError, ConfigError):
    """The online store may evict keys under memory pressure (a ``maxmemory-policy`` other
    than ``noeviction``), which would drop entity states silently; the message names the fix."""


class OfflineStoreError(FeatureStoreError):
    """The offline store (Delta Lake) failed or holds unexpected data."""
