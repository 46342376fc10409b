"""Pure rendering and parsing for the local Kafka broker: no processes, no files.

Kept apart from :mod:`headwater.stack.kafka` so the exact broker configuration can be unit
tested without Java or a network.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

from headwater.stack.errors import StackConfigError

__all__ = [
    "LOG4J2_YAML",
    "MIN_JAVA",
    "SASL_MECHANISMS",
    "NodeAddress",
    "cluster_layout",
    "heap_flags",
    "host_port",
    "parse_bootstrap",
    "parse_java_version",
    "pom_kafka_version",
    "render_server_properties",
    "replication",
]

MIN_JAVA = 17
"""Kafka 4.x brokers refuse older JVMs."""

_MIB = 1024 * 1024
_XMS_MIB = 256


def parse_bootstrap(servers: str) -> tuple[str, int]:
    """The host and port of the first ``kafka.bootstrap_servers`` entry.

    The local broker listens there, so ``up`` and every client agree on one setting.
    Accepts ``host:port``, ``PLAINTEXT://host:port`` and ``[ipv6]:port``.

    Raises:
        StackConfigError: when the entry has no usable host and port.
    """
    first = servers.split(",", 1)[0].strip()
    entry = first.split("://", 1)[-1]
    match = re.fullmatch(r"\[(?P<v6>[^\]]+)\]:(?P<p6>\d+)|(?P<host>[^:\[\]]+):(?P<port>\d+)", entry)
    if match is None:
        msg = (
            f"kafka.bootstrap_servers entry {first!r} is not host:port: "
            "set HEADWATER_KAFKA__BOOTSTRAP_SERVERS=127.0.0.1:9092"
        )
        raise StackConfigError(msg)
    host = match["v6"] or match["host"]
    port = int(match["p6"] or match["port"])
    if not 0 < port < 65536:
        msg = f"kafka.bootstrap_servers port {port} is out of range: use a port in 1-65535"
        raise StackConfigError(msg)
    return host, port


def host_port(host: str, port: int) -> str:
    """``host:port`` with brackets around IPv6 addresses, as Kafka listeners expect."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


@dataclass(frozen=True)
class NodeAddress:
    """Where one KRaft node (broker and controller in one process) listens."""

    node_id: int
    host: str
    port: int
    controller_port: int

    @property
    def address(self) -> str:
        return host_port(self.host, self.port)


def cluster_layout(bootstrap_servers: str, controller_port: int, brokers: int) -> list[NodeAddress]:
    """The nodes of a local cluster of ``brokers`` nodes: node ``k`` (from 1) listens at the
    first bootstrap port + 2(k-1), its controller at ``controller_port`` + 2(k-1).

    With the defaults that is 9092/9093, 9094/9095, 9096/9097: one setting pair describes the
    whole cluster, and a single node keeps the addresses it always had.

    Raises:
        StackConfigError: when two listeners would share a port or a port is out of range.
    """
    host, port = parse_bootstrap(bootstrap_servers)
    nodes = [
        NodeAddress(k + 1, host, port + 2 * k, controller_port + 2 * k) for k in range(brokers)
    ]
    ports = [p for n in nodes for p in (n.port, n.controller_port)]
    if max(ports) > 65535:
        msg = (
            f"{brokers} Kafka nodes from port {port} need ports up to {max(ports)}, beyond 65535: "
            "set HEADWATER_KAFKA__BOOTSTRAP_SERVERS and HEADWATER_STACK__CONTROLLER_PORT lower"
        )
        raise StackConfigError(msg)
    if len(set(ports)) != len(ports):
        msg = (
            f"{brokers} Kafka nodes from broker port {port} and controller port "
            f"{controller_port} would share ports (node k uses both + 2(k-1)): set "
            "HEADWATER_STACK__CONTROLLER_PORT to the broker port + 1 (the default 9092/9093)"
        )
        raise StackConfigError(msg)
    return nodes


def parse_java_version(output: str) -> int | None:
    """The major Java version from ``java -version`` output (``1.8`` counts as 8).

    Returns:
        The major version, or ``None`` when the output is not recognisable.
    """
    match = re.search(r'version "(\d+)(?:\.(\d+))?', output)
    if match is None:
        return None
    major = int(match[1])
    if major == 1 and match[2] is not None:
        return int(match[2])
    return major


