"""``headwater serve --workers 2``: two server processes on one port, one app each.

Real API processes over the deployment's Kafka, Redis and catalog: both processes start and
answer, lookups and pushes work through them, the key check holds in each, and stopping the
parent stops them all.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import httpx
import pytest

from headwater.processes import HeadwaterProcess, free_port, wait_http_ok
from tests.integration.pipeline import Deployment

pytestmark = pytest.mark.integration


def _children(pid: int) -> list[int]:
    out = subprocess.run(
        ["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True, text=True, check=False
    )
    return [int(p) for p in out.stdout.split()]


def _servers(pid: int) -> list[int]:
    """The server processes under uvicorn's supervisor (not its resource tracker)."""
    return [
        child
        for child in _children(pid)
        if "multiprocessing.resource_tracker"
        not in Path(f"/proc/{child}/cmdline").read_bytes().decode(errors="replace")
    ]


def test_two_server_processes_share_the_port(deployment: Deployment) -> None:
    port = free_port()
    api = HeadwaterProcess(
        ["serve", "--workers", "2", "--port", str(port)],
        env=deployment.env,
        log_file=deployment.settings.home / "api-workers.log",
    )
    deployment.processes.append(api)
    url = f"http://127.0.0.1:{port}"
    wait_http_ok(f"{url}/healthz", api)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and (
        len(_servers(api.pid)) < 2 or api.tail(30).count("one of 2 process(es)") < 2
    ):  # both started and logged their start-up line
        time.sleep(0.2)
    servers = _servers(api.pid)
    assert len(servers) == 2, (servers, api.tail(30))
    assert api.tail(30).count("one of 2 process(es)") == 2

    fs = deployment.feature_set
    event = {
        "transaction_id": "t1",
        "user_id": "u1",
        "merchant_id": "m1",
        "amount": 2.5,
        "currency": "EUR",
        "status": "approved",
        "event_time": time.time_ns() // 1_000_000,
    }
    for _ in range(20):  # new connections: the kernel spreads them over both processes
        lookup = httpx.post(
            f"{url}/v1/online-features",
            json={"features": [f"{fs}:txn_count_1h"], "entities": {"user_id": ["u1"]}},
            timeout=10,
        )
        assert lookup.status_code == 200, lookup.text
        assert lookup.json()["results"][0]["statuses"] == ["NOT_FOUND"]
        pushed = httpx.post(
            f"{url}/v1/push/{deployment.source}", json={"events": [event]}, timeout=30
        )
        assert pushed.status_code == 202 and pushed.json() == {"accepted": 1}, pushed.text

    # Keys: every process sees the first one (the catalog is shared), none answers without.
    made = deployment.cli("keys", "create", "--scope", "read")
    assert made.returncode == 0, made.stderr
    time.sleep(0.1)
    for _ in range(10):
        assert httpx.get(f"{url}/v1/feature-sets", timeout=10).status_code == 401
        ok = httpx.get(
            f"{url}/v1/feature-sets",
            headers={"X-API-Key": made.stdout.strip()},
            timeout=10,
        )
        assert ok.status_code == 200

    assert api.stop() == 0
    for pid in servers:
        assert (
            not Path(f"/proc/{pid}").exists() or "zombie" in Path(f"/proc/{pid}/status").read_text()
        )
