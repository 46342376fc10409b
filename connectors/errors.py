"""Errors raised by the I/O connectors.

Every failure of a store (Redis, Delta Lake, Kafka, the catalog database) is a
``StoreFaultError``: a fault of the service, not of the data. Workers retry those with
backoff and never dead-letter an event because of one; anything else raised while
processing events is a fault of an event (or of our code on it) and is isolated instead.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TypeVar, cast

from headwater.schemas.errors import ConfigError, FeatureStoreError

T = TypeVar("T")
_END = object()

__all__ = [
    "KafkaUnavailableError",
    "OfflineStoreError",
    "OnlineStoreError",
    "OnlineStoreEvictionError",
    "OnlineStoreFullError",
    "ProduceError",
    "StoreFaultError",
    "iterate_with_faults",
    "store_faults",
]


class StoreFaultError(FeatureStoreError):
    """A store failed, timed out or holds unexpected data.

    Attributes:
        store: which one: ``redis``, ``delta``, ``kafka`` or ``catalog`` (metrics label).
    """

    store = "store"

    def __init__(self, message: str, *, store: str | None = None) -> None:
        super().__init__(message)
        if store is not None:
            self.store = store


class KafkaUnavailableError(StoreFaultError, ConnectionError):
    """No Kafka broker answered in time."""

    store = "kafka"


class ProduceError(StoreFaultError):
    """Kafka did not acknowledge every event."""

    store = "kafka"


class OnlineStoreError(StoreFaultError):
    """The online store (Redis) failed or holds unexpected data."""

    store = "redis"


class OnlineStoreFullError(OnlineStoreError):
    """The online store is out of memory and refuses writes (Redis ``maxmemory`` reached with
    ``noeviction``): a store fault to retry with backoff once memory is freed or raised."""


class OnlineStoreEvictionError(OnlineStoreError, ConfigError):
    """The online store may evict keys under memory pressure (a ``maxmemory-policy`` other
    than ``noeviction``), which would drop entity states silently; the message names the fix."""


class OfflineStoreError(StoreFaultError):
    """The offline store (Delta Lake) failed or holds unexpected data."""

    store = "delta"


@contextmanager
def store_faults(store: str, action: str, *answers: type[Exception]) -> Iterator[None]:
    """Turn any exception of a store call into a ``StoreFaultError`` naming ``store``.

    ``answers`` are exception types that are the store's answer rather than its failure
    (the catalog's "no such schema id"): they pass through unchanged.

    Store clients raise their own types (``redis.ConnectionError``, ``OSError`` from
    deltalake, SQLAlchemy's ``OperationalError``, ``KafkaException``); callers that must
    tell a store outage from a bad event wrap each store call in this, so an outage can
    never be mistaken for a poison event and dead-letter good data.
    """
    try:
        yield
    except StoreFaultError:
        raise
    except answers:
        raise
    except Exception as exc:
        msg = f"{action} failed: {type(exc).__name__}: {exc}"
        raise StoreFaultError(msg, store=store) from exc


def iterate_with_faults(items: Iterator[T], store: str, action: str) -> Iterator[T]:
    """``items``, with any failure of producing the next one turned into a ``StoreFaultError``
    of ``store`` (as ``store_faults`` does for one call): for readers that fetch lazily."""
    while True:
        with store_faults(store, action):
            item = next(items, _END)
        if item is _END:
            return
        yield cast("T", item)