def heap_flags(heap: str) -> list[str]:
    """``-Xms``/``-Xmx`` flags for ``stack.kafka_heap``, never with Xms above Xmx.

    The JVM refuses to start when the initial heap exceeds the maximum, so a small configured
    heap lowers ``-Xms`` to match instead of failing at launch.

    Raises:
        StackConfigError: when ``heap`` is not a JVM size such as ``768m`` or ``1g``.
    """
    match = re.fullmatch(r"(\d+)([kKmMgG]?)", heap.strip())
    if match is None or int(match[1]) == 0:
        msg = f"stack.kafka_heap {heap!r} is not a JVM size: use e.g. 768m or 1g"
        raise StackConfigError(msg)
    scale = {"": 1, "k": 1024, "m": _MIB, "g": 1024 * _MIB}[match[2].lower()]
    size = int(match[1]) * scale
    if size < 64 * _MIB:
        msg = f"stack.kafka_heap {heap!r} is too small for a Kafka broker: use at least 256m"
        raise StackConfigError(msg)
    xms = f"{_XMS_MIB}m" if size >= _XMS_MIB * _MIB else heap.strip()
    return [f"-Xms{xms}", f"-Xmx{heap.strip()}"]


def pom_kafka_version(pom: Path) -> str:
    """The ``kafka.version`` property of the pom, so the jar cache is keyed by what it pins."""
    ns = {"m": "http://maven.apache.org/POM/4.0.0"}
    node = ET.parse(pom).getroot().find("m:properties/m:kafka.version", ns)
    if node is None or not (node.text or "").strip():
        msg = f"{pom} has no <kafka.version> property: restore it from the Headwater sources"
        raise StackConfigError(msg)
    return (node.text or "").strip()


def _escape(value: str) -> str:
    # java.util.Properties treats backslash as an escape character in values.
    return value.replace("\\", "\\\\")


SASL_MECHANISMS = ("PLAIN", "SCRAM-SHA-512")
"""What the secure broker's client listener accepts: SCRAM for Headwater's clients, PLAIN
for the broker's own identity (inter-broker, controller, and the admin that creates users)."""


def _plain_jaas(user: str, password: str) -> str:
    # The broker logs in as ``user`` and accepts exactly that one PLAIN user; SCRAM users
    # live in the cluster metadata (created with the admin API, never on a command line).
    return (
        "org.apache.kafka.common.security.plain.PlainLoginModule required "
        f'username="{user}" password="{password}" user_{user}="{password}";'
    )


def _sasl_settings(broker: str, controller: str, admin: tuple[str, str]) -> dict[str, str]:
    """Listeners of the secure broker: both SASL_PLAINTEXT on loopback, the broker and the
    controller authenticating to each other with the PLAIN admin identity."""
    jaas = _plain_jaas(*admin)
    scram = "org.apache.kafka.common.security.scram.ScramLoginModule required;"
    return {
        "listeners": f"SASL_PLAINTEXT://{broker},CONTROLLER://{controller}",
        "advertised.listeners": f"SASL_PLAINTEXT://{broker},CONTROLLER://{controller}",
        "inter.broker.listener.name": "SASL_PLAINTEXT",
        "listener.security.protocol.map": "CONTROLLER:SASL_PLAINTEXT,SASL_PLAINTEXT:SASL_PLAINTEXT",
        "sasl.enabled.mechanisms": ",".join(SASL_MECHANISMS),
        "sasl.mechanism.inter.broker.protocol": "PLAIN",
        "sasl.mechanism.controller.protocol": "PLAIN",
        "listener.name.sasl_plaintext.plain.sasl.jaas.config": jaas,
        "listener.name.sasl_plaintext.scram-sha-512.sasl.jaas.config": scram,
        "listener.name.controller.sasl.enabled.mechanisms": "PLAIN",
        "listener.name.controller.plain.sasl.jaas.config": jaas,
    }


def replication(brokers: int) -> tuple[int, int]:
    """(replication factor, min.insync.replicas) of a local cluster of ``brokers`` nodes:
    three copies at most, and writes acknowledged by all in-sync copies keep working with one
    node down (``acks=all`` then waits for at least two copies from three nodes)."""
    factor = min(3, brokers)
    return factor, max(1, factor - 1)


