"""The benchmarks' peers (Feast, Quix Streams) in a virtualenv of their own.

Headwater never depends on them: `.bench-venv/` in the project root (ignored by git) is created
the first time a benchmark runs a peer, from PyPI with the pins below, and the peer scripts in
`bench/peers/` run with its interpreter as subprocesses that print one JSON line of results.
A machine that cannot install them (no network) still runs the benchmarks: the peer columns
then say why they are missing.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

__all__ = ["PEERS", "peer_python", "run_peer", "start_peer"]

ROOT = Path(__file__).resolve().parent.parent
VENV = ROOT / ".bench-venv"
PEERS = ("feast[redis,duckdb]==0.67.*", "quixstreams==3.28.*", "fastavro>=1.9")
"""What the peer venv holds: the releases the benchmarks were written against."""
SCRIPTS = Path(__file__).with_name("peers")


def peer_python() -> Path:
    """The peer venv's interpreter, creating or updating the venv when its pins changed.

    Raises:
        RuntimeError: the venv could not be made (e.g. PyPI unreachable), with pip's output.
    """
    python = VENV / "bin" / "python"
    stamp = VENV / ".pins"
    pins = "\n".join(PEERS)
    if python.exists() and stamp.exists() and stamp.read_text() == pins:
        return python
    print(f"peers: installing {', '.join(PEERS)} into {VENV} (benchmark-only)", flush=True)
    # The base interpreter, not the product venv's: the peers must not see its packages.
    base = Path(getattr(sys, "_base_executable", sys.executable))
    steps = [
        [str(base), "-m", "venv", str(VENV)],
        [str(python), "-m", "pip", "install", "-q", "--upgrade", "pip"],
        [str(python), "-m", "pip", "install", "-q", *PEERS],
    ]
    for step in steps:
        done = subprocess.run(step, capture_output=True, text=True, check=False)
        if done.returncode:
            msg = f"`{' '.join(step)}` failed: {(done.stderr or done.stdout)[-1500:]}"
            raise RuntimeError(msg)
    stamp.write_text(pins)
    return python


def run_peer(script: str, *args: Any, timeout: float = 1800) -> dict[str, Any]:
    """Run ``bench/peers/<script>`` with the peer venv; its last stdout line, as JSON.

    Raises:
        RuntimeError: the venv or the script failed (its stderr's tail in the message).
    """
    done = subprocess.run(
        [str(peer_python()), str(SCRIPTS / script), *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    lines = done.stdout.strip().splitlines()
    if done.returncode or not lines:
        msg = f"peer {script} failed ({done.returncode}): {done.stderr[-2000:]}"
        raise RuntimeError(msg)
    result: dict[str, Any] = json.loads(lines[-1])
    return result


def start_peer(script: str, *args: Any, log: Path) -> subprocess.Popen[bytes]:
    """Start ``bench/peers/<script>`` (a server) with the peer venv, output to ``log``."""
    with log.open("ab") as out:
        return subprocess.Popen(
            [str(peer_python()), str(SCRIPTS / script), *map(str, args)],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
