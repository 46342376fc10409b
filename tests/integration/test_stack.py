"""``headwater up`` / ``down`` against a real KRaft broker and a real redis-server.

Each test uses its own ``home`` and free ports, so it never touches a developer's stack.
"""

from __future__ import annotations

import socket
import subprocess
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import redis
from confluent_kafka import Consumer, Producer

from headwater.schemas.settings import Settings, load_settings
from headwater.stack import ServiceStatus, down, up
from headwater.stack.errors import PortInUseError
from headwater.stack.kafka import kafka_paths
from headwater.stack.process import port_open
from headwater.stack.redis import redis_paths, start_redis
from tests.integration.services import free_ports

pytestmark = pytest.mark.integration


def _settings(home: Path) -> Settings:
    broker, controller, redis_port = free_ports(3)
    return load_settings(
        home=home,
        kafka={"bootstrap_servers": f"127.0.0.1:{broker}"},
        redis={"url": f"redis://127.0.0.1:{redis_port}/0"},
        stack={"controller_port": controller},
    )


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Settings]:
    """Settings on free ports; whatever a test leaves running is stopped afterwards."""
    settings = _settings(tmp_path / "home")
    yield settings
    down(settings)


@pytest.fixture
def stranger() -> Iterator[subprocess.Popen[bytes]]:
    """A live process that is neither java nor redis-server, to stand in for a recycled pid."""
    proc = subprocess.Popen(["sleep", "600"])
    yield proc
    proc.kill()
    proc.wait()


def _by_name(statuses: list[ServiceStatus]) -> dict[str, ServiceStatus]:
    return {s.name: s for s in statuses}


def _kafka_round_trip(bootstrap: str) -> None:
    # The topic does not exist yet: this also proves auto.create.topics.enable works.
    topic = f"stack-smoke-{uuid.uuid4().hex[:8]}"
    producer = Producer({"bootstrap.servers": bootstrap})
    producer.produce(topic, key=b"k", value=b"hello")
    assert producer.flush(30) == 0
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"smoke-{topic}",
            "auto.offset.reset": "earliest",
        }
    )
    try:
        consumer.subscribe([topic])
        for _ in range(60):
            msg = consumer.poll(1.0)
            if msg is not None and msg.error() is None:
                assert (msg.key(), msg.value()) == (b"k", b"hello")
                return
        pytest.fail("the produced message was not consumed back within 60 s")
    finally:
        consumer.close()


def _redis_set_get(url: str) -> None:
    client = redis.Redis.from_url(url)
    try:
        client.set("headwater:stack:smoke", b"42")
        assert client.get("headwater:stack:smoke") == b"42"
    finally:
        client.close()


def _gone(pid: int) -> bool:
    return not Path(f"/proc/{pid}").exists()


def test_up_reuse_down_cycle(stack: Settings, stranger: subprocess.Popen[bytes]) -> None:
    # Stale pid files pointing at an unrelated live process must be ignored, not reused.
    kafka_pid_file, redis_pid_file = kafka_paths(stack).pid_file, redis_paths(stack).pid_file
    for pid_file in (kafka_pid_file, redis_pid_file):
        pid_file.parent.mkdir(parents=True, exist_ok=True)
        pid_file.write_text(f"{stranger.pid}\n")

    first = _by_name(up(stack))
    assert {s.state for s in first.values()} == {"started"}
    kafka_pid, redis_pid = first["kafka"].pid, first["redis"].pid
    assert kafka_pid is not None and redis_pid is not None
    assert stranger.pid not in (kafka_pid, redis_pid)
    assert int(kafka_pid_file.read_text()) == kafka_pid
    assert int(redis_pid_file.read_text()) == redis_pid
    _kafka_round_trip(first["kafka"].address)
    _redis_set_get(stack.redis.url)

    second = _by_name(up(stack))
    assert second["kafka"].state == second["redis"].state == "reused"
    assert (second["kafka"].pid, second["redis"].pid) == (kafka_pid, redis_pid)

    stopped = _by_name(down(stack))
    assert stopped["kafka"].state == stopped["redis"].state == "stopped"
    assert (stopped["kafka"].pid, stopped["redis"].pid) == (kafka_pid, redis_pid)
    assert _gone(kafka_pid) and _gone(redis_pid)
    host, port = first["kafka"].address.rsplit(":", 1)
    assert not port_open(host, int(port))
    assert not port_open("127.0.0.1", int(stack.redis.url.rsplit(":", 1)[1].split("/")[0]))
    assert not kafka_pid_file.exists() and not redis_pid_file.exists()

    again = _by_name(down(stack))
    assert again["kafka"].state == again["redis"].state == "not running"
    assert again["kafka"].pid is None and again["redis"].pid is None
    assert stranger.poll() is None, "down must never signal a process it did not start"


def test_up_reuses_services_it_did_not_start(stack: Settings, tmp_path: Path) -> None:
    started = _by_name(up(stack))
    other = stack.model_copy(update={"home": tmp_path / "other-home"})

    reused = _by_name(up(other))
    assert reused["kafka"].state == reused["redis"].state == "reused"
    assert reused["kafka"].pid is None and reused["redis"].pid is None

    # Not ours under the other home, so down there must leave both running.
    assert {s.state for s in down(other)} == {"not running"}
    assert not _gone(started["kafka"].pid or 0) and not _gone(started["redis"].pid or 0)
    _redis_set_get(stack.redis.url)


def test_down_leaves_a_recycled_pid_alone(
    stack: Settings, stranger: subprocess.Popen[bytes]
) -> None:
    for pid_file in (kafka_paths(stack).pid_file, redis_paths(stack).pid_file):
        pid_file.parent.mkdir(parents=True, exist_ok=True)
        pid_file.write_text(f"{stranger.pid}\n")

    assert {s.state for s in down(stack)} == {"not running"}
    assert stranger.poll() is None
    assert not kafka_paths(stack).pid_file.exists()


def test_redis_port_held_by_something_else_is_a_clear_error(stack: Settings) -> None:
    port = int(stack.redis.url.rsplit(":", 1)[1].split("/")[0])
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", port))
        squatter.listen()
        with pytest.raises(PortInUseError, match=f"port {port} .* in use"):
            start_redis(stack)
    assert not redis_paths(stack).pid_file.exists()


def test_concurrent_starts_launch_one_server(stack: Settings) -> None:
    with ThreadPoolExecutor(max_workers=3) as pool:
        statuses = list(pool.map(lambda _: start_redis(stack), range(3)))
    assert sorted(s.state for s in statuses) == ["reused", "reused", "started"]
    assert len({s.pid for s in statuses}) == 1
