"""A single-node KRaft Kafka broker run straight from Maven Central jars (no Docker, no tarball).

``start_kafka`` reuses whatever already answers at ``kafka.bootstrap_servers``; otherwise it
resolves the broker jars once into ``stack.cache_dir``, writes the configuration under
``<home>/stack/kafka``, formats storage once and launches ``kafka.Kafka`` detached.
"""

from __future__ import annotations

import logging
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from confluent_kafka import KafkaException

from headwater.connectors.kafka import client_config, shared_admin
from headwater.schemas.settings import KafkaSettings, Settings
from headwater.stack import process
from headwater.stack.errors import PortInUseError, ServiceStartError
from headwater.stack.kafka_config import (
    LOG4J2_YAML,
    heap_flags,
    host_port,
    parse_bootstrap,
    render_server_properties,
)
from headwater.stack.secrets import stack_secret, write_private
from headwater.stack.secure import KAFKA_ADMIN_USER, admin_kafka, ensure_scram_user
from headwater.stack.status import ServiceState, ServiceStatus
from headwater.stack.toolchain import check_java, resolve_jars

__all__ = ["KafkaPaths", "kafka_answers", "kafka_paths", "start_kafka", "stop_kafka"]

log = logging.getLogger(__name__)

# librdkafka reports every refused connection while we poll for readiness; that is expected
# noise, so its log records go to a logger that nothing prints.
_rdkafka_log = logging.getLogger("headwater.stack.rdkafka")
_rdkafka_log.addHandler(logging.NullHandler())
_rdkafka_log.propagate = False


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


def kafka_paths(settings: Settings) -> KafkaPaths:
    """The broker's paths; absolute, because the JVM may not share our working directory."""
    stack = settings.home.expanduser().resolve() / "stack"
    return KafkaPaths(root=stack / "kafka", pid_file=stack / "kafka.pid")


