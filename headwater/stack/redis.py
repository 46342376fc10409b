"""A local redis-server for the online store, or the one that already answers at ``redis.url``.

The server we start keeps an append-only file fsynced on every write (``DURABILITY_ARGS``;
docker-compose.yml runs Redis the same way). The worker acknowledges Kafka offsets once an
entity's state is in Redis, and nothing replays events into a state that Redis lost, so a
Redis that restarted empty (no persistence) or without its last second (``everysec``) would
serve windows short of events, silently. With ``always``, a restart of Redis, even a kill -9,
loses nothing the worker was told was written.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit

import redis

from headwater.connectors.redis_client import redis_client
from headwater.schemas.settings import RedisSettings, Settings
from headwater.stack import process
from headwater.stack.errors import (
    PortInUseError,
    ServiceStartError,
    StackConfigError,
    ToolMissingError,
)
from headwater.stack.secrets import write_private
from headwater.stack.status import ServiceState, ServiceStatus

__all__ = [
    "DURABILITY_ARGS",
    "RedisPaths",
    "find_redis_server",
    "parse_redis_url",
    "redis_answers",
    "redis_paths",
    "render_redis_conf",
    "start_redis",
    "stop_redis",
]

log = logging.getLogger(__name__)

DURABILITY_ARGS = ("--appendonly", "yes", "--appendfsync", "always", "--save", "")
"""How our redis-server keeps the online store: the append-only file only (no RDB snapshots),
fsynced before each reply."""

_SYSTEM_BINARY = Path("/usr/bin/redis-server")
_APT_TIMEOUT_S = 900.0
_MISSING_LISTS = re.compile(
    r"Unable to locate package|has no installation candidate|Failed to fetch|404\s+Not Found"
)


@dataclass(frozen=True)
class RedisPaths:
    """Where our redis-server keeps its working directory, log and pid files."""

    root: Path
    pid_file: Path

    @property
    def log_file(self) -> Path:
        return self.root / "redis.log"

    @property
    def config_file(self) -> Path:
        """redis.conf (0600): it may hold the password, which must not be an argument."""
        return self.root / "redis.conf"

    @property
    def server_pid_file(self) -> Path:
        """The pid file redis-server writes itself (ours is ``pid_file``)."""
        return self.root / "redis-server.pid"

    @property
    def lock_file(self) -> Path:
        return self.pid_file.with_suffix(".lock")


def redis_paths(settings: Settings) -> RedisPaths:
    """Our redis-server's paths under ``<home>/stack``; absolute for the child process."""
    stack = settings.home.expanduser().resolve() / "stack"
    return RedisPaths(root=stack / "redis", pid_file=stack / "redis.pid")


def parse_redis_url(url: str) -> tuple[str, int, str | None]:
    """Host, port and password of a ``redis://`` URL, which is all a local server needs.

    Raises:
        StackConfigError: for URLs a local plain-TCP redis-server cannot serve (TLS, sockets).
    """
    parts = urlsplit(url)
    if parts.scheme != "redis":
        msg = (
            f"redis.url {url.rsplit('@', 1)[-1]!r} is not redis://host:port/db: `headwater up` "
            "starts only a plain local server; set HEADWATER_REDIS__URL=redis://127.0.0.1:6379/0"
        )
        raise StackConfigError(msg)
    try:
        port = parts.port or 6379
    except ValueError as exc:
        msg = f"redis.url has an invalid port: use redis://127.0.0.1:6379/0 ({exc})"
        raise StackConfigError(msg) from exc
    host = parts.hostname or "127.0.0.1"
    password = unquote(parts.password) if parts.password else None
    return host, port, password


def redis_answers(server: str | RedisSettings, timeout_s: float = 1.0) -> bool:
    """Whether a Redis answers PING at a URL (with its credentials) or as ``redis``
    settings describe it (ACL user, password, TLS)."""
    settings = server if isinstance(server, RedisSettings) else RedisSettings(url=server)
    client = redis_client(settings, socket_connect_timeout=timeout_s, socket_timeout=timeout_s)
    try:
        return bool(client.ping())
    except (redis.RedisError, OSError):
        return False
    finally:
        client.close()


