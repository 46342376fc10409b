"""Where the nodes of the local Kafka stack listen and keep their files.

A single broker lives in ``<home>/stack/kafka`` (pid file ``kafka.pid``), as it always has;
node ``k`` of a ``stack.kafka_brokers`` cluster in ``<home>/stack/kafka-<k>``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from headwater.schemas.settings import Settings
from headwater.stack.kafka_config import NodeAddress, cluster_layout

__all__ = [
    "KafkaNode",
    "KafkaPaths",
    "cluster_bootstrap",
    "kafka_nodes",
    "kafka_paths",
    "stack_dir",
]


@dataclass(frozen=True)
class KafkaPaths:
    """Where the broker's configuration, data, logs and pid file live under ``home``."""

    root: Path
    pid_file: Path

    @property
    def server_properties(self) -> Path:
        return self.root / "server.properties"

    @property
    def log4j2(self) -> Path:
        return self.root / "log4j2.yaml"

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    @property
    def logs_dir(self) -> Path:
        return self.root / "logs"

    @property
    def console_log(self) -> Path:
        return self.logs_dir / "kafka.out"

    @property
    def lock_file(self) -> Path:
        return self.pid_file.with_suffix(".lock")


def stack_dir(settings: Settings) -> Path:
    """``<home>/stack``, absolute: the JVM may not share our working directory."""
    return settings.home.expanduser().resolve() / "stack"


def kafka_paths(settings: Settings, node_id: int | None = None) -> KafkaPaths:
    """The paths of the single broker, or of node ``node_id`` of a cluster."""
    stack = stack_dir(settings)
    name = "kafka" if node_id is None else f"kafka-{node_id}"
    return KafkaPaths(root=stack / name, pid_file=stack / f"{name}.pid")


@dataclass(frozen=True)
class KafkaNode:
    """One broker+controller process of the local stack: where it listens, where it lives."""

    at: NodeAddress
    paths: KafkaPaths
    voters: list[NodeAddress]


def kafka_nodes(settings: Settings) -> list[KafkaNode]:
    """The nodes ``up`` runs for these settings (``stack.kafka_brokers`` of them)."""
    layout = cluster_layout(
        settings.kafka.bootstrap_servers,
        settings.stack.controller_port,
        settings.stack.kafka_brokers,
    )
    single = len(layout) == 1
    return [
        KafkaNode(n, kafka_paths(settings, None if single else n.node_id), layout) for n in layout
    ]


def cluster_bootstrap(settings: Settings) -> str:
    """``bootstrap.servers`` naming every node of the local stack, so that a client starting
    while one node is down still finds the others."""
    return ",".join(node.at.address for node in kafka_nodes(settings))