def _write_config(settings: Settings, paths: KafkaPaths) -> None:
    host, port = parse_bootstrap(settings.kafka.bootstrap_servers)
    for directory in (paths.data_dir, paths.logs_dir):
        directory.mkdir(parents=True, exist_ok=True)
    sasl_admin = None
    if settings.stack.secure:
        sasl_admin = (KAFKA_ADMIN_USER, stack_secret(settings, "kafka-admin"))
    # 0600: with stack.secure it holds the broker's password (its JAAS configuration).
    write_private(
        paths.server_properties,
        render_server_properties(
            host=host,
            port=port,
            controller_port=settings.stack.controller_port,
            data_dir=paths.data_dir,
            sasl_admin=sasl_admin,
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


def _format_storage(java: str, libs: Path, paths: KafkaPaths) -> None:
    """Format the KRaft log directory once; a formatted one has ``meta.properties``."""
    if (paths.data_dir / "meta.properties").is_file():
        return
    tool = [*_jvm_base(java, libs, paths), "kafka.tools.StorageTool"]
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
    fmt = subprocess.run(
        [
            *tool,
            "format",
            "--standalone",
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


def kafka_answers(
    bootstrap: str, timeout_s: float = 1.0, *, kafka: KafkaSettings | None = None
) -> bool:
    """Whether a Kafka broker at ``bootstrap`` returns cluster metadata with a broker in it
    (authenticating as ``kafka``'s identity when given)."""
    config: dict[str, Any] = {
        **(client_config(kafka) if kafka is not None else {}),
        "bootstrap.servers": bootstrap,
        "socket.connection.setup.timeout.ms": max(1000, int(timeout_s * 1000)),
        "logger": _rdkafka_log,
    }
    admin = shared_admin(config)
    try:
        return bool(admin.list_topics(timeout=timeout_s).brokers)
    except KafkaException:
        return False


def _probe_identity(settings: Settings) -> KafkaSettings | None:
    """Who ``up`` is when it checks the broker: the admin on a secure stack, nobody else."""
    return admin_kafka(settings) if settings.stack.secure else None


def _ready(settings: Settings) -> bool:
    host, port = parse_bootstrap(settings.kafka.bootstrap_servers)
    # A TCP probe first keeps librdkafka from retrying against a port nobody listens on.
    return process.port_open(host, port) and kafka_answers(
        host_port(host, port), kafka=_probe_identity(settings)
    )


def _await_launched(pid: int, settings: Settings, paths: KafkaPaths) -> None:
    """Wait for the broker we just launched; on failure stop it and quote its log."""
    host, port = parse_bootstrap(settings.kafka.bootstrap_servers)
    address, timeout = host_port(host, port), settings.stack.start_timeout_s
    ok = process.wait_until(lambda: not process.pid_alive(pid) or _ready(settings), timeout, 0.25)
    if ok and process.pid_alive(pid):
        return
    if process.pid_alive(pid):
        process.terminate(pid)
        problem = f"Kafka broker did not answer at {address} within {timeout:.0f}s"
    else:
        problem = f"Kafka broker exited while starting at {address}"
    paths.pid_file.unlink(missing_ok=True)
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


def _await_recorded(pid: int, settings: Settings) -> None:
    """Wait for a broker an earlier ``up`` launched (it may still be starting); never kill it."""
    host, port = parse_bootstrap(settings.kafka.bootstrap_servers)
    if process.wait_until(lambda: _ready(settings), settings.stack.start_timeout_s, 0.25):
        return
    msg = (
        f"the Kafka broker started earlier (pid {pid}) does not answer at "
        f"{host_port(host, port)}: run `headwater down`, then `headwater up` again"
    )
    raise ServiceStartError(msg)


def _launch(settings: Settings, paths: KafkaPaths) -> int:
    java = check_java()
    xms_xmx = heap_flags(settings.stack.kafka_heap)
    libs = resolve_jars(settings.stack.cache_dir)
    _write_config(settings, paths)
    _format_storage(java, libs, paths)
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
    _await_launched(pid, settings, paths)
    return pid


def start_kafka(settings: Settings) -> ServiceStatus:
    """Make a Kafka broker answer at the first ``kafka.bootstrap_servers`` entry.

    Reuses, in order: the broker recorded in our pid file (waiting for it if still starting),
    then any broker already answering at the address (``pid`` is ``None``: not ours to stop).
    Concurrent calls with the same ``home`` take turns, so only one broker is launched.

    With ``stack.secure`` the broker requires SASL, and the SCRAM client user of
    ``headwater.stack.secure`` is created (or its password reset) once it answers.

    Raises:
        StackError: with a one-line cause and fix when the broker cannot be started.
    """
    status = _start_kafka(settings)
    if settings.stack.secure:
        ensure_scram_user(settings)
    return status


def _start_kafka(settings: Settings) -> ServiceStatus:
    began = time.monotonic()
    paths = kafka_paths(settings)
    host, port = parse_bootstrap(settings.kafka.bootstrap_servers)
    address = host_port(host, port)

    def status(state: ServiceState, pid: int | None) -> ServiceStatus:
        return ServiceStatus("kafka", state, address, pid, time.monotonic() - began)

    with process.file_lock(paths.lock_file):
        pid = process.read_pid_file(paths.pid_file)
        if pid is not None and process.pid_runs(pid, "java", "kafka.Kafka"):
            _await_recorded(pid, settings)
            return status("reused", pid)
        paths.pid_file.unlink(missing_ok=True)
        if process.port_open(host, port):
            if kafka_answers(address, timeout_s=3.0, kafka=_probe_identity(settings)):
                return status("reused", None)
            msg = (
                f"port {port} on {host} is in use by something that is not a Kafka broker "
                "accepting this stack's identity (a plaintext broker when --secure was asked, "
                "or the other way round): stop it or set HEADWATER_KAFKA__BOOTSTRAP_SERVERS "
                "to a free port"
            )
            raise PortInUseError(msg)
        controller_port = settings.stack.controller_port
        if process.port_open(host, controller_port):
            msg = (
                f"Kafka controller port {controller_port} on {host} is already in use: "
                "stop what holds it or set HEADWATER_STACK__CONTROLLER_PORT to a free port"
            )
            raise PortInUseError(msg)
        log.info("starting Kafka broker at %s", address)
        return status("started", _launch(settings, paths))


def stop_kafka(settings: Settings) -> ServiceStatus:
    """Stop the broker recorded in our pid file; a broker someone else runs is left alone."""
    began = time.monotonic()
    paths = kafka_paths(settings)
    host, port = parse_bootstrap(settings.kafka.bootstrap_servers)
    with process.file_lock(paths.lock_file):
        pid = process.stop_recorded(paths.pid_file, "java", "kafka.Kafka")
    state: ServiceState = "stopped" if pid is not None else "not running"
    return ServiceStatus("kafka", state, host_port(host, port), pid, time.monotonic() - began)
