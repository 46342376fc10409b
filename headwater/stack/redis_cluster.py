"""A local Redis Cluster for the online store: six redis-servers, three primaries and three
replicas (``headwater up --redis-cluster``).

The nodes listen on the port of ``redis.url`` and the five after it, each with a directory,
``redis.conf`` (0600: it may hold the password, which is never an argument), ``nodes.conf``
and log under ``<home>/stack/redis-cluster/<port>``, and a pid file
``<home>/stack/redis-cluster/<port>.pid``; ``down`` stops exactly those pids. Every node keeps
the append-only file fsynced on every write, as the single server does (``DURABILITY_ARGS``),
and the worker waits for a replica to confirm each batch (``redis.wait_replicas``), so neither
a restart nor a failover loses an acknowledged state.

A node that is not running (killed, crashed) is started again by the next ``up`` with its
``nodes.conf``: it rejoins the cluster, as a replica of whichever node took over its slots.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import time
from pathlib import Path

import redis

from headwater.connectors.redis_client import redis_client
from headwater.schemas.settings import Settings
from headwater.stack import process
from headwater.stack.errors import PortInUseError, ServiceStartError, ToolMissingError
from headwater.stack.redis import (
    RedisPaths,
    find_redis_server,
    parse_redis_url,
    render_redis_conf,
)
from headwater.stack.secrets import write_private
from headwater.stack.status import ServiceState, ServiceStatus

__all__ = [
    "CLUSTER_NODES",
    "cluster_node_paths",
    "cluster_node_settings",
    "cluster_ports",
    "redis_cluster_ready",
    "start_redis_cluster",
    "stop_redis_cluster",
]

log = logging.getLogger(__name__)

CLUSTER_NODES = 6
"""Three primaries, each with one replica."""
_CREATE_TIMEOUT_S = 60.0
_BUS_OFFSET = 10_000
"""A node's cluster bus listens 10000 above its port."""


def cluster_ports(settings: Settings) -> list[int]:
    """The nodes' ports: ``redis.url``'s and the five after it."""
    _, port, _ = parse_redis_url(settings.redis.url)
    return [port + i for i in range(CLUSTER_NODES)]


def _node_name(index: int) -> str:
    """``redis-1`` .. ``redis-6``, as the nodes are named in docker-compose's scale profile."""
    return f"redis-{index + 1}"


def _root(settings: Settings) -> Path:
    return settings.home.expanduser().resolve() / "stack" / "redis-cluster"


def cluster_node_paths(settings: Settings, port: int) -> RedisPaths:
    """Working directory and pid file of the node at ``port``."""
    root = _root(settings)
    return RedisPaths(root=root / str(port), pid_file=root / f"{port}.pid")


def cluster_node_settings(settings: Settings, port: int) -> Settings:
    """``settings`` addressing the one node at ``port`` as a standalone server."""
    host, _, _ = parse_redis_url(settings.redis.url)
    redis_settings = settings.redis.model_copy(
        update={"url": f"redis://{host}:{port}", "cluster": False, "cluster_nodes": []}
    )
    return settings.model_copy(update={"redis": redis_settings})


def _render_node_conf(settings: Settings, port: int, paths: RedisPaths) -> str:
    node = cluster_node_settings(settings, port)
    lines = [
        "cluster-enabled yes",
        'cluster-config-file "nodes.conf"',
        f"cluster-node-timeout {settings.stack.redis_cluster_node_timeout_ms}",
        # A replica is listed in CLUSTER SLOTS (so clients wait for it) once its replication
        # offset moved: pinged every second, a new replica is listed within one.
        "repl-ping-replica-period 1",
    ]
    redis_settings = settings.redis
    if redis_settings.password is not None:
        # Replicas authenticate to their primary as clients do.
        password = redis_settings.password.get_secret_value().replace('"', '\\"')
        lines.append(f'masterauth "{password}"')
        if redis_settings.username is not None:
            lines.append(f"masteruser {redis_settings.username}")
    return render_redis_conf(node, paths) + "\n".join(lines) + "\n"


def _node_info(settings: Settings, port: int, section: str) -> dict[str, str] | None:
    """``CLUSTER INFO`` (``section`` ``cluster``) or ``INFO <section>`` of one node."""
    node = cluster_node_settings(settings, port)
    client = redis_client(node.redis, socket_connect_timeout=0.5, socket_timeout=1.0)
    assert isinstance(client, redis.Redis)  # one node, addressed alone
    try:
        info = client.cluster("INFO") if section == "cluster" else client.info(section)
        return {k: str(v) for k, v in info.items()}
    except (redis.RedisError, OSError):
        return None
    finally:
        client.close()


