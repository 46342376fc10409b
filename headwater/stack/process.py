"""Process plumbing shared by the Kafka and Redis launchers: spawn, pid files, stop, wait.

A pid file is the only proof that we started a process, so ``down`` never signals anything
that is not recorded in one, and it re-checks ``/proc/<pid>/cmdline`` first because a pid
can be recycled by an unrelated program after a reboot or a crash.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

__all__ = [
    "cmdline",
    "file_lock",
    "pid_alive",
    "pid_runs",
    "port_open",
    "read_pid_file",
    "spawn_detached",
    "stop_recorded",
    "tail",
    "terminate",
    "wait_until",
    "write_pid_file",
]

# Popen objects of services started by this interpreter. Keeping them alive lets us reap the
# child when it exits (no zombie keeps /proc/<pid> around) and avoids the ResourceWarning that
# Popen.__del__ raises for a child that is still running.
_CHILDREN: dict[int, subprocess.Popen[bytes]] = {}


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``path`` so concurrent ``up``/``down`` calls take turns.

    Without it, two commands (or a CLI and a test session) could both find no broker and
    launch two, or both resolve jars into the same cache. The kernel drops the lock if we die.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def spawn_detached(argv: Sequence[str], *, log_path: Path, cwd: Path | None = None) -> int:
    """Start ``argv`` in its own session with stdout and stderr written to ``log_path``.

    A new session keeps the service alive after the CLI exits and away from the terminal's
    Ctrl-C, which is what a background service needs. The log is truncated so that its tail,
    quoted when a start fails, belongs to this start and not an older one.

    Returns:
        The pid of the new process.
    """
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=cwd,
            start_new_session=True,
            close_fds=True,
        )
    _CHILDREN[proc.pid] = proc
    return proc.pid


def pid_alive(pid: int) -> bool:
    """Whether ``pid`` is a running (not zombie) process; reaps our own exited children."""
    proc = _CHILDREN.get(pid)
    if proc is not None:
        # For our own child, waitpid is authoritative and also reaps it, so no zombie is left.
        if proc.poll() is None:
            return True
        del _CHILDREN[pid]
        return False
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return False
    # The command name in parentheses may itself contain spaces and parentheses.
    state = stat.rsplit(")", 1)[-1].split()[0]
    return state not in ("Z", "X")


def cmdline(pid: int) -> list[str] | None:
    """The argv of ``pid`` from /proc, or ``None`` when the process is gone."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (FileNotFoundError, ProcessLookupError):
        return None
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def pid_runs(pid: int, program: str, marker: str | None = None) -> bool:
    """Whether ``pid`` is alive and still the ``program`` we started (not a recycled pid).

    Args:
        pid: process id read from our pid file.
        program: basename of the executable, e.g. ``java`` or ``redis-server``.
        marker: an argument that must also appear (``kafka.Kafka``), since many things run java.
    """
    if not pid_alive(pid):
        return False
    argv = cmdline(pid)
    if not argv:
        return False
    # redis-server rewrites its title to "redis-server 127.0.0.1:6379" in argv[0].
    if os.path.basename(argv[0].split(" ", 1)[0]) != program:
        return False
    return marker is None or any(marker in arg for arg in argv)


def read_pid_file(path: Path) -> int | None:
    """The pid recorded in ``path``, or ``None`` when the file is missing or unreadable."""
    try:
        return int(path.read_text().strip())
    except (FileNotFoundError, ValueError):
        return None


def write_pid_file(path: Path, pid: int) -> None:
    """Record ``pid`` atomically so a concurrent reader never sees a half-written number."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    tmp.write_text(f"{pid}\n")
    tmp.replace(path)


def terminate(pid: int, timeout_s: float = 30.0) -> None:
    """SIGTERM ``pid``, wait up to ``timeout_s`` for a clean exit, then SIGKILL it."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    if wait_until(lambda: not pid_alive(pid), timeout_s):
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    wait_until(lambda: not pid_alive(pid), 10.0)


def stop_recorded(
    pid_file: Path, program: str, marker: str | None = None, timeout_s: float = 30.0
) -> int | None:
    """Stop the process recorded in ``pid_file`` if it is still ours, and forget it.

    Returns:
        The pid that was stopped, or ``None`` when nothing of ours was running (missing pid
        file, dead process, or a pid now used by another program, which is left alone).
    """
    pid = read_pid_file(pid_file)
    if pid is None:
        pid_file.unlink(missing_ok=True)
        return None
    if not pid_runs(pid, program, marker):
        pid_file.unlink(missing_ok=True)
        return None
    terminate(pid, timeout_s)
    pid_file.unlink(missing_ok=True)
    return pid


def port_open(host: str, port: int, timeout_s: float = 0.5) -> bool:
    """Whether something accepts TCP connections at ``host:port``."""
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return True
    except OSError:
        return False


def wait_until(predicate: Callable[[], bool], timeout_s: float, interval_s: float = 0.1) -> bool:
    """Poll ``predicate`` until it is true or ``timeout_s`` passes; returns its last value."""
    deadline = time.monotonic() + timeout_s
    while True:
        if predicate():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval_s)


def tail(path: Path, lines: int = 20) -> str:
    """The last ``lines`` lines of a log file, for error messages (empty if there is none)."""
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            fh.seek(max(0, fh.tell() - 64 * 1024))
            text = fh.read().decode(errors="replace")
    except FileNotFoundError:
        return ""
    return "\n".join(text.splitlines()[-lines:])
