"""The results of `bench/online_latency.py`: Headwater next to the bare baseline per load,
then the targets it is held to (met or not).

Its own module so the targets sit apart from the machinery that measures them.
"""

from __future__ import annotations

import os
import platform
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

__all__ = ["print_report"]


def print_report(
    console: Console,
    results: dict[str, dict[str, dict[str, float]]],
    *,
    seconds: float,
    clients: int,
    bare_style: str,
    work: Path,
) -> None:
    """Print ``results`` (server -> load -> measures: ``headwater``, ``bare``, and the peers
    ``feast``, ``feast tuned``, ``feast sdk`` when measured) as one table, then each target; ``work`` is where the servers' logs are."""
    table = Table(
        title=f"POST /v1/online-features, 10 features of 2 feature sets, {seconds:g} s per load "
        f"({platform.node()}, {os.cpu_count()} cores)"
    )
    for col in (
        "load",
        "headwater req/s",
        "headwater p50 / p95 / p99 ms",
        f"bare ({bare_style}) req/s",
        "bare p50 / p95 / p99 ms",
        "req/s hw / bare",
        "p50 hw / bare",
    ):
        table.add_column(col, justify="right")
    peers = [name for name in ("feast", "feast tuned") if name in results]
    for name in peers:
        table.add_column(f"{name} req/s (p99 ms)", justify="right")
        table.add_column(f"req/s hw / {name}", justify="right")
    # ``h`` and ``b`` are one load's results here and every load's results below.
    h: dict[str, Any]
    b: dict[str, Any]
    for key, h in results["headwater"].items():
        b = results["bare"][key]
        cells = []
        for name in peers:
            f = results[name].get(key)
            cells += (
                [
                    f"{f['requests_s']:,.0f} ({f['p99_ms']:.1f})",
                    f"{h['requests_s'] / f['requests_s']:.2f}",
                ]
                if f
                else ["", ""]
            )
        table.add_row(
            key,
            f"{h['requests_s']:,.0f}",
            f"{h['p50_ms']:.2f} / {h['p95_ms']:.2f} / {h['p99_ms']:.2f}",
            f"{b['requests_s']:,.0f}",
            f"{b['p50_ms']:.2f} / {b['p95_ms']:.2f} / {b['p99_ms']:.2f}",
            f"{h['requests_s'] / b['requests_s']:.2f}",
            f"{h['p50_ms'] / b['p50_ms']:.2f}x",
            *cells,
        )
    console.print(table)
    sdk = results.get("feast sdk", {}).get("100 entities, in-process")
    if sdk:
        ours = results["headwater"]["100 entities, 1 client"]["p50_ms"]
        console.print(
            f"Feast SDK in-process, 100 entities: p50 {sdk['p50_ms']:.2f} ms; Headwater over HTTP "
            f"{ours:.2f} ms ({ours / sdk['p50_ms']:.2f}x)"
        )
    h, b = results["headwater"], results["bare"]
    loaded = f"{clients} clients"
    one, hundred = f"1 entity, {loaded}", f"100 entities, {loaded}"
    checks = [
        (
            f"1 entity, {loaded}: req/s headwater / bare >= 0.9",
            h[one]["requests_s"] / b[one]["requests_s"],
            ">=",
            0.9,
        ),
        (f"1 entity, {loaded}: headwater p99 < 10 ms", h[one]["p99_ms"], "<", 10.0),
        (
            "100 entities, 1 client: p50 time headwater / bare <= 1.3",
            h["100 entities, 1 client"]["p50_ms"] / b["100 entities, 1 client"]["p50_ms"],
            "<=",
            1.3,
        ),
        (
            f"100 entities, {loaded}: time per request headwater / bare <= 2",
            b[hundred]["requests_s"] / h[hundred]["requests_s"],
            "<=",
            2.0,
        ),
    ]
    live = [k for k in h if "live" in k]
    if live and live[0] in b:
        checks.append(
            (
                f"{live[0]}: time per request headwater / bare <= 1.5",
                b[live[0]]["requests_s"] / h[live[0]]["requests_s"],
                "<=",
                1.5,
            )
        )
    for text, value, op, target in checks:
        ok = value >= target if op == ">=" else value < target if op == "<" else value <= target
        console.print(f"{'[green]met[/]' if ok else '[red]NOT met[/]'}  {text}: {value:.2f}")
    failures = sum(r.get("failures", 0) for server in results.values() for r in server.values())
    console.print(f"failures (non-200 answers): {failures:.0f}; logs in {work}")
