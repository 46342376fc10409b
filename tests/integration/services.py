"""Session fixtures that hand tests a real Kafka broker and a real Redis.

Resolution order for each service:

1. ``HEADWATER_TEST_KAFKA`` / ``HEADWATER_TEST_REDIS``, when set, are used as given.
2. Whatever already answers at the settings' addresses (by default ``127.0.0.1:9092`` and
   ``redis://127.0.0.1:6379/0``, e.g. after ``headwater up``) is reused and never stopped.
3. Otherwise a private broker / redis-server is started with the ``headwater.stack`` code on
   free ports, with ``home`` in a session temp dir, and exactly that process (by the pid file
   it wrote) is stopped when the session ends.

Register them in a conftest with ``from services import kafka_bootstrap, redis_url``.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from headwater.schemas.settings import Settings, load_settings
from headwater.stack import (
    ServiceStatus,
    kafka_answers,
    redis_answers,
    start_kafka,
    start_redis,
    stop_kafka,
    stop_redis,
)
from headwater.stack.errors import PortInUseError
from headwater.stack.kafka_config import parse_bootstrap
from headwater.stack.process import port_open

__all__ = ["free_ports", "kafka_bootstrap", "private_kafka", "redis_url"]

_PORT_ATTEMPTS = 3


def free_ports(count: int) -> list[int]:
    """``count`` distinct loopback ports that were free a moment ago (bound to port 0)."""
    sockets = [socket.socket(socket.AF_INET, socket.SOCK_STREAM) for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def _start_private(
    start: Callable[[Settings], ServiceStatus], home: Path, sections: Callable[[], dict[str, Any]]
) -> tuple[Settings, ServiceStatus]:
    """Start a service on fresh free ports, retrying when another process grabbed one first.

    Environment and headwater.yaml still apply (cache_dir, heap, timeouts); only ``home`` and
    the addresses are forced, so nothing is shared with a developer's own stack.
    """
    for attempt in range(1, _PORT_ATTEMPTS + 1):
        settings = load_settings(home=home, **sections())
        try:
            return settings, start(settings)
        except PortInUseError:
            if attempt == _PORT_ATTEMPTS:
                raise
    raise AssertionError("unreachable")


def _kafka_sections() -> dict[str, Any]:
    broker, controller = free_ports(2)
    return {
        "kafka": {"bootstrap_servers": f"127.0.0.1:{broker}"},
        "stack": {"controller_port": controller},
    }


def _redis_sections() -> dict[str, Any]:
    (port,) = free_ports(1)
    return {"redis": {"url": f"redis://127.0.0.1:{port}/0"}}


@pytest.fixture(scope="session")
def kafka_bootstrap(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``bootstrap.servers`` of a Kafka broker that answers for the whole session."""
    given = os.environ.get("HEADWATER_TEST_KAFKA")
    if given:
        yield given
        return
    default = load_settings().kafka.bootstrap_servers
    host, port = parse_bootstrap(default)
    if port_open(host, port) and kafka_answers(default, timeout_s=5.0):
        yield default
        return
    home = tmp_path_factory.mktemp("headwater-kafka")
    settings, status = _start_private(start_kafka, home, _kafka_sections)
    try:
        yield status.address
    finally:
        if status.state == "started":
            stop_kafka(settings)


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``redis://`` URL of a Redis that answers PING for the whole session."""
    given = os.environ.get("HEADWATER_TEST_REDIS")
    if given:
        yield given
        return
    default = load_settings().redis.url
    if redis_answers(default):
        yield default
        return
    home = tmp_path_factory.mktemp("headwater-redis")
    settings, status = _start_private(start_redis, home, _redis_sections)
    try:
        yield settings.redis.url
    finally:
        if status.state == "started":
            stop_redis(settings)


@pytest.fixture
def private_kafka(tmp_path: Path) -> Iterator[Settings]:
    """A broker of this test's own on free ports, for tests that stop or restart Kafka;
    stopped (by pid) at the end."""
    broker, controller = free_ports(2)
    own = load_settings(
        home=tmp_path / "kafka",
        kafka={"bootstrap_servers": f"127.0.0.1:{broker}"},
        stack={"controller_port": controller},
    )
    start_kafka(own)
    try:
        yield own
    finally:
        stop_kafka(own)
