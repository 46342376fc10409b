"""A 3-node KRaft Kafka cluster of the test session's own (``headwater up --kafka-brokers 3``'s
code), started on free loopback ports when a test first asks for it and stopped, by pid, at
the end of the session.

Tests that kill a node must start it again (``KafkaCluster.restore``) before they end, so the
next test finds three.
"""

from __future__ import annotations

import os
import random
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from headwater.connectors.kafka import admin_client
from headwater.schemas.settings import Settings, load_settings
from headwater.stack import process
from headwater.stack.kafka import cluster_bootstrap, start_kafka_nodes, stop_kafka_nodes

__all__ = ["KafkaCluster", "kafka_cluster"]

NODES = 3


def _free_run(count: int, attempts: int = 50) -> int:
    """The first of ``count`` consecutive loopback ports that are all free right now."""
    rng = random.Random(os.getpid())
    for _ in range(attempts):
        base = rng.randrange(20_000, 60_000 - count)
        sockets = []
        try:
            for port in range(base, base + count):
                sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                sockets.append(sock)
                sock.bind(("127.0.0.1", port))
        except OSError:
            continue
        finally:
            for sock in sockets:
                sock.close()
        return base
    raise AssertionError(f"no run of {count} free ports found")


@dataclass
class KafkaCluster:
    """The cluster's settings (``kafka.bootstrap_servers`` names every node) and node pids."""

    settings: Settings
    pids: dict[str, int]

    @property
    def bootstrap(self) -> str:
        return self.settings.kafka.bootstrap_servers

    def pid_of_broker(self, broker_id: int) -> int:
        return self.pids[f"kafka-{broker_id}"]

    def kill(self, broker_id: int) -> None:
        """kill -9 one node: no shutdown, no handing over of leadership."""
        pid = self.pid_of_broker(broker_id)
        os.kill(pid, 9)
        process.wait_until(lambda: not process.pid_alive(pid), 30)

    def restore(self) -> None:
        """Start the nodes that are down (the same code as ``headwater up``) and wait until
        all three are back in every partition's in-sync replicas."""
        for status in start_kafka_nodes(self.settings):
            if status.pid is not None:
                self.pids[status.name] = status.pid
        admin = admin_client(self.settings.kafka)

        def in_sync() -> bool:
            topics = admin.list_topics(timeout=10).topics.values()
            return len(admin.list_topics(timeout=10).brokers) == NODES and all(
                len(p.isrs) == len(p.replicas) for t in topics for p in t.partitions.values()
            )

        assert process.wait_until(in_sync, 120, 0.5), "the cluster did not get back in sync"


@pytest.fixture(scope="session")
def kafka_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KafkaCluster]:
    base = _free_run(2 * NODES)
    home = tmp_path_factory.mktemp("headwater-kafka-cluster")
    layout = load_settings(
        home=home,
        kafka={"bootstrap_servers": f"127.0.0.1:{base}"},
        stack={"controller_port": base + 1, "kafka_brokers": NODES, "kafka_heap": "512m"},
    )
    settings = load_settings(
        home=home,
        kafka={"bootstrap_servers": cluster_bootstrap(layout)},
        stack={"controller_port": base + 1, "kafka_brokers": NODES, "kafka_heap": "512m"},
    )
    began = time.monotonic()
    statuses = start_kafka_nodes(settings)
    try:
        assert [s.state for s in statuses] == ["started"] * NODES, statuses
        pids = {s.name: s.pid for s in statuses if s.pid is not None}
        print(
            f"\n3-node Kafka cluster at {settings.kafka.bootstrap_servers} in "
            f"{time.monotonic() - began:.1f} s"
        )
        yield KafkaCluster(settings, pids)
    finally:
        stop_kafka_nodes(settings)
