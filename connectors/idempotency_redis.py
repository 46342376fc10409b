"""Answers of requests made with an ``Idempotency-Key``, kept in Redis for a while.

A client that got no answer (a timeout, a dropped connection) cannot tell whether its push
was accepted; it retries with the same ``Idempotency-Key`` and must get the first answer
rather than have its events produced twice. The first request with a key claims it
(``SET NX``, marked in flight with a short expiry, so a server that dies mid-request does not
lock the key for good); its answer then replaces the mark for ``ttl_s``. A retry finds the
answer and is given it, or finds the mark and is told to retry shortly. An answer that asks
for a retry (503: nothing was written) releases the key instead, so the retry runs.

Keys are ``<prefix>:idem:<source>:<sha256(caller, key)>``: per caller and per source, and the
raw key and caller credentials are never stored. The stored answer carries a hash of the
request body: the same key with another body is refused rather than answered with someone
else's result.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Literal

import orjson
import redis
from redis.exceptions import RedisClusterException

from headwater.connectors.errors import OnlineStoreError
from headwater.connectors.online_redis_async import AsyncRedisReader

__all__ = ["Claim", "RedisIdempotency"]

IN_FLIGHT_TTL_S = 60
"""How long a claimed key without an answer stays locked (longer than any push takes)."""


@dataclass(frozen=True)
class Claim:
    """The outcome of claiming a key: ``new`` (go ahead, then ``complete`` or ``release``),
    ``replay`` (answer ``status`` and ``body``), ``in_flight`` or ``mismatch`` (the key was
    used with another body)."""

    state: Literal["new", "replay", "in_flight", "mismatch"]
    status: int = 0
    body: bytes = b""


class RedisIdempotency:
    def __init__(self, reader: AsyncRedisReader, prefix: str, ttl_s: int) -> None:
        self._reader = reader
        self._prefix = prefix
        self._ttl_s = ttl_s

    def key(self, source: str, caller: str, idempotency_key: str) -> str:
        digest = hashlib.sha256(f"{caller}\0{idempotency_key}".encode()).hexdigest()
        return f"{self._prefix}:idem:{source}:{digest}"

    async def claim(self, key: str, fingerprint: str) -> Claim:
        """Claim ``key`` for a request whose body hashes to ``fingerprint``."""
        mark = orjson.dumps({"state": "in_flight", "body": fingerprint})
        client = self._reader.client()
        try:
            if await client.set(key, mark, nx=True, ex=IN_FLIGHT_TTL_S):
                return Claim("new")
            raw = await client.get(key)
        except (redis.RedisError, RedisClusterException, OSError) as exc:
            raise OnlineStoreError(f"idempotency key {key}: {type(exc).__name__}: {exc}") from exc
        if raw is None:  # expired between the two calls: claim it again
            return await self.claim(key, fingerprint)
        stored = orjson.loads(raw)
        if stored.get("body") != fingerprint:
            return Claim("mismatch")
        if stored["state"] == "in_flight":
            return Claim("in_flight")
        return Claim("replay", int(stored["status"]), stored["answer"].encode())

    async def complete(self, key: str, fingerprint: str, status: int, body: bytes) -> None:
        """Keep the answer of the request that claimed ``key`` for ``ttl_s``."""
        answer = {"state": "done", "body": fingerprint, "status": status, "answer": body.decode()}
        try:
            await self._reader.client().set(key, orjson.dumps(answer), ex=self._ttl_s)
        except (redis.RedisError, RedisClusterException, OSError) as exc:
            raise OnlineStoreError(f"idempotency key {key}: {type(exc).__name__}: {exc}") from exc

    async def release(self, key: str) -> None:
        """Forget the claim: the request wrote nothing, and a retry must run again."""
        try:
            await self._reader.client().delete(key)
        except (redis.RedisError, RedisClusterException, OSError):
            pass  # the in-flight mark expires on its own
