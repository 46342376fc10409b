"""Checks of the Redis servers behind the online store: durability and eviction policy.

For a Redis Cluster every node is asked (each primary keeps its own slots, and a replica
becomes a primary in a failover), and the first node that fails a check names the problem.
"""

from __future__ import annotations

from collections.abc import Iterator

import redis
import redis.cluster

from headwater.connectors.errors import OnlineStoreEvictionError
from headwater.connectors.redis_client import SyncRedisClient

__all__ = ["check_no_eviction", "durability_problem", "servers"]


def servers(client: SyncRedisClient, url: str) -> Iterator[tuple[redis.Redis, str]]:
    """Each server of ``client`` (every node of a cluster) and how messages name it."""
    if isinstance(client, redis.cluster.RedisCluster):
        for node in client.get_nodes():  # type: ignore[no-untyped-call]
            yield client.get_redis_connection(node), f"{url} node {node.name}"
    else:
        yield client, url


def durability_problem(client: SyncRedisClient, url: str) -> str | None:
    """Why a server would lose acknowledged states when it restarts, or ``None`` (see
    ``RedisOnlineStore.durability_problem``)."""
    for server, name in servers(client, url):
        try:
            config = server.config_get("append*")
        except redis.RedisError:
            continue
        appendonly, appendfsync = config.get("appendonly"), config.get("appendfsync")
        if appendonly == "yes" and appendfsync == "always":
            continue
        return (
            f"Redis at {name} runs with appendonly={appendonly} appendfsync={appendfsync}: "
            "a restart of it loses online state the workers already acknowledged, and features "
            "come back short; run it with --appendonly yes --appendfsync always "
            "(as `headwater up` and docker-compose.yml do)"
        )
    return None


def check_no_eviction(client: SyncRedisClient, url: str) -> str | None:
    """``RedisOnlineStore.check_no_eviction`` for every server of ``client``."""
    warnings = []
    for server, name in servers(client, url):
        try:
            policy = server.config_get("maxmemory-policy").get("maxmemory-policy")
        except redis.ResponseError as exc:
            warnings.append(
                f"cannot check the maxmemory-policy of the Redis at {name} ({exc}): make sure "
                "it is noeviction, or Redis may delete entity states silently when it is full"
            )
            continue
        except redis.RedisError as exc:
            warnings.append(
                f"Redis at {name} did not answer ({exc}); its maxmemory-policy is unchecked"
            )
            continue
        if policy == "noeviction":
            continue
        msg = (
            f"Redis at {name} runs with maxmemory-policy {policy}: when it is full it deletes "
            "entity states silently and features come back wrong; run "
            "`redis-cli CONFIG SET maxmemory-policy noeviction` and `redis-cli CONFIG REWRITE` "
            "(or set `maxmemory-policy noeviction` in redis.conf), then start the worker again"
        )
        raise OnlineStoreEvictionError(msg)
    return "; ".join(warnings) if warnings else None
