"""The API while its Redis is stopped or paused (SIGSTOP) under load.

A real ``headwater serve`` over a PRIVATE redis-server (the session's shared one is never
touched). While Redis does not answer, online lookups are answered 503 with ``Retry-After``
and a body naming no address, within about the read timeout; ``/healthz`` keeps answering
within 100 ms because no Redis or catalog call runs on the event loop; ``/readyz`` says
``"redis": "unavailable"`` and nothing more. Once Redis is back, lookups answer 200 again.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Self

import httpx
import pytest

from headwater.processes import free_port
from headwater.schemas.settings import Settings, load_settings
from headwater.stack import start_redis, stop_redis
from tests.integration.pipeline import Deployment, make_deployment

pytestmark = pytest.mark.integration

HEALTHZ_BUDGET_S = 0.1
LOAD_CLIENTS = 16
PAUSE_S = 0.05
"""Each load client's pause between lookups: failed lookups come back at once, and 16
clients looping with none saturate this 2-core machine (CPU, not the event loop)."""


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[tuple[Settings, int]]:
    own = load_settings(
        home=tmp_path / "redis", redis={"url": f"redis://127.0.0.1:{free_port()}/0"}
    )
    status = start_redis(own)
    assert status.pid is not None
    try:
        yield own, status.pid
    finally:
        try:
            os.kill(status.pid, signal.SIGCONT)  # a paused server cannot stop
        except ProcessLookupError:
            pass  # the test stopped it and started another
        stop_redis(own)


class _Load:
    """``LOAD_CLIENTS`` threads sending online lookups back to back; counts the statuses."""

    def __init__(self, url: str, body: dict[str, object]) -> None:
        self.url, self.body = url, body
        self.statuses: Counter[int] = Counter()
        self.slowest_s = 0.0
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._run) for _ in range(LOAD_CLIENTS)]

    def _run(self) -> None:
        with httpx.Client(base_url=self.url, timeout=30) as client:
            while not self._stop.is_set():
                start = time.monotonic()
                response = client.post("/v1/online-features", json=self.body)
                took = time.monotonic() - start
                with self._lock:
                    self.statuses[response.status_code] += 1
                    self.slowest_s = max(self.slowest_s, took)
                self._stop.wait(PAUSE_S)

    def __enter__(self) -> Self:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=30)


def _lookup_body(deployment: Deployment) -> dict[str, object]:
    return {
        "features": [f"{deployment.feature_set}:spend_1h"],
        "entities": {"user_id": [f"u{i:05d}" for i in range(20)]},
    }


def _healthz_latencies(client: httpx.Client, count: int = 30) -> list[float]:
    took = []
    for _ in range(count):
        start = time.monotonic()
        response = client.get("/healthz")
        took.append(time.monotonic() - start)
        assert response.status_code == 200
        time.sleep(0.02)
    return took


def _assert_unavailable(client: httpx.Client, body: dict[str, object], redis_url: str) -> None:
    start = time.monotonic()
    response = client.post("/v1/online-features", json=body)
    took = time.monotonic() - start
    assert response.status_code == 503, response.text
    assert response.headers["retry-after"] == "1"
    assert "redis" in response.json()["detail"]
    assert redis_url.split("//")[1].split("/")[0] not in response.text  # no address
    assert took < 3.0, f"a lookup waited {took:.1f} s for a Redis that does not answer"
    ready = client.get("/readyz")
    assert ready.status_code == 503
    assert ready.json()["checks"]["redis"] == "unavailable"
    assert "redis://" not in ready.text and "127.0.0.1" not in ready.text


def _wait_ok(client: httpx.Client, body: dict[str, object], timeout_s: float = 15) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        response = client.post("/v1/online-features", json=body)
        if response.status_code == 200:
            assert response.json()["results"][0]["statuses"] == ["NOT_FOUND"]
            return
        assert time.monotonic() < deadline, f"lookups did not recover: {response.text}"
        time.sleep(0.2)


def test_paused_and_stopped_redis_answer_503_and_never_block_healthz(
    tmp_path: Path, kafka_bootstrap: str, private_redis: tuple[Settings, int]
) -> None:
    own, pid = private_redis
    with make_deployment(tmp_path, kafka_bootstrap, own.redis.url) as deployment:
        url = deployment.start_api()
        body = _lookup_body(deployment)
        with httpx.Client(base_url=url, timeout=30) as client:
            _wait_ok(client, body)
            assert client.get("/readyz").json()["checks"]["redis"] == "ok"

            # Paused: connections are accepted by the kernel, commands never answered.
            os.kill(pid, signal.SIGSTOP)
            try:
                with _Load(url, body) as load:
                    time.sleep(1.5)  # every load client is now waiting on the paused Redis
                    healthz = _healthz_latencies(client)
                    _assert_unavailable(client, body, own.redis.url)
                assert max(healthz) < HEALTHZ_BUDGET_S, sorted(healthz)[-5:]
                assert load.statuses[503] > 0 and set(load.statuses) == {503}, load.statuses
                assert load.slowest_s < 5.0, load.slowest_s
            finally:
                os.kill(pid, signal.SIGCONT)
            _wait_ok(client, body)
            assert client.get("/readyz").json()["checks"]["redis"] == "ok"

            # Stopped: connections are refused.
            stop_redis(own)
            with _Load(url, body) as load:
                time.sleep(1.0)
                healthz = _healthz_latencies(client)
                _assert_unavailable(client, body, own.redis.url)
            assert max(healthz) < HEALTHZ_BUDGET_S, sorted(healthz)[-5:]
            assert load.statuses[503] > 0 and set(load.statuses) == {503}, load.statuses

            status = start_redis(own)
            assert status.pid is not None
            _wait_ok(client, body)