def render_server_properties(
    *,
    host: str,
    port: int,
    controller_port: int,
    data_dir: Path,
    sasl_admin: tuple[str, str] | None = None,
    node_id: int = 1,
    voters: list[NodeAddress] | None = None,
) -> str:
    """server.properties of a KRaft broker+controller on ``host``: a single node, or node
    ``node_id`` of the static quorum ``voters`` (two or more nodes).

    One partition for internal topics and few threads make the first consumer group and
    transaction fast on a small machine. A single node can only keep one copy of anything;
    a cluster keeps ``replication(len(voters))`` for internal topics and, by default, for the
    topics clients create.

    With ``sasl_admin`` (user, password) every listener requires SASL (``SASL_MECHANISMS``)
    and the broker's own identity is that PLAIN user: the file then holds a password and
    must be written with mode 0600.
    """
    broker = host_port(host, port)
    controller = host_port(host, controller_port)
    if voters is not None and len(voters) > 1:
        quorum = {
            "controller.quorum.voters": ",".join(
                f"{v.node_id}@{host_port(v.host, v.controller_port)}" for v in voters
            )
        }
        factor, min_isr = replication(len(voters))
        # A node that stops heartbeating is fenced (and leaves every in-sync replica set, so
        # acks=all writes go on with the others) after 6 s instead of Kafka's 9.
        quorum["broker.heartbeat.interval.ms"] = "1000"
        quorum["broker.session.timeout.ms"] = "6000"
    else:
        quorum = {"controller.quorum.bootstrap.servers": controller}
        factor, min_isr = 1, 1
    listeners = {
        "listeners": f"PLAINTEXT://{broker},CONTROLLER://{controller}",
        "advertised.listeners": f"PLAINTEXT://{broker},CONTROLLER://{controller}",
        "inter.broker.listener.name": "PLAINTEXT",
        "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
    }
    if sasl_admin is not None:
        listeners = _sasl_settings(broker, controller, sasl_admin)
    settings = {
        "process.roles": "broker,controller",
        "node.id": str(node_id),
        **quorum,
        "controller.listener.names": "CONTROLLER",
        **listeners,
        "log.dirs": _escape(str(data_dir)),
        "num.partitions": "1",
        "auto.create.topics.enable": "true",
        "default.replication.factor": str(factor),
        "min.insync.replicas": str(min_isr),
        "offsets.topic.replication.factor": str(factor),
        "offsets.topic.num.partitions": "1",
        "transaction.state.log.replication.factor": str(factor),
        "transaction.state.log.min.isr": str(min_isr),
        "transaction.state.log.num.partitions": "1",
        "share.coordinator.state.topic.replication.factor": str(factor),
        "share.coordinator.state.topic.min.isr": str(min_isr),
        "group.initial.rebalance.delay.ms": "0",
        "num.network.threads": "2",
        "num.io.threads": "4",
    }
    header = "# Written by `headwater up`; edits are overwritten on the next start.\n"
    return header + "".join(f"{key}={value}\n" for key, value in settings.items())


LOG4J2_YAML = """\
# Written by `headwater up`. Everything goes to server.log; warnings and errors also go to
# stdout, which `up` captures in kafka.out and shows when the broker fails to start.
Configuration:
  Properties:
    Property:
      - name: "logPattern"
        value: "[%d] %p %m (%c)%n"
  Appenders:
    Console:
      name: STDOUT
      PatternLayout:
        pattern: "${logPattern}"
    RollingFile:
      - name: KafkaAppender
        fileName: "${sys:kafka.logs.dir}/server.log"
        filePattern: "${sys:kafka.logs.dir}/server.log.%i"
        PatternLayout:
          pattern: "${logPattern}"
        Policies:
          SizeBasedTriggeringPolicy:
            size: "10MB"
        DefaultRolloverStrategy:
          max: 5
  Loggers:
    Root:
      level: INFO
      AppenderRef:
        - ref: KafkaAppender
        - ref: STDOUT
          level: WARN
"""
"""Log4j2 configuration of the broker (Kafka 4.x logs through Log4j2 only)."""
