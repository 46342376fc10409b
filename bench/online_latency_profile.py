"""Where the Headwater server's time goes under a load of `bench/online_latency.py`
(``--profile DIR``): two py-spy recordings, read back into the stages of the lookup path and
the top frames.

Its own module because it is an optional pass after the measurements (sampling perturbs
them), with its own reading of py-spy's raw output.
"""

from __future__ import annotations

import subprocess
import sys
import threading
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

__all__ = ["profile"]

_IDLE = ("Condition.wait", "Queue.get", "select (selectors", "_worker (concurrent")
# (label, frame function name): inclusive share of the stages of the lookup path.
_STAGES = (
    ("uvicorn + FastAPI on the event loop (whole request)", "RequestResponseCycle.run_asgi"),
    ("endpoint in the thread pool (online_features)", "create_app.<locals>.online_features"),
    ("  Catalog.definitions (freshness query to the catalog)", "Catalog.definitions"),
    ("  resolve_features (builds the FeatureSetPlans)", "resolve_features"),
    ("    of which compile_expression", "compile_expression"),
    ("  RedisOnlineStore.read (one pipeline per feature set)", "RedisOnlineStore.read"),
    ("    of which _decode (JSON of every tile)", "_decode"),
    ("  FeatureSetPlan.evaluate", "FeatureSetPlan.evaluate"),
    ("FastAPI serialize_response (return value -> JSON)", "serialize_response"),
)


def _read_raw(path: Path) -> tuple[Counter[str], Counter[str], int]:
    """Own and inclusive samples per frame of py-spy raw output, idle stacks dropped."""
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        frames = stack.split(";")
        if not stack or frames[-1].startswith(_IDLE):
            continue
        n = int(count)
        total += n
        own[frames[-1]] += n
        for name in {f.split(" (")[0] for f in frames}:
            inclusive[name] += n
    return own, inclusive, max(total, 1)


def profile(
    pid: int, out: Path, seconds: float, run_load: Callable[..., Any], console: Console
) -> None:
    """Two py-spy recordings of ``pid`` while ``run_load`` runs, raw collapsed stacks to
    ``out``-wall.txt and ``out``-gil.txt; prints the stages of the lookup path and top frames.

    wall: every thread sampled, idle ones (the thread pool waiting for work) dropped: where
    requests spend their time; a thread waiting to get the GIL back after a socket or SQLite
    call counts in that call. gil (``--gil``): only the thread holding the GIL: where the
    Python CPU goes (py-spy finds the holder in about half the samples here; shares hold).
    """
    out.parent.mkdir(parents=True, exist_ok=True)
    rate, duration = 200, max(1, int(seconds))
    py_spy = str(Path(sys.executable).parent / "py-spy")
    errors: list[str] = []

    def record() -> None:
        for view, extra in (("wall", []), ("gil", ["--gil"])):
            done = subprocess.run(
                [
                    py_spy,
                    "record",
                    "-p",
                    str(pid),
                    "-f",
                    "raw",
                    *extra,
                    "-r",
                    str(rate),
                    "-d",
                    str(duration),
                    "-o",
                    f"{out}-{view}.txt",
                ],
                capture_output=True,
                check=False,
            )
            if done.returncode != 0:
                errors.append(done.stderr.decode(errors="replace")[-500:])

    spy = threading.Thread(target=record)
    spy.start()
    result = run_load(2 * duration + 2.0)  # outlasts both recordings
    spy.join()
    if errors:
        console.print(f"py-spy failed: {errors[0]}")
        return
    views = {view: _read_raw(Path(f"{out}-{view}.txt")) for view in ("wall", "gil")}
    console.print(
        f"py-spy on the server at {result['requests_s']:,.0f} req/s (sampling slows it) -> {out}-*.txt"
    )
    stages = Table(title=f"{out.name}: where a request's time goes (inclusive % of samples)")
    stages.add_column("stage")
    for view in views:
        stages.add_column(f"{view} %", justify="right")
    for label, name in _STAGES:
        stages.add_row(
            label, *(f"{100 * inc[name] / total:.1f}" for _, inc, total in views.values())
        )
    console.print(stages)
    top = Table(title=f"{out.name}: top frames by own time")
    for view in views:
        top.add_column(f"{view} %", justify="right")
        top.add_column(f"{view} frame")
    rows = [own.most_common(12) for own, _, _ in views.values()]
    totals = [total for _, _, total in views.values()]
    for i in range(12):
        cells: list[str] = []
        for ranked, total in zip(rows, totals, strict=True):
            frame, n = ranked[i] if i < len(ranked) else ("", 0)
            cells += [f"{100 * n / total:.1f}" if frame else "", frame]
        top.add_row(*cells)
    console.print(top)