def redis_cluster_ready(settings: Settings) -> bool:
    """Whether every node answers, sees the cluster ``ok`` with all slots assigned, every
    primary has a replica in sync (so ``WAIT 1`` can succeed), and every node lists them."""
    primaries = 0
    for port in cluster_ports(settings):
        info = _node_info(settings, port, "cluster")
        if info is None or info.get("cluster_state") != "ok":
            return False
        if info.get("cluster_slots_assigned") != "16384":
            return False
        replication = _node_info(settings, port, "replication")
        if replication is None:
            return False
        if replication.get("role") == "master":
            primaries += 1
            if replication.get("connected_slaves", "0") == "0":
                return False
        elif replication.get("master_link_status") != "up":
            return False
    if primaries != CLUSTER_NODES // 2:
        return False
    return all(_slots_list_replicas(settings, port) for port in cluster_ports(settings))


def _slots_list_replicas(settings: Settings, port: int) -> bool:
    """Whether the node's ``CLUSTER SLOTS`` names a replica for every slot range (what
    clients read to know which replicas to wait for)."""
    node = cluster_node_settings(settings, port)
    client = redis_client(node.redis, socket_connect_timeout=0.5, socket_timeout=1.0)
    assert isinstance(client, redis.Redis)  # one node, addressed alone
    try:
        ranges = client.execute_command("CLUSTER SLOTS")  # type: ignore[no-untyped-call]
        return bool(ranges) and all(len(entry) >= 4 for entry in ranges)
    except (redis.RedisError, OSError):
        return False
    finally:
        client.close()


def _cluster_formed(settings: Settings) -> bool:
    """Whether the nodes already know each other (a previous ``up`` created the cluster)."""
    info = _node_info(settings, cluster_ports(settings)[0], "cluster")
    return info is not None and info.get("cluster_known_nodes", "1") != "1"


def _redis_cli() -> str:
    found = shutil.which("redis-cli") or (
        "/usr/bin/redis-cli" if Path("/usr/bin/redis-cli").is_file() else None
    )
    if found is None:
        msg = "redis-cli not found: install it (sudo apt-get install -y redis-tools) and rerun"
        raise ToolMissingError(msg)
    return found


def _create_cluster(settings: Settings) -> None:
    """``redis-cli --cluster create`` over the six nodes, one replica per primary; the
    password goes in the environment (``REDISCLI_AUTH``), never in argv."""
    host, _, _ = parse_redis_url(settings.redis.url)
    argv = [_redis_cli(), "--cluster", "create"]
    argv += [f"{host}:{port}" for port in cluster_ports(settings)]
    argv += ["--cluster-replicas", "1", "--cluster-yes"]
    env = dict(os.environ)
    env.pop("REDISCLI_AUTH", None)
    if settings.redis.username is not None:
        argv += ["--user", settings.redis.username]
    if settings.redis.password is not None:
        env["REDISCLI_AUTH"] = settings.redis.password.get_secret_value()
    done = subprocess.run(
        argv, capture_output=True, text=True, env=env, timeout=_CREATE_TIMEOUT_S, check=False
    )
    if done.returncode != 0:
        last = (done.stderr.strip() or done.stdout.strip() or "no output").splitlines()[-1]
        msg = (
            f"redis-cli --cluster create failed ({last}): run `headwater down`, remove "
            f"{_root(settings)} and run `headwater up --redis-cluster` again"
        )
        raise ServiceStartError(msg)


def _launch_node(settings: Settings, port: int, binary: str) -> int:
    paths = cluster_node_paths(settings, port)
    paths.root.mkdir(parents=True, exist_ok=True)
    write_private(paths.config_file, _render_node_conf(settings, port, paths))
    pid = process.spawn_detached(
        [binary, str(paths.config_file)], log_path=paths.log_file, cwd=paths.root
    )
    process.write_pid_file(paths.pid_file, pid)
    return pid


def _await_nodes(settings: Settings, pids: dict[int, int]) -> None:
    """Wait until each launched node answers PING; quote the log of one that does not."""
    timeout = settings.stack.start_timeout_s
    for port, pid in pids.items():

        def answers(pid: int = pid, port: int = port) -> bool:
            return not process.pid_alive(pid) or _node_info(settings, port, "server") is not None

        if process.wait_until(answers, timeout, 0.05) and process.pid_alive(pid):
            continue
        paths = cluster_node_paths(settings, port)
        log_tail = process.tail(paths.log_file) or "(no output)"
        cause = f"see {paths.log_file}, fix the cause and rerun"
        if "Address already in use" in log_tail:
            cause = (
                f"port {port} or its cluster bus port {port + _BUS_OFFSET} was taken, maybe by "
                f"a client connection's local port ({_ephemeral_ports()} are handed out to "
                "clients here): rerun, or set HEADWATER_REDIS__URL to a port whose bus ports "
                "(10000 higher) fall outside that range, e.g. redis://127.0.0.1:6379"
            )
        msg = f"redis-server of the cluster node at port {port} did not start: {cause}\n{log_tail}"
        raise ServiceStartError(msg)


