"""A KRaft Kafka broker, or a cluster of them, run straight from Maven Central jars (no
Docker, no tarball).

``start_kafka`` reuses whatever already answers at ``kafka.bootstrap_servers``; otherwise it
resolves the broker jars once into ``stack.cache_dir``, writes the configuration under
``<home>/stack/kafka`` (``kafka-<k>`` per node of a ``stack.kafka_brokers`` cluster), formats
storage once and launches ``kafka.Kafka`` detached. A cluster is one static KRaft quorum: every
node is broker and controller, so any one of three may fail.
"""

from __future__ import annotations

import logging
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from confluent_kafka import KafkaException

from headwater.connectors.kafka import client_config, shared_admin
from headwater.schemas.settings import KafkaSettings, Settings
from headwater.stack import process
from headwater.stack.errors import PortInUseError, ServiceStartError
from headwater.stack.kafka_config import LOG4J2_YAML, heap_flags, render_server_properties
from headwater.stack.kafka_nodes import (
    KafkaNode,
    KafkaPaths,
    cluster_bootstrap,
    kafka_nodes,
    kafka_paths,
    stack_dir,
)
from headwater.stack.secrets import stack_secret, write_private
from headwater.stack.secure import KAFKA_ADMIN_USER, admin_kafka, ensure_scram_user
from headwater.stack.status import ServiceState, ServiceStatus
from headwater.stack.toolchain import check_java, resolve_jars

__all__ = [
    "KafkaNode",
    "KafkaPaths",
    "cluster_bootstrap",
    "kafka_answers",
    "kafka_nodes",
    "kafka_paths",
    "start_kafka",
    "start_kafka_nodes",
    "stop_kafka",
    "stop_kafka_nodes",
]

log = logging.getLogger(__name__)

# librdkafka reports every refused connection while we poll for readiness; that is expected
# noise, so its log records go to a logger that nothing prints.
_rdkafka_log = logging.getLogger("headwater.stack.rdkafka")
_rdkafka_log.addHandler(logging.NullHandler())
_rdkafka_log.propagate = False


def _write_config(settings: Settings, node: KafkaNode) -> None:
    paths = node.paths
    for directory in (paths.data_dir, paths.logs_dir):
        directory.mkdir(parents=True, exist_ok=True)
    sasl_admin = None
    if settings.stack.secure:
        sasl_admin = (KAFKA_ADMIN_USER, stack_secret(settings, "kafka-admin"))
    # 0600: with stack.secure it holds the broker's password (its JAAS configuration).
    write_private(
        paths.server_properties,
        render_server_properties(
            host=node.at.host,
            port=node.at.port,
            controller_port=node.at.controller_port,
            data_dir=paths.data_dir,
            sasl_admin=sasl_admin,
            node_id=node.at.node_id,
            voters=node.voters,
        ),
    )
    paths.log4j2.write_text(LOG4J2_YAML)


def _jvm_base(java: str, libs: Path, paths: KafkaPaths) -> list[str]:
    return [
        java,
        f"-Dlog4j2.configurationFile={paths.log4j2}",
        f"-Dkafka.logs.dir={paths.logs_dir}",
        "-cp",
        f"{libs}/*",
    ]


