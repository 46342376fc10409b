"""Session fixture that hands tests a real PostgreSQL server for the catalog.

Resolution order:

1. ``HEADWATER_TEST_POSTGRES``, when set, is used as given (a SQLAlchemy URL such as
   ``postgresql+psycopg://postgres@127.0.0.1:5432/headwater_test``).
2. Otherwise a private cluster is created with ``initdb`` in a fresh directory under ``/tmp``
   and started with ``pg_ctl`` on a free loopback port; exactly that cluster is stopped and
   its directory removed when the session ends. Debian's default cluster (``pg_ctlcluster``,
   port 5432) is never touched. When no PostgreSQL binaries are installed, the fixture runs
   ``apt-get install -y postgresql`` (with ``apt-get update`` only if that fails first).

PostgreSQL refuses to run as root, so as root every server command runs as the ``postgres``
user (``runuser -u postgres --``); the directory is created under ``/tmp`` and owned by that
user because pytest's own temp dirs may not be traversable by it.

Register it through ``pytest_plugins`` in ``tests/conftest.py``.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.services import free_ports

__all__ = ["postgres_url"]

_PG_ROOT = Path("/usr/lib/postgresql")
_DATABASE = "headwater_test"
_PORT_ATTEMPTS = 3
_COMMAND_TIMEOUT_S = 120
_INSTALL_TIMEOUT_S = 900
_PORT_TAKEN = re.compile(r"could not bind|Address already in use")


def _bin_dir() -> Path | None:
    """``bin`` of the highest installed PostgreSQL major version that has ``initdb``."""
    found = [p.parent for p in _PG_ROOT.glob("*/bin/initdb") if p.parent.parent.name.isdigit()]
    return max(found, key=lambda b: int(b.parent.name), default=None)


def _run(cmd: list[str], *, timeout: float = _COMMAND_TIMEOUT_S, cwd: Path | None = None) -> None:
    """Run ``cmd``; on failure raise with its output, which is what explains the problem."""
    result = subprocess.run(
        cmd, capture_output=True, text=True, timeout=timeout, check=False, cwd=cwd
    )
    if result.returncode != 0:
        msg = f"{' '.join(cmd)} exited with {result.returncode}:\n{result.stdout}{result.stderr}"
        raise RuntimeError(msg)


def _install() -> Path:
    """Install Debian's ``postgresql`` package and return its ``bin`` directory."""
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        msg = (
            f"no PostgreSQL under {_PG_ROOT} and it cannot be installed here (needs root and "
            "apt-get); install postgresql or set HEADWATER_TEST_POSTGRES to a server's URL"
        )
        raise RuntimeError(msg)
    env_install = [
        "env",
        "DEBIAN_FRONTEND=noninteractive",
        "apt-get",
        "install",
        "-y",
        "postgresql",
    ]
    try:
        _run(env_install, timeout=_INSTALL_TIMEOUT_S)
    except RuntimeError:
        _run(["apt-get", "update"], timeout=_INSTALL_TIMEOUT_S)
        _run(env_install, timeout=_INSTALL_TIMEOUT_S)
    found = _bin_dir()
    if found is None:
        msg = f"apt-get install postgresql succeeded but no {_PG_ROOT}/*/bin/initdb exists"
        raise RuntimeError(msg)
    return found


def _as_server_user() -> list[str]:
    """Prefix that runs a command as ``postgres`` when we are root (the server refuses root)."""
    return ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []


def _private_dir() -> Path:
    """A fresh directory the server user owns, under ``/tmp`` so that user can reach it."""
    path = Path(tempfile.mkdtemp(prefix="headwater-pg-", dir="/tmp"))
    path.chmod(0o700)
    if os.geteuid() == 0:
        shutil.chown(path, user="postgres", group="postgres")
    return path


def _start(bin_dir: Path, base: Path, port: int) -> None:
    """Start the cluster in ``base/data`` on ``port``; raises when it does not come up."""
    options = (
        f"-p {port} -k {base} -c listen_addresses=127.0.0.1 -c fsync=off -c full_page_writes=off"
    )
    _run(
        [
            *_as_server_user(),
            str(bin_dir / "pg_ctl"),
            "-D",
            str(base / "data"),
            "-o",
            options,
            "-l",
            str(base / "postgres.log"),
            "-w",
            "-t",
            "60",
            "start",
        ],
        cwd=base,
    )


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """SQLAlchemy URL (``postgresql+psycopg://...``) of a PostgreSQL database for the session."""
    given = os.environ.get("HEADWATER_TEST_POSTGRES")
    if given:
        yield given
        return
    began = time.monotonic()
    bin_dir = _bin_dir() or _install()
    base = _private_dir()
    try:
        _run(
            [
                *_as_server_user(),
                str(bin_dir / "initdb"),
                "-D",
                str(base / "data"),
                "-A",
                "trust",
                "-U",
                "postgres",
                "-E",
                "UTF8",
                "--no-locale",
                "--no-sync",
            ],
            cwd=base,
        )
        log = base / "postgres.log"
        for attempt in range(1, _PORT_ATTEMPTS + 1):
            (port,) = free_ports(1)
            seen = log.stat().st_size if log.exists() else 0
            try:
                _start(bin_dir, base, port)
            except RuntimeError as exc:
                new_lines = log.read_bytes()[seen:].decode(errors="replace") if log.exists() else ""
                if attempt == _PORT_ATTEMPTS or not _PORT_TAKEN.search(new_lines):
                    msg = f"{exc}\nserver log:\n{new_lines}"
                    raise RuntimeError(msg) from exc
                continue
            break
        _run(
            [
                str(bin_dir / "createdb"),
                "-h",
                "127.0.0.1",
                "-p",
                str(port),
                "-U",
                "postgres",
                _DATABASE,
            ]
        )
        print(
            f"\nprivate PostgreSQL {bin_dir.parent.name} on 127.0.0.1:{port} in {base} "
            f"ready after {time.monotonic() - began:.1f} s"
        )
        yield f"postgresql+psycopg://postgres@127.0.0.1:{port}/{_DATABASE}"
    finally:
        try:
            if (base / "data" / "postmaster.pid").exists():  # ours, even if half started
                _run(
                    [
                        *_as_server_user(),
                        str(bin_dir / "pg_ctl"),
                        "-D",
                        str(base / "data"),
                        "-m",
                        "fast",
                        "-w",
                        "stop",
                    ]
                )
        finally:
            shutil.rmtree(base, ignore_errors=True)