def _ephemeral_ports() -> str:
    """The local port range Linux gives client connections, as ``low-high``."""
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
    except (OSError, ValueError):
        return "ports 32768-60999, usually,"
    return f"ports {low}-{high}"


def start_redis_cluster(settings: Settings) -> list[ServiceStatus]:
    """Make a six-node Redis Cluster answer at ``redis.url`` and the five ports after it.

    Reuses the nodes recorded in our pid files and starts those that are not running (a
    restarted node rejoins with its ``nodes.conf``); a cluster answering there that we did
    not start is reused and never stopped. Creates the cluster on the first start, then
    waits until all slots are served and every primary has a replica in sync.

    Raises:
        StackError: with a one-line cause and fix.
    """
    began = time.monotonic()
    host, _, _ = parse_redis_url(settings.redis.url)
    ports = cluster_ports(settings)
    root = _root(settings)
    with process.file_lock(root.with_suffix(".lock")):
        recorded = {
            port: process.read_pid_file(cluster_node_paths(settings, port).pid_file)
            for port in ports
        }
        running = {
            port: pid
            for port, pid in recorded.items()
            if pid is not None and process.pid_runs(pid, "redis-server")
        }
        if not running and redis_cluster_ready(settings):
            return [
                ServiceStatus(_node_name(i), "reused", f"redis://{host}:{port}", None, 0.0)
                for i, port in enumerate(ports)
            ]
        missing = [port for port in ports if port not in running]
        for port in missing:
            for used in (port, port + _BUS_OFFSET):
                if process.port_open(host, used):
                    msg = (
                        f"port {used} on {host} (a Redis Cluster node's port, redis.url's and "
                        "the five after it, or its bus port, 10000 higher) is in use by "
                        "something else: stop it or set HEADWATER_REDIS__URL to a port followed "
                        "by five free ones, all below 55530"
                    )
                    raise PortInUseError(msg)
        started: dict[int, int] = {}
        if missing:
            binary = find_redis_server()
            log.info("starting Redis Cluster nodes at %s ports %s", host, missing)
            started = {port: _launch_node(settings, port, binary) for port in missing}
            try:
                _await_nodes(settings, started)
            except ServiceStartError:
                for port, pid in started.items():  # none half-started is left behind
                    process.terminate(pid)
                    cluster_node_paths(settings, port).pid_file.unlink(missing_ok=True)
                raise
        if not _cluster_formed(settings):
            _create_cluster(settings)
        timeout = settings.stack.start_timeout_s
        if not process.wait_until(lambda: redis_cluster_ready(settings), timeout, 0.2):
            msg = (
                f"the Redis Cluster at {host}:{ports[0]}-{ports[-1]} is not ready (all slots "
                f"served, a replica in sync per primary) within {timeout:.0f}s: see the logs "
                f"under {root}, or run `headwater down` and `headwater up --redis-cluster`"
            )
            raise ServiceStartError(msg)
    seconds = time.monotonic() - began
    statuses = []
    for i, port in enumerate(ports):
        state: ServiceState = "started" if port in started else "reused"
        node_pid = started.get(port) or running.get(port)
        statuses.append(
            ServiceStatus(_node_name(i), state, f"redis://{host}:{port}", node_pid, seconds)
        )
    return statuses


def stop_redis_cluster(settings: Settings) -> list[ServiceStatus]:
    """Stop the cluster nodes recorded in our pid files (any other Redis is left alone);
    their data stays for the next ``up --redis-cluster``."""
    began = time.monotonic()
    host, _, _ = parse_redis_url(settings.redis.url)
    ports = cluster_ports(settings)
    statuses = []
    root = _root(settings)
    with process.file_lock(root.with_suffix(".lock")):
        pid_files = sorted(root.glob("*.pid")) if root.is_dir() else []
        for pid_file in pid_files:
            pid = process.stop_recorded(pid_file, "redis-server")
            state: ServiceState = "stopped" if pid is not None else "not running"
            port = int(pid_file.stem)
            name = _node_name(ports.index(port)) if port in ports else f"redis-{port}"
            address = f"redis://{host}:{port}"
            statuses.append(ServiceStatus(name, state, address, pid, time.monotonic() - began))
    return statuses