def _format_storage(java: str, libs: Path, node: KafkaNode, cluster_id: str | None) -> None:
    """Format the KRaft log directory once; a formatted one has ``meta.properties``.

    A single node formats itself as a standalone quorum; the nodes of a cluster share
    ``cluster_id`` and find each other through ``controller.quorum.voters``.
    """
    paths = node.paths
    if (paths.data_dir / "meta.properties").is_file():
        return
    tool = [*_jvm_base(java, libs, paths), "kafka.tools.StorageTool"]
    if cluster_id is None:
        cluster_id = _random_cluster_id(tool, libs)
        mode = ["--standalone"]
    else:
        mode = []
    fmt = subprocess.run(
        [
            *tool,
            "format",
            *mode,
            "--ignore-formatted",
            "-t",
            cluster_id,
            "-c",
            str(paths.server_properties),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if fmt.returncode != 0:
        msg = (
            f"formatting Kafka storage in {paths.data_dir} failed: delete that directory and "
            f"retry ({(fmt.stderr or fmt.stdout).strip()[-300:]})"
        )
        raise ServiceStartError(msg)


def _random_cluster_id(tool: list[str], libs: Path) -> str:
    uuid = subprocess.run(
        [*tool, "random-uuid"], capture_output=True, text=True, timeout=120, check=False
    )
    cluster_id = uuid.stdout.strip().splitlines()[-1] if uuid.stdout.strip() else ""
    if uuid.returncode != 0 or not cluster_id:
        msg = (
            f"Kafka StorageTool random-uuid failed: delete {libs.parent} to re-fetch the "
            f"jars ({(uuid.stderr or uuid.stdout).strip()[-300:]})"
        )
        raise ServiceStartError(msg)
    return cluster_id


def _cluster_id(settings: Settings, java: str, libs: Path, nodes: list[KafkaNode]) -> str | None:
    """The id every node of a cluster is formatted with, kept beside the nodes' directories
    (``None`` for a single node, which makes its own)."""
    if len(nodes) == 1:
        return None
    path = stack_dir(settings) / "kafka-cluster.id"
    if path.is_file() and path.read_text().strip():
        return path.read_text().strip()
    cluster_id = _random_cluster_id(
        [*_jvm_base(java, libs, nodes[0].paths), "kafka.tools.StorageTool"], libs
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(cluster_id + "\n")
    return cluster_id


def kafka_answers(
    bootstrap: str, timeout_s: float = 1.0, *, kafka: KafkaSettings | None = None
) -> bool:
    """Whether a Kafka broker at ``bootstrap`` returns cluster metadata with a broker in it
    (authenticating as ``kafka``'s identity when given)."""
    return _broker_count(bootstrap, timeout_s, kafka=kafka) > 0


def _broker_count(
    bootstrap: str, timeout_s: float = 1.0, *, kafka: KafkaSettings | None = None
) -> int:
    """How many brokers the cluster metadata from ``bootstrap`` lists (0: no answer)."""
    config: dict[str, Any] = {
        **(client_config(kafka) if kafka is not None else {}),
        "bootstrap.servers": bootstrap,
        "socket.connection.setup.timeout.ms": max(1000, int(timeout_s * 1000)),
        "logger": _rdkafka_log,
    }
    admin = shared_admin(config)
    try:
        return len(admin.list_topics(timeout=timeout_s).brokers)
    except KafkaException:
        return 0


def _probe_identity(settings: Settings) -> KafkaSettings | None:
    """Who ``up`` is when it checks the broker: the admin on a secure stack, nobody else."""
    return admin_kafka(settings) if settings.stack.secure else None


def _ready(settings: Settings, node: KafkaNode) -> bool:
    """The node answers and sees the whole cluster (every node registered as a broker)."""
    # A TCP probe first keeps librdkafka from retrying against a port nobody listens on.
    return process.port_open(node.at.host, node.at.port) and _broker_count(
        node.at.address, kafka=_probe_identity(settings)
    ) >= len(node.voters)


def _await_launched(launched: list[tuple[KafkaNode, int]], settings: Settings) -> None:
    """Wait for the nodes we just launched; on failure stop them all and quote a log."""
    timeout = settings.stack.start_timeout_s

    def settled() -> bool:
        return any(not process.pid_alive(pid) for _, pid in launched) or all(
            _ready(settings, node) for node, _ in launched
        )

    ok = process.wait_until(settled, timeout, 0.25)
    if ok and all(process.pid_alive(pid) for _, pid in launched):
        return
    failed = next((node for node, pid in launched if not process.pid_alive(pid)), None)
    for node, pid in launched:
        if process.pid_alive(pid):
            process.terminate(pid)
        node.paths.pid_file.unlink(missing_ok=True)
    node = failed or launched[0][0]
    if failed is not None:
        problem = f"Kafka broker exited while starting at {node.at.address}"
    elif len(node.voters) == 1:
        problem = f"Kafka broker did not answer at {node.at.address} within {timeout:.0f}s"
    else:
        problem = (
            f"the {len(node.voters)} Kafka nodes did not all answer and see each other "
            f"within {timeout:.0f}s"
        )
    paths = node.paths
    # kafka.out has JVM failures and Kafka's warnings; server.log has everything else.
    log_tail = (
        process.tail(paths.console_log)
        or process.tail(paths.logs_dir / "server.log")
        or "(no output)"
    )
    msg = (
        f"{problem}: see {paths.logs_dir}/server.log, fix the cause and rerun "
        f"(raise stack.start_timeout_s on a slow machine)\n{log_tail}"
    )
    raise ServiceStartError(msg)


def _await_recorded(recorded: list[tuple[KafkaNode, int]], settings: Settings) -> None:
    """Wait for nodes an earlier ``up`` launched (they may still be starting); never kill them."""
    nodes = [node for node, _ in recorded]
    if process.wait_until(
        lambda: all(_ready(settings, n) for n in nodes), settings.stack.start_timeout_s, 0.25
    ):
        return
    pids = ", ".join(str(pid) for _, pid in recorded)
    msg = (
        f"the Kafka broker(s) started earlier (pid {pids}) do not answer at "
        f"{', '.join(n.at.address for n in nodes)}: run `headwater down`, then `headwater up` again"
    )
    raise ServiceStartError(msg)


def _spawn(settings: Settings, node: KafkaNode, java: str, libs: Path, cluster: str | None) -> int:
    xms_xmx = heap_flags(settings.stack.kafka_heap)
    _write_config(settings, node)
    _format_storage(java, libs, node, cluster)
    paths = node.paths
    argv = [
        java,
        *xms_xmx,
        "-XX:+UseG1GC",
        "-XX:MaxGCPauseMillis=20",
        "-Djava.awt.headless=true",
        *_jvm_base(java, libs, paths)[1:],
        "kafka.Kafka",
        str(paths.server_properties),
    ]
    pid = process.spawn_detached(argv, log_path=paths.console_log, cwd=paths.root)
    process.write_pid_file(paths.pid_file, pid)
    return pid


def start_kafka(settings: Settings) -> ServiceStatus:
    """Make Kafka answer at ``kafka.bootstrap_servers``: one broker, or the
    ``stack.kafka_brokers`` nodes of a local cluster (see :func:`start_kafka_nodes`).

    Raises:
        StackError: with a one-line cause and fix when a broker cannot be started.
    """
    return _merged(start_kafka_nodes(settings))


def start_kafka_nodes(settings: Settings) -> list[ServiceStatus]:
    """Start or reuse each node; one status per node.

    Reuses, in order: nodes recorded in our pid files (waiting for them if still starting),
    then brokers already answering at the addresses (``pid`` is ``None``: not ours to stop).
    A cluster is only reused whole: a foreign broker on one of its ports is refused.
    Concurrent calls with the same ``home`` take turns, so each node is launched once.

    With ``stack.secure`` every node requires SASL, and the SCRAM client user of
    ``headwater.stack.secure`` is created (or its password reset) once they answer.

    Raises:
        StackError: with a one-line cause and fix when a node cannot be started.
    """
    statuses = _start_kafka_nodes(settings)
    if settings.stack.secure:
        ensure_scram_user(settings)
    return statuses


def _start_kafka_nodes(settings: Settings) -> list[ServiceStatus]:
    began = time.monotonic()
    nodes = kafka_nodes(settings)
    name = "kafka" if len(nodes) == 1 else "kafka-{}"
    lock = kafka_paths(settings).lock_file
    with process.file_lock(lock):
        recorded: list[tuple[KafkaNode, int]] = []
        foreign: list[KafkaNode] = []
        missing: list[KafkaNode] = []
        for node in nodes:
            pid = process.read_pid_file(node.paths.pid_file)
            if pid is not None and process.pid_runs(pid, "java", "kafka.Kafka"):
                recorded.append((node, pid))
            elif process.port_open(node.at.host, node.at.port):
                node.paths.pid_file.unlink(missing_ok=True)
                foreign.append(node)
            else:
                node.paths.pid_file.unlink(missing_ok=True)
                missing.append(node)
        _check_foreign(settings, nodes, foreign, missing)
        launched: list[tuple[KafkaNode, int]] = []
        if missing:
            java = check_java()
            libs = resolve_jars(settings.stack.cache_dir)
            cluster = _cluster_id(settings, java, libs, nodes)
            for node in missing:
                log.info("starting Kafka node %s at %s", node.at.node_id, node.at.address)
                launched.append((node, _spawn(settings, node, java, libs, cluster)))
            # The nodes of a cluster only answer once a majority runs: launch all, then wait.
            _await_launched(launched, settings)
        if recorded:
            _await_recorded(recorded, settings)
    seconds = time.monotonic() - began
    pids = {node.at.node_id: pid for node, pid in [*recorded, *launched]}
    started = {node.at.node_id for node, _ in launched}
    return [
        ServiceStatus(
            name.format(node.at.node_id),
            "started" if node.at.node_id in started else "reused",
            node.at.address,
            pids.get(node.at.node_id),
            seconds,
        )
        for node in nodes
    ]


def _check_foreign(
    settings: Settings, nodes: list[KafkaNode], foreign: list[KafkaNode], missing: list[KafkaNode]
) -> None:
    """Refuse ports held by something we cannot reuse: not a broker accepting this stack's
    identity, or a broker that is not part of the cluster asked for."""
    for node in foreign:
        if not kafka_answers(node.at.address, timeout_s=3.0, kafka=_probe_identity(settings)):
            msg = (
                f"port {node.at.port} on {node.at.host} is in use by something that is not a "
                "Kafka broker accepting this stack's identity (a plaintext broker when --secure "
                "was asked, or the other way round): stop it or set "
                "HEADWATER_KAFKA__BOOTSTRAP_SERVERS to a free port"
            )
            raise PortInUseError(msg)
        if len(nodes) > 1 and (
            missing or _broker_count(node.at.address, kafka=_probe_identity(settings)) < len(nodes)
        ):
            msg = (
                f"a Kafka broker that this `up` did not start answers at {node.at.address}, "
                f"so a {len(nodes)}-node cluster cannot use that port: stop it (`headwater "
                "down` if an earlier single-node `up` started it) or set "
                "HEADWATER_KAFKA__BOOTSTRAP_SERVERS to a free port"
            )
            raise PortInUseError(msg)
    for node in missing:
        if process.port_open(node.at.host, node.at.controller_port):
            msg = (
                f"Kafka controller port {node.at.controller_port} on {node.at.host} is already "
                "in use: stop what holds it or set HEADWATER_STACK__CONTROLLER_PORT to a free port"
            )
            raise PortInUseError(msg)


def _merged(statuses: list[ServiceStatus]) -> ServiceStatus:
    """One status for the whole of Kafka: ``started`` when any node was, the first node's pid."""
    states = {s.state for s in statuses}
    state: ServiceState
    if "started" in states:
        state = "started"
    elif "stopped" in states:
        state = "stopped"
    else:
        state = statuses[0].state
    pid = next((s.pid for s in statuses if s.pid is not None), None)
    address = ",".join(s.address for s in statuses)
    return ServiceStatus("kafka", state, address, pid, max(s.seconds for s in statuses))


def stop_kafka(settings: Settings) -> ServiceStatus:
    """Stop every broker recorded in our pid files; a broker someone else runs is left alone."""
    return _merged(stop_kafka_nodes(settings))


def stop_kafka_nodes(settings: Settings) -> list[ServiceStatus]:
    """Stop the single broker and every cluster node ``up`` started under this ``home``,
    whatever ``stack.kafka_brokers`` says now; one status per node (or one when none ran)."""
    began = time.monotonic()
    stack = stack_dir(settings)
    pid_files = sorted(stack.glob("kafka-*.pid")) if stack.is_dir() else []
    addresses = {node.paths.pid_file: node.at.address for node in kafka_nodes(settings)}
    files = [kafka_paths(settings).pid_file, *pid_files]
    # All at once: the last node of a quorum cannot shut down cleanly on its own (no
    # majority left to hand over to) and would wait out the whole timeout.
    with process.file_lock(kafka_paths(settings).lock_file), ThreadPoolExecutor(len(files)) as pool:
        pids = list(pool.map(lambda f: process.stop_recorded(f, "java", "kafka.Kafka"), files))
    statuses = [
        ServiceStatus(f.stem, "stopped", addresses.get(f, "-"), pid, time.monotonic() - began)
        for f, pid in zip(files, pids, strict=True)
        if pid is not None
    ]
    if statuses:
        return statuses
    shown = ",".join(addresses.values())
    return [ServiceStatus("kafka", "not running", shown, None, time.monotonic() - began)]
