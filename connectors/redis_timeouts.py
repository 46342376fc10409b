"""Timeouts of a Redis client that must fail fast rather than wait for a stalled server."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import NoBackoff
from redis.retry import Retry

__all__ = ["RedisTimeouts"]


@dataclass(frozen=True)
class RedisTimeouts:
    """Bounds of every Redis command of a client that must fail fast (the API's lookups):
    a Redis that is down fails the connect after ``connect_s``, a stalled one (paused,
    swapping) the read after ``read_s``, and nothing is retried, so a caller waits at most
    about their sum before it can answer 503."""

    connect_s: float
    read_s: float

    def client_options(self, *, asynchronous: bool = False) -> dict[str, Any]:
        """Keyword arguments of ``redis.Redis`` (or of ``redis.asyncio.Redis``, whose retry
        policy is a class of its own)."""
        return {
            "socket_connect_timeout": self.connect_s,
            "socket_timeout": self.read_s,
            "retry": AsyncRetry(NoBackoff(), 0) if asynchronous else Retry(NoBackoff(), 0),
        }
