"""Events of the sample schema produced live, for the benchmarks that measure under load, and
the clean-up of what a benchmark wrote to Redis."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import redis

from headwater.connectors.catalog import Catalog
from headwater.connectors.kafka import EventProducer
from headwater.schemas.avro import encode_wire

__all__ = ["delete_online_state", "produce_at_rate", "sample_event"]


def sample_event(transaction_id: str, user: str) -> dict[str, Any]:
    """An approved transaction of ``user`` dated now."""
    return {
        "transaction_id": transaction_id,
        "user_id": user,
        "merchant_id": "m1",
        "amount": 1.0,
        "currency": "EUR",
        "status": "approved",
        "event_time": time.time_ns() // 1_000_000,
    }


def produce_at_rate(
    settings: Any,
    source: Any,
    rate: int,
    stop: threading.Event,
    user_of: Callable[[int], str],
    prefix: str = "l",
) -> None:
    """``rate`` events/s through ``source``'s topic until ``stop``; event i is for ``user_of(i)``."""
    schema_id = Catalog(settings.catalog_url).register_schema(source.subject, source.schema)
    producer = EventProducer(settings.kafka, linger_ms=5)
    sent, started = 0, time.perf_counter()
    while not stop.is_set():
        user = user_of(sent)
        record = sample_event(f"{prefix}{sent}", user)
        producer.produce(source.topic, encode_wire(source.schema, schema_id, record), user.encode())
        sent += 1
        ahead = sent / rate - (time.perf_counter() - started)
        if ahead > 0:
            time.sleep(ahead)
    producer.flush()


def delete_online_state(url: str, feature_set: str) -> None:
    """Remove a benchmark run's entity states, so repeated runs do not fill Redis (and its
    append-only file)."""
    client = redis.Redis.from_url(url)
    pipe = client.pipeline(transaction=False)
    for key in client.scan_iter(match=f"hw:{feature_set}:*", count=10_000):
        pipe.unlink(key)
    pipe.execute()
    client.close()
