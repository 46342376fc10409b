"""The one way Headwater connects to Redis: URL, ACL user, password and TLS from settings.

Every Redis client of the project (online store, ``headwater up``'s readiness check, the
demo) is made by ``redis_client`` or ``async_redis_client``, so a password or TLS setting
applies to all of them, and messages name the server by ``redis_display``, which never shows
a password. With ``redis.cluster`` they are Redis Cluster clients (``redis.cluster``), seeded
by the URL's node: each key goes to the primary owning its slot, redirections (``MOVED``,
``ASK``) and failovers are followed, and pipelines are sent per node.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import redis
import redis.asyncio
import redis.asyncio.cluster
import redis.cluster

from headwater.schemas.redaction import redact_url
from headwater.schemas.settings import RedisSettings

__all__ = [
    "AsyncRedisClient",
    "SyncRedisClient",
    "async_redis_client",
    "delete_keys",
    "redis_client",
    "redis_display",
]

SyncRedisClient = redis.Redis | redis.cluster.RedisCluster
"""A standalone client, or a cluster client (``redis.cluster``)."""
AsyncRedisClient = redis.asyncio.Redis | redis.asyncio.cluster.RedisCluster


def redis_client(settings: RedisSettings, **options: Any) -> SyncRedisClient:
    """A client for ``settings.url`` authenticating as ``username``/``password`` and, for
    ``rediss://`` URLs, verifying the server with the ``ssl_*`` files; a cluster client
    when ``settings.cluster``.

    ``options`` are further client arguments (timeouts, ``retry``, ``decode_responses``).
    """
    kwargs = _connection_options(settings, options)
    if settings.cluster:
        seeds = [redis.cluster.ClusterNode(*_host_port(n)) for n in settings.cluster_nodes]  # type: ignore[no-untyped-call]
        return redis.cluster.RedisCluster.from_url(
            _cluster_url(settings.url), startup_nodes=seeds, **kwargs
        )
    return redis.Redis.from_url(settings.url, **kwargs)


def async_redis_client(settings: RedisSettings, **options: Any) -> AsyncRedisClient:
    """``redis_client``'s asyncio twin (same identity and TLS), for code on an event loop."""
    kwargs = _connection_options(settings, options)
    if settings.cluster:
        seeds = [redis.asyncio.cluster.ClusterNode(*_host_port(n)) for n in settings.cluster_nodes]
        return redis.asyncio.cluster.RedisCluster.from_url(
            _cluster_url(settings.url), startup_nodes=seeds, **kwargs
        )
    return redis.asyncio.Redis.from_url(settings.url, **kwargs)


def _host_port(node: str) -> tuple[str, int]:
    host, _, port = node.rpartition(":")
    return host, int(port)


def _cluster_url(url: str) -> str:
    """The seed node's URL without a database (a cluster client refuses ``db``)."""
    scheme, _, rest = url.partition("://")
    return f"{scheme}://{rest.split('/', 1)[0]}"


def _connection_options(settings: RedisSettings, options: dict[str, Any]) -> dict[str, Any]:
    """``from_url`` keyword arguments: ``options`` plus the credentials and TLS files."""
    kwargs: dict[str, Any] = dict(options)
    if settings.username is not None:
        kwargs["username"] = settings.username
    if settings.password is not None:
        kwargs["password"] = settings.password.get_secret_value()
    if settings.url.startswith("rediss://"):
        kwargs["ssl_check_hostname"] = settings.ssl_check_hostname
        if settings.ssl_ca_certs is not None:
            kwargs["ssl_ca_certs"] = str(settings.ssl_ca_certs)
        if settings.ssl_certfile is not None:
            kwargs["ssl_certfile"] = str(settings.ssl_certfile)
            kwargs["ssl_keyfile"] = str(settings.ssl_keyfile)
    return kwargs


def delete_keys(client: SyncRedisClient, names: Sequence[str | bytes]) -> int:
    """Delete ``names`` (any slots) in batches of 1,000; returns how many existed. A cluster
    gets one ``DEL`` per key, pipelined per node (a multi-key ``DEL`` must stay in one slot)."""
    deleted = 0
    for start in range(0, len(names), 1000):
        batch = names[start : start + 1000]
        if isinstance(client, redis.cluster.RedisCluster):
            pipe = client.pipeline(transaction=False)  # type: ignore[no-untyped-call]
            for name in batch:
                pipe.delete(name)
            deleted += sum(int(n) for n in pipe.execute())
        else:
            deleted += int(client.delete(*batch))
    return deleted


def redis_display(settings: RedisSettings) -> str:
    """How messages name the server: its URL with any password masked, the ACL user, and
    ``(cluster)`` for a Redis Cluster."""
    shown = redact_url(settings.url)
    if settings.username:
        shown = f"{shown} (user {settings.username})"
    return f"{shown} (cluster)" if settings.cluster else shown
