"""Ingestion bookkeeping and the ``--schedule`` loop.

The ledger (``<home>/ingest/<source>.json``) remembers every file ingested (path, size,
mtime and the sha256 of its first MiB) and, per SQL query, the highest watermark value
ingested with the fingerprints of the rows at that value (``headwater.watermarks``). The caller records an entry only after Kafka acknowledged everything it produced,
so a run killed half-way repeats nothing completed and skips nothing that was not: a rerun
re-produces at most the one file (or query) in flight, and those duplicates carry the same
``hw.event_id`` header as the first attempt.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from headwater.schemas.errors import ConfigError
from headwater.watermarks import WatermarkState

__all__ = ["FileIdentity", "Ledger", "next_run_after", "parse_schedule", "run_schedule"]

_MIB = 1 << 20
_DURATION = re.compile(r"(\d+)\s*(ms|s|m|h|d)")
_DURATIONS = re.compile(r"(?:\d+\s*(?:ms|s|m|h|d)\s*)+")
_UNIT_S = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


@dataclass(frozen=True, slots=True)
class FileIdentity:
    """A file as the ledger knows it; a changed size, mtime or head makes it a new file."""

    path: str
    size: int
    mtime_ns: int
    head_sha256: str

    @classmethod
    def of(cls, path: Path) -> FileIdentity:
        stat = path.stat()
        with path.open("rb") as fh:
            head = hashlib.sha256(fh.read(_MIB)).hexdigest()
        return cls(str(path.resolve()), stat.st_size, stat.st_mtime_ns, head)

    @property
    def text(self) -> str:
        return f"file:{self.path}:{self.size}:{self.mtime_ns}:{self.head_sha256}"


def _dump_value(value: Any) -> dict[str, Any]:
    if isinstance(value, datetime):
        return {"type": "datetime", "value": value.isoformat()}
    if isinstance(value, date):
        return {"type": "date", "value": value.isoformat()}
    if isinstance(value, Decimal):
        return {"type": "decimal", "value": str(value)}
    if isinstance(value, bool | int | float | str):
        return {"type": type(value).__name__, "value": value}
    msg = (
        f"cannot keep a watermark of type {type(value).__name__}; use a number, text or time column"
    )
    raise ConfigError(msg)


def _load_value(stored: dict[str, Any]) -> Any:
    kind, value = stored["type"], stored["value"]
    if kind == "datetime":
        return datetime.fromisoformat(value)
    if kind == "date":
        return date.fromisoformat(value)
    if kind == "decimal":
        return Decimal(value)
    return value


class Ledger:
    """What one source has ingested; ``save`` writes it atomically."""

    def __init__(self, path: Path) -> None:
        self.path = path
        data: dict[str, Any] = {}
        if path.exists():
            try:
                data = json.loads(path.read_text(encoding="utf-8"))
            except ValueError as exc:
                msg = f"ingest bookkeeping {path} is not valid JSON ({exc}); fix or remove it"
                raise ConfigError(msg) from exc
        self.files: dict[str, dict[str, Any]] = data.get("files", {})
        self.watermarks: dict[str, dict[str, Any]] = data.get("watermarks", {})

    @classmethod
    def for_source(cls, home: Path, source: str) -> Ledger:
        return cls(home / "ingest" / f"{source}.json")

    def is_done(self, identity: FileIdentity) -> bool:
        entry = self.files.get(identity.path)
        return entry is not None and all(entry.get(k) == v for k, v in asdict(identity).items())

    def mark_file(self, identity: FileIdentity, rows: int) -> None:
        ingested_at = datetime.now(UTC).isoformat()
        self.files[identity.path] = {**asdict(identity), "rows": rows, "ingested_at": ingested_at}

    def watermark(self, key: str) -> WatermarkState | None:
        """The SQL query's state after its last recorded run, or ``None`` before the first."""
        stored = self.watermarks.get(key)
        if stored is None:
            return None
        return WatermarkState(_load_value(stored), stored.get("at_value"))

    def set_watermark(self, key: str, state: WatermarkState) -> None:
        entry = _dump_value(state.value)
        if state.at_value is not None:
            entry["at_value"] = dict(state.at_value)
        self.watermarks[key] = entry

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".json.tmp")
        tmp.write_text(
            json.dumps({"files": self.files, "watermarks": self.watermarks}, indent=1),
            encoding="utf-8",
        )
        os.replace(tmp, self.path)


def parse_schedule(text: str) -> Callable[[float], float]:
    """``--schedule``: a duration (``15m``, ``1h30m``, ``45s``) or a 5-field cron expression.

    Returns a function from the previous run's start (epoch s) to the next run's start.

    Raises:
        ConfigError: neither a duration nor a valid cron expression.
    """
    spec = text.strip()
    if _DURATIONS.fullmatch(spec):
        seconds = sum(int(n) * _UNIT_S[u] for n, u in _DURATION.findall(spec))
        if seconds <= 0:
            raise ConfigError(f"--schedule {text!r}: the interval must be positive")
        return lambda last_start: last_start + seconds
    if len(spec.split()) == 5:
        try:
            from croniter import croniter  # type: ignore[import-untyped]  # no stubs in the venv
        except ImportError as exc:  # pragma: no cover - croniter is installed with the project
            raise ConfigError(
                f"--schedule {text!r}: cron expressions need the croniter package"
            ) from exc
        if not croniter.is_valid(spec):
            raise ConfigError(f"--schedule {text!r} is not a valid cron expression")

        def next_cron(last_start: float) -> float:
            return float(croniter(spec, datetime.fromtimestamp(last_start, UTC)).get_next(float))

        return next_cron
    msg = (
        f"--schedule {text!r} is neither a duration (15m, 1h30m, 45s) nor a 5-field cron expression"
    )
    raise ConfigError(msg)


def next_run_after(next_time: Callable[[float], float], last_start: float, now: float) -> float:
    """The next start; a run longer than its interval is followed at once, missed runs merged."""
    return max(next_time(last_start), now)


def run_schedule(
    run_once: Callable[[int], None],
    schedule: str,
    *,
    max_runs: int | None = None,
    clock: Callable[[], float] = time.time,
    sleep: Callable[[float], None] = time.sleep,
) -> int:
    """Call ``run_once(run_number)`` now and then on ``schedule``; returns the runs made.

    ``max_runs`` ends the loop after that many runs (``None``: until interrupted). An
    exception from a run ends the loop (the ledger keeps what earlier runs completed).
    """
    next_time = parse_schedule(schedule)
    runs = 0
    while max_runs is None or runs < max_runs:
        started = clock()
        run_once(runs + 1)
        runs += 1
        if max_runs is not None and runs >= max_runs:
            break
        now = clock()
        delay = next_run_after(next_time, started, now) - now
        if delay > 0:
            sleep(delay)
    return runs
