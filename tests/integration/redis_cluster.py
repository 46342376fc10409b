"""A session's Redis Cluster: six redis-servers (three primaries, three replicas) started with
the ``headwater.stack`` code (as ``headwater up --redis-cluster`` starts them) on six free
consecutive loopback ports, under a session temp ``home``, and stopped by the pids they
recorded when the session ends. Tests may kill a node (its pid file names it) and start it
again with ``start_redis_cluster``, which rejoins it to the cluster.
"""

from __future__ import annotations

import random
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from headwater.schemas.settings import Settings, load_settings
from headwater.stack import start_redis_cluster, stop_redis_cluster
from headwater.stack.errors import PortInUseError, ServiceStartError
from headwater.stack.redis_cluster import CLUSTER_NODES

__all__ = ["NODE_TIMEOUT_MS", "cluster_settings", "consecutive_free_ports", "redis_cluster"]

NODE_TIMEOUT_MS = 2000
"""``cluster-node-timeout`` of the test cluster: a killed primary's replica takes over
within a few seconds."""


def _ephemeral_low() -> int:
    """The lowest local port Linux hands to client connections (32768 by default)."""
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32_768


def consecutive_free_ports(count: int) -> int:
    """The first of ``count`` consecutive loopback ports that were all free a moment ago,
    with the ``count`` ports 10000 above them (the nodes' cluster bus).

    All below the ephemeral range: there a client connection's local port can take a
    node's port between this check and the node's start."""
    rng = random.Random()
    top = max(_ephemeral_low() - 10_000 - count, 12_000)
    for _ in range(200):
        base = rng.randrange(10_000, top)
        sockets = []
        try:
            # Each node's cluster bus listens 10000 above its port.
            for port in [*range(base, base + count), *range(base + 10_000, base + 10_000 + count)]:
                sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                sockets.append(sock)
                sock.bind(("127.0.0.1", port))
            return base
        except OSError:
            continue
        finally:
            for sock in sockets:
                sock.close()
    raise AssertionError(f"no {count} consecutive free ports found")


def cluster_settings(home: object, base: int) -> Settings:
    return load_settings(
        home=home,
        redis={
            "url": f"redis://127.0.0.1:{base}",
            "cluster": True,
            # Any node finds the cluster: a test may kill the URL's.
            "cluster_nodes": [f"127.0.0.1:{base + i}" for i in range(1, CLUSTER_NODES)],
        },
        stack={"redis_cluster_node_timeout_ms": NODE_TIMEOUT_MS},
    )


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    """Settings (``redis.url`` = the first node, ``redis.cluster``) of a Redis Cluster of
    our own, ready: every slot served, a replica in sync per primary."""
    home = tmp_path_factory.mktemp("headwater-redis-cluster")
    for attempt in range(1, 4):
        settings = cluster_settings(home, consecutive_free_ports(CLUSTER_NODES))
        try:
            start_redis_cluster(settings)
            break
        except (PortInUseError, ServiceStartError):
            stop_redis_cluster(settings)
            if attempt == 3:
                raise
    try:
        yield settings
    finally:
        stop_redis_cluster(settings)
