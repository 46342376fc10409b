"""The API's read path of the Redis online store, on ``redis.asyncio``.

The HTTP API serves every request on one event loop. A lookup made with the synchronous
client holds that loop for its whole Redis round trip, so a stalled Redis (paused, swapping,
a network partition) would stall every request, ``/healthz`` included. This reader sends the
same pipelined commands as ``RedisOnlineStore.read_many`` without blocking the loop, bounded
by ``RedisTimeouts``, and shares the store's keys, decoding and cache of decoded states
(``cache_hits`` / ``cache_fill``), so values are exactly those of the synchronous path.

A ``redis.asyncio`` client belongs to the event loop it was created on; the reader makes one
per running loop (one in a server, one per portal in tests).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import redis
from redis.exceptions import RedisClusterException

from headwater.connectors.base import EntityKey
from headwater.connectors.errors import OnlineStoreError
from headwater.connectors.online_redis import RedisOnlineStore, decode_state, split_per_request
from headwater.connectors.redis_client import AsyncRedisClient, async_redis_client
from headwater.connectors.redis_timeouts import RedisTimeouts
from headwater.schemas.definitions import FeatureSet
from headwater.schemas.tiles import EntityState

__all__ = ["AsyncRedisReader"]

_VERSION = b"v"


class AsyncRedisReader:
    """Reads entity states of ``store`` with an asyncio client bounded by ``timeouts``."""

    def __init__(self, store: RedisOnlineStore, timeouts: RedisTimeouts) -> None:
        self.store = store
        self.timeouts = timeouts
        self._clients: dict[asyncio.AbstractEventLoop, AsyncRedisClient] = {}

    def client(self) -> AsyncRedisClient:
        """The asyncio client of the running loop (also for the API's other Redis keys)."""
        return self._client()

    def _client(self) -> AsyncRedisClient:
        loop = asyncio.get_running_loop()
        client = self._clients.get(loop)
        if client is None:
            for old in [lp for lp in self._clients if lp.is_closed()]:
                del self._clients[old]  # a finished test portal's loop
            client = async_redis_client(
                self.store.settings,
                decode_responses=False,
                **self.timeouts.client_options(asynchronous=True),
            )
            self._clients[loop] = client
        return client

    async def ping(self) -> bool:
        """Whether Redis answers within the timeouts."""
        try:
            return bool(await self._client().ping())
        except (redis.RedisError, RedisClusterException, OSError):
            return False

    async def read_many(
        self, requests: Sequence[tuple[FeatureSet, Sequence[EntityKey]]]
    ) -> list[list[EntityState | None]]:
        """``RedisOnlineStore.read_many``, awaited: one pipelined round trip (two when the
        store caches states and some entity changed since it was cached).

        Raises:
            OnlineStoreError: Redis refused, failed or did not answer within the timeouts.
        """
        names = [self.store.key(fs, key) for fs, keys in requests for key in keys]
        if self.store.caching:
            tokens = await self._pipeline("hget", names, _VERSION)
            states, stale = self.store.cache_hits(names, tokens)
            if stale:
                raws = await self._pipeline("hgetall", [names[i] for i in stale])
                self.store.cache_fill(names, stale, raws, states)
        else:
            states = [decode_state(raw) for raw in await self._pipeline("hgetall", names)]
        return split_per_request(requests, states)

    async def _pipeline(self, command: str, names: list[str], *args: bytes) -> list[Any]:
        if not names:
            return []
        client = self._client()
        try:
            # A cluster client's pipeline sends each node its commands, concurrently: one
            # round trip per node however many entities.
            if len(names) == 1:  # one command: a pipeline's bookkeeping costs more than it saves
                return [await getattr(client, command)(names[0], *args)]
            pipe = client.pipeline(transaction=False)
            for name in names:
                getattr(pipe, command)(name, *args)
            return list(await pipe.execute())
        except (redis.RedisError, RedisClusterException, OSError) as exc:
            # The store's URL stays in the log (it may hold a password): the HTTP answer
            # names only the store (serving.errors).
            msg = f"reading {len(names)} entity states ({names[0]}, ...) from {self.store.url} failed: {type(exc).__name__}: {exc}"
            raise OnlineStoreError(msg) from exc

    async def close(self) -> None:
        """Close the client of the running loop (the server's, at shutdown)."""
        client = self._clients.pop(asyncio.get_running_loop(), None)
        if client is not None:
            await client.aclose()
