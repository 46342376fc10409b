"""``/readyz``: which dependency of the API is down, by name only.

Each check runs concurrently and off the event loop (the Redis one on ``redis.asyncio``, the
Kafka and catalog ones in threads) with a bound of its own, so readiness answers in about
``CHECK_TIMEOUT_S`` however the stores fail, and the loop keeps serving meanwhile. The answer
names the dependency and its state (``"redis": "unavailable"``), never an address, a version
or an error text: health endpoints are open to anyone who reaches the API, and URLs may hold
credentials. The server's log has the causes.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from headwater.connectors.catalog import Catalog, CatalogError
from headwater.connectors.kafka import wait_for_kafka
from headwater.connectors.online_redis_async import AsyncRedisReader
from headwater.schemas.settings import KafkaSettings

__all__ = ["CHECK_TIMEOUT_S", "readiness"]

log = logging.getLogger(__name__)

CHECK_TIMEOUT_S = 3.0
"""Longest one readiness check may take before its dependency counts as unavailable."""

OK, UNAVAILABLE, EMPTY = "ok", "unavailable", "empty"


async def _check(name: str, probe: Callable[[], Awaitable[str]]) -> str:
    try:
        return await asyncio.wait_for(probe(), CHECK_TIMEOUT_S)
    except CatalogError:
        return EMPTY  # reachable, but nothing was applied yet
    except Exception as exc:  # noqa: BLE001 - any failure of a dependency is "unavailable"
        log.warning("readiness: %s is unavailable: %s: %s", name, type(exc).__name__, exc)
        return UNAVAILABLE


async def readiness(
    reader: AsyncRedisReader, kafka: KafkaSettings, catalog: Catalog
) -> dict[str, str]:
    """``{"redis": ..., "kafka": ..., "catalog": ...}``, each ``ok``, ``unavailable`` or (the
    catalog) ``empty`` when nothing was applied yet."""

    async def redis() -> str:
        return OK if await reader.ping() else UNAVAILABLE

    async def kafka_check() -> str:
        await asyncio.to_thread(wait_for_kafka, kafka, CHECK_TIMEOUT_S - 1)
        return OK

    async def catalog_check() -> str:
        await asyncio.to_thread(catalog.definitions)
        return OK

    names = ("redis", "kafka", "catalog")
    states = await asyncio.gather(
        *(_check(n, p) for n, p in zip(names, (redis, kafka_check, catalog_check), strict=True))
    )
    return dict(zip(names, states, strict=True))
