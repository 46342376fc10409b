"""Passwords of the local secure stack: generated once, kept in files only their owner reads.

``headwater up --secure`` needs a password for the broker's own identity, one for the client
user and one for Redis. Each is made once with ``secrets.token_urlsafe`` and kept under
``<home>/stack/secrets`` (directory 0700, files 0600), so a second ``up`` and every client
use the same ones, and no password is ever passed on a command line: services read them from
their configuration files (also 0600) and clients from ``HEADWATER_*`` variables.
"""

from __future__ import annotations

import os
import secrets
import stat
from pathlib import Path

from headwater.schemas.settings import Settings
from headwater.stack.errors import StackConfigError

__all__ = ["secret_path", "secrets_dir", "stack_secret", "write_private"]

_BYTES = 24


def secrets_dir(settings: Settings) -> Path:
    """``<home>/stack/secrets``, absolute: the printed instructions must work from anywhere."""
    return settings.home.expanduser().resolve() / "stack" / "secrets"


def secret_path(settings: Settings, name: str) -> Path:
    """The file of the secret ``name`` (``kafka-admin``, ``kafka-client``, ``redis``)."""
    return secrets_dir(settings) / f"{name}.password"


def write_private(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` with mode 0600 from the first byte (never world-readable,
    not even between create and chmod), replacing it atomically."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)  # O_CREAT's mode is filtered by the umask; make it exact
        os.write(fd, text.encode())
    finally:
        os.close(fd)
    tmp.replace(path)


def stack_secret(settings: Settings, name: str) -> str:
    """The secret ``name``, generated and stored on first use.

    Raises:
        StackConfigError: the file exists but others may read it (it may have leaked), or
            it is empty.
    """
    path = secret_path(settings, name)
    if not path.exists():
        directory = path.parent
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        directory.chmod(0o700)
        write_private(path, secrets.token_urlsafe(_BYTES) + "\n")
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        msg = (
            f"{path} is readable by other users (mode {mode:o}): delete it (a new password is "
            "generated on the next `headwater up --secure`) or `chmod 600` it"
        )
        raise StackConfigError(msg)
    value = path.read_text().strip()
    if not value:
        msg = f"{path} is empty: delete it and run `headwater up --secure` again"
        raise StackConfigError(msg)
    return value
