"""Child processes of Headwater commands (``worker``, ``serve``) for the demo and tests."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import httpx

from headwater.connectors.base import BaseOfflineStore
from headwater.connectors.catalog import Catalog
from headwater.connectors.kafka_groups import committed_offsets, consumer_lag
from headwater.connectors.topic_epochs import current_epoch, positions_prefix
from headwater.schemas.definitions import FeatureSet
from headwater.schemas.settings import KafkaSettings

__all__ = [
    "HeadwaterProcess",
    "free_port",
    "supervise",
    "supervise_workers",
    "wait_caught_up",
    "wait_http_ok",
]


class HeadwaterProcess:
    """``python -m headwater ARGS`` in its own session, logging to a file.

    Args:
        env: ``HEADWATER_*`` overrides on top of this process's environment.
    """

    def __init__(
        self, args: list[str], *, env: Mapping[str, str], log_file: Path, cwd: Path | None = None
    ) -> None:
        log_file.parent.mkdir(parents=True, exist_ok=True)
        self.log_file = log_file
        self._log = log_file.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "headwater", *args],
            env={**os.environ, **env},
            cwd=cwd,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def kill(self) -> None:
        """SIGKILL, as a crash would."""
        if self.alive():
            os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=30)
        self._log.close()

    def stop(self, timeout_s: float = 30.0) -> int:
        """SIGTERM, then SIGKILL after ``timeout_s``; returns the exit code."""
        if self.alive():
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=30)
        self._log.close()
        return int(self.proc.returncode)

    def tail(self, lines: int = 20) -> str:
        return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])


def free_port() -> int:
    """A loopback port that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_http_ok(url: str, process: HeadwaterProcess, timeout_s: float = 60.0) -> None:
    """Wait until ``url`` answers 200; raise with the process log if it died or timed out."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not process.alive():
            msg = f"process exited with {process.proc.returncode}:\n{process.tail()}"
            raise RuntimeError(msg)
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    msg = f"{url} did not answer within {timeout_s:g} s:\n{process.tail()}"
    raise TimeoutError(msg)


def wait_caught_up(
    kafka: KafkaSettings,
    group_id: str,
    topic: str,
    worker: HeadwaterProcess,
    timeout_s: float = 300.0,
    *,
    offline: tuple[BaseOfflineStore, Sequence[FeatureSet]] | None = None,
    catalog: Catalog | None = None,
) -> float:
    """Wait until the worker group committed every message of ``topic`` (so every event is
    in Redis) and, with ``offline``, until those feature sets' Delta tables hold them too
    (Delta commits are batched: they trail Redis by up to ``worker.offline_flush_seconds``
    under a steady stream, ``worker.offline_idle_flush_seconds`` after the last event).
    ``catalog`` is where epoch resets of the topic are recorded (positions are per epoch).
    Returns the seconds waited.
    """
    start = time.monotonic()

    def check() -> None:
        if not worker.alive():
            msg = f"worker exited with {worker.proc.returncode}:\n{worker.tail()}"
            raise RuntimeError(msg)
        if time.monotonic() - start > timeout_s:
            msg = f"worker still behind on {topic} after {timeout_s:g} s:\n{worker.tail()}"
            raise TimeoutError(msg)
        time.sleep(0.2)

    while consumer_lag(kafka, group_id, topic) > 0:
        check()
    if offline is not None:
        store, sets = offline
        committed = {p: o for p, o in committed_offsets(kafka, group_id, topic).items() if o > 0}
        prefix = positions_prefix(group_id, current_epoch(kafka, catalog, topic))
        for fs in sets:
            while store.committed_offsets(fs, prefix, committed) != {
                p: o - 1 for p, o in committed.items()
            }:
                check()
    return time.monotonic() - start


def supervise_workers(count: int) -> int:
    """Run ``count`` worker processes in one consumer group until stopped (``supervise``).

    One Python process uses one core (the GIL); this is the one-command way to use more.
    """
    return supervise(["worker"], count, "worker")


def supervise(args: list[str], count: int, what: str) -> int:
    """Run ``count`` processes of ``headwater ARGS`` until stopped; returns the exit code.

    SIGTERM or SIGINT stops them all gracefully. If one exits on its own (a crash: they only
    exit when stopped), the others are stopped too and its exit code is returned, so a
    supervisor above (systemd, Kubernetes) sees the failure instead of a deployment quietly
    running short of processes.
    """
    import logging

    log = logging.getLogger(f"headwater.{what}")
    children = [subprocess.Popen([sys.executable, "-m", "headwater", *args]) for _ in range(count)]
    stopping = False

    def stop(*_: object) -> None:
        nonlocal stopping
        stopping = True
        for child in children:
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    failed: int | None = None
    while any(child.poll() is None for child in children):
        if not stopping:
            exited = [c for c in children if c.poll() is not None]
            if exited:
                code = exited[0].returncode
                failed = (
                    128 - code if code < 0 else code or 1
                )  # killed by a signal: 128 + its number
                log.critical(
                    "%s process %d exited with code %s; stopping the other %d",
                    what,
                    exited[0].pid,
                    exited[0].returncode,
                    count - len(exited),
                )
                stop()
        time.sleep(0.2)
    if failed is None and not stopping:
        failed = next((c.returncode for c in children if c.returncode), 1)
    return failed or 0