def _apt_install(apt: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    return subprocess.run(
        [apt, "-o", "DPkg::Lock::Timeout=120", "install", "-y", "redis-server"],
        capture_output=True,
        text=True,
        env=env,
        timeout=_APT_TIMEOUT_S,
        check=False,
    )


def _install_redis_server() -> None:
    """``apt-get install -y redis-server``, refreshing the package lists only if they lack it."""
    apt = shutil.which("apt-get")
    if apt is None:
        msg = "redis-server not found and apt-get is unavailable: install redis-server 6+ and rerun"
        raise ToolMissingError(msg)
    log.info("installing redis-server with apt-get")
    done = _apt_install(apt)
    if done.returncode != 0 and _MISSING_LISTS.search(done.stdout + done.stderr):
        subprocess.run(
            [apt, "-o", "DPkg::Lock::Timeout=120", "update"],
            capture_output=True,
            text=True,
            timeout=_APT_TIMEOUT_S,
            check=False,
        )
        done = _apt_install(apt)
    if done.returncode != 0:
        last = (done.stderr.strip() or done.stdout.strip() or "no output").splitlines()[-1]
        msg = f"apt-get install -y redis-server failed: run it by hand to see why ({last})"
        raise ToolMissingError(msg)


def find_redis_server(*, install: bool = True) -> str:
    """The redis-server binary, installed with apt-get when missing and running as root.

    Raises:
        ToolMissingError: when it is missing and cannot be installed here.
    """
    found = shutil.which("redis-server")
    if found is not None:
        return found
    if _SYSTEM_BINARY.is_file():
        return str(_SYSTEM_BINARY)
    if not install or os.geteuid() != 0:
        msg = (
            "redis-server not found: install it (sudo apt-get install -y redis-server) "
            "or point HEADWATER_REDIS__URL at a running Redis"
        )
        raise ToolMissingError(msg)
    _install_redis_server()
    found = shutil.which("redis-server") or (
        str(_SYSTEM_BINARY) if _SYSTEM_BINARY.is_file() else None
    )
    if found is None:
        msg = "redis-server is still missing after apt-get install: install it by hand and rerun"
        raise ToolMissingError(msg)
    return found


def _await_launched(pid: int, settings: Settings, paths: RedisPaths, address: str) -> None:
    """Wait for the redis-server we just launched; on failure stop it and quote its log."""
    url, timeout = settings.redis, settings.stack.start_timeout_s
    ok = process.wait_until(
        lambda: not process.pid_alive(pid) or redis_answers(url, 0.5), timeout, 0.05
    )
    if ok and process.pid_alive(pid):
        return
    if process.pid_alive(pid):
        process.terminate(pid)
        problem = f"redis-server did not answer PING at {address} within {timeout:.0f}s"
    else:
        problem = f"redis-server exited while starting at {address}"
    paths.pid_file.unlink(missing_ok=True)
    log_tail = process.tail(paths.log_file) or "(no output)"
    raise ServiceStartError(f"{problem}: see {paths.log_file}, fix the cause and rerun\n{log_tail}")


def _await_recorded(pid: int, settings: Settings, address: str) -> None:
    """Wait for a redis-server an earlier ``up`` launched; never kill it on failure."""
    url, timeout = settings.redis, settings.stack.start_timeout_s
    if process.wait_until(lambda: redis_answers(url, 0.5), timeout, 0.05):
        return
    msg = (
        f"the redis-server started earlier (pid {pid}) does not answer PING at {address}: "
        "run `headwater down`, then `headwater up` again"
    )
    raise ServiceStartError(msg)


def _conf_value(value: str) -> str:
    """A redis.conf argument: quoted, with backslashes and quotes escaped."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def render_redis_conf(settings: Settings, paths: RedisPaths) -> str:
    """redis.conf of our server: address, durability, files and who may connect.

    With ``redis.username`` (``up --secure`` sets it) the ``default`` user is switched off
    and that named ACL user gets the password; otherwise a password in ``redis.password``
    or the URL becomes ``requirepass``. Either way it is in this file (0600), not in argv.
    """
    host, port, url_password = parse_redis_url(settings.redis.url)
    # redis-server binds addresses, not names.
    bind = "127.0.0.1" if host == "localhost" else host
    lines = [f"bind {bind}", f"port {port}", "daemonize no"]
    lines += [f"{name} {_conf_value(value)}" for name, value in _pairs(DURABILITY_ARGS)]
    lines += [f"dir {_conf_value(str(paths.root))}"]
    lines += [f"pidfile {_conf_value(str(paths.server_pid_file))}"]
    password = (
        settings.redis.password.get_secret_value()
        if settings.redis.password is not None
        else url_password
    )
    if settings.redis.username is not None and password is not None:
        lines += [
            "user default off",
            f"user {settings.redis.username} on {_conf_value('>' + password)} ~* &* +@all",
        ]
    elif password is not None:
        lines += [f"requirepass {_conf_value(password)}"]
    header = "# Written by `headwater up` (mode 0600); edits are overwritten on the next start.\n"
    return header + "\n".join(lines) + "\n"


def _pairs(args: tuple[str, ...]) -> list[tuple[str, str]]:
    """``("--name", "value", ...)`` command-line options as (name, value) pairs."""
    return [(args[i].removeprefix("--"), args[i + 1]) for i in range(0, len(args), 2)]


def _launch(settings: Settings, paths: RedisPaths, binary: str) -> int:
    host, port, _ = parse_redis_url(settings.redis.url)
    paths.root.mkdir(parents=True, exist_ok=True)
    write_private(paths.config_file, render_redis_conf(settings, paths))
    argv = [binary, str(paths.config_file)]
    pid = process.spawn_detached(argv, log_path=paths.log_file, cwd=paths.root)
    process.write_pid_file(paths.pid_file, pid)
    _await_launched(pid, settings, paths, f"redis://{host}:{port}")
    return pid


def start_redis(settings: Settings) -> ServiceStatus:
    """Make a Redis answer PING at ``redis.url``, starting our own only when none does.

    Reuses, in order: the redis-server recorded in our pid file, then any Redis answering at
    the URL (``pid`` is ``None``: not ours to stop). Concurrent calls with the same ``home``
    take turns, so only one server is launched.

    Raises:
        StackError: with a one-line cause and fix when Redis cannot be started.
    """
    began = time.monotonic()
    paths = redis_paths(settings)
    host, port, _ = parse_redis_url(settings.redis.url)
    address = f"redis://{host}:{port}"

    def status(state: ServiceState, pid: int | None) -> ServiceStatus:
        return ServiceStatus("redis", state, address, pid, time.monotonic() - began)

    with process.file_lock(paths.lock_file):
        pid = process.read_pid_file(paths.pid_file)
        if pid is not None and process.pid_runs(pid, "redis-server"):
            _await_recorded(pid, settings, address)
            return status("reused", pid)
        paths.pid_file.unlink(missing_ok=True)
        if redis_answers(settings.redis):
            return status("reused", None)
        if process.port_open(host, port):
            msg = (
                f"port {port} on {host} is in use by something that does not answer Redis PING "
                "with redis.url's credentials: stop it or set HEADWATER_REDIS__URL to a free port"
            )
            raise PortInUseError(msg)
        binary = find_redis_server()
        # Debian's package may start a system redis from its postinst; reuse it if it answers.
        if redis_answers(settings.redis):
            return status("reused", None)
        log.info("starting redis-server at %s", address)
        return status("started", _launch(settings, paths, binary))


def stop_redis(settings: Settings) -> ServiceStatus:
    """Stop the redis-server recorded in our pid file; any other Redis is left alone."""
    began = time.monotonic()
    paths = redis_paths(settings)
    host, port, _ = parse_redis_url(settings.redis.url)
    with process.file_lock(paths.lock_file):
        pid = process.stop_recorded(paths.pid_file, "redis-server")
    state: ServiceState = "stopped" if pid is not None else "not running"
    return ServiceStatus("redis", state, f"redis://{host}:{port}", pid, time.monotonic() - began)
