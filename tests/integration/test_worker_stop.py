"""A supervisor's SIGTERM that arrives while the worker restarts itself for new definitions
stops it: the worker must not swallow it in the restart and run on until it is killed."""

from __future__ import annotations

import os
import signal
import time

import pytest

from headwater.apply import apply_definitions
from tests.integration.pipeline import Deployment

pytestmark = pytest.mark.integration


def _wait_log(deployment: Deployment, text: str, count: int) -> None:
    log = deployment.processes[0].log_file
    deadline = time.monotonic() + 60
    while log.read_text().count(text) < count:
        assert time.monotonic() < deadline, f"no {text!r} x{count} in the worker log"
        time.sleep(0.05)


def test_sigterm_during_a_reload_stops_the_worker(deployment: Deployment) -> None:
    worker = deployment.start_worker()
    _wait_log(deployment, "[^Worker]: Ready", 1)
    path = deployment.defs_dir / "features.yaml"
    path.write_text(path.read_text().replace("owner: risk-team", "owner: fraud-ml"))
    apply_definitions(deployment.settings, deployment.defs_dir)
    # The worker saw the change and sent itself SIGTERM to restart; the supervisor's comes
    # while it stops.
    _wait_log(deployment, "definitions changed in the catalog", 1)
    os.kill(worker.proc.pid, signal.SIGTERM)
    started = time.monotonic()
    code = worker.proc.wait(timeout=20)
    assert code == 0
    assert time.monotonic() - started < 20
    assert worker.log_file.read_text().count("[^Worker]: Ready") == 1  # it did not restart


def test_a_reload_alone_restarts_the_worker_in_place(deployment: Deployment) -> None:
    worker = deployment.start_worker()
    _wait_log(deployment, "[^Worker]: Ready", 1)
    path = deployment.defs_dir / "features.yaml"
    path.write_text(path.read_text().replace("owner: risk-team", "owner: fraud-ml"))
    apply_definitions(deployment.settings, deployment.defs_dir)
    _wait_log(deployment, "[^Worker]: Ready", 2)  # the same process, started again
    assert worker.alive()
    started = time.monotonic()
    assert worker.stop(timeout_s=20) == 0
    assert time.monotonic() - started < 10
