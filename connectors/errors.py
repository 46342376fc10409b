"""Errors raised by the I/O connectors."""

from __future__ import annotations

from schemas.errors import FeatureStoreError

__all__ = ["KafkaUnavailableError", "OfflineStoreError", "OnlineStoreError", "ProduceError"]


class KafkaUnavailableError(FeatureStoreError, ConnectionError):
    """No Kafka broker answered in time."""


class ProduceError(FeatureStoreError):
    """Kafka did not acknowledge every event."""


class OnlineStoreError(FeatureStoreError):
    """The online store (Redis) failed or holds unexpected data."""


class OfflineStoreError(FeatureStoreError):
    """The offline store (Delta Lake) failed or holds unexpected data."""
