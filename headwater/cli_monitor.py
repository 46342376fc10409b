"""``headwater stats``, ``headwater drift`` and ``headwater monitor``: feature statistics,
drift against a reference, and a health summary that fails (exit 4) when a limit is crossed,
for cron and CI."""

from __future__ import annotations

import time
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from headwater.cli_app import app
from headwater.schemas.settings import load_settings

__all__ = ["drift", "monitor", "stats"]

_CROSSED = 4
_HEALTH_COLUMNS = (
    "feature set",
    "freshness",
    "lag",
    "dead letters",
    "mismatch rate",
    "drifted",
    "status",
)


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def _stores() -> tuple[Any, Any, Any]:
    from headwater.connectors.catalog import Catalog
    from headwater.connectors.offline_delta import DeltaOfflineStore

    settings = load_settings()
    return settings, Catalog(settings.catalog_url), DeltaOfflineStore(settings.offline_location)


@app.command()
def stats(
    feature_set: Annotated[str, typer.Argument(help="Feature set name")],
    version: Annotated[
        int | None, typer.Option("--version", help="Default: the active one")
    ] = None,
    start: Annotated[
        str | None, typer.Option("--start", help="First event day, YYYY-MM-DD")
    ] = None,
    end: Annotated[str | None, typer.Option("--end", help="Last event day, YYYY-MM-DD")] = None,
    training_set: Annotated[
        str | None, typer.Option("--training-set", help="Of a saved training set's values")
    ] = None,
    served: Annotated[
        bool, typer.Option("--served", help="Of the served values (the response log)")
    ] = False,
) -> None:
    """Statistics per field (history) or feature (training set, served): count, nulls,
    min/max/mean/stddev, quantiles, distinct values, most frequent values.

    History statistics are kept per data file and day, so a rerun only reads new files.
    """
    from headwater.serving.feature_stats import population, stats_body
    from headwater.serving.monitoring_api import feature_set_at

    _, catalog, offline = _stores()
    fs = feature_set_at(catalog, feature_set, version)
    pop = population(
        catalog, offline, fs, start=start, end=end, training_set=training_set, served=served
    )
    body = stats_body(fs, pop)
    table = Table(title=f"{fs.qualified_name}: {pop.of}, {body['rows']} rows")
    for column in (
        "column",
        "type",
        "count",
        "null rate",
        "min",
        "p50",
        "max",
        "mean",
        "stddev",
        "distinct",
        "top",
    ):
        table.add_column(column, justify="left" if column in ("column", "type", "top") else "right")
    for c in body["columns"]:
        p50 = next((q["value"] for q in c["quantiles"] if q["q"] == 0.5), None)
        top = ", ".join(f"{t['value']} ({t['count']})" for t in c["top"][:3])
        table.add_row(
            c["name"],
            c["type"],
            str(c["count"]),
            f"{c['null_rate']:.2%}",
            _fmt(c["min"]),
            _fmt(p50),
            _fmt(c["max"]),
            _fmt(c["mean"]),
            _fmt(c["stddev"]),
            f"{c['distinct']:.0f}",
            top,
        )
    console = Console(highlight=False, soft_wrap=True)
    console.print(table)
    accuracy = body["accuracy"]
    console.print(
        f"quantiles within {accuracy['quantile_rank_error']:.2%} of rank; distinct counts "
        f"within {accuracy['distinct_relative_error']:.1%} (one standard error); the rest exact"
    )


def _record_drift(offline: Any, body: dict[str, Any]) -> None:
    from headwater.serving.monitor_records import Measure, record_measures

    now = int(time.time() * 1000)
    measures = []
    for c in body["columns"]:
        for measure in ("psi", "js"):
            if c[measure] is not None:
                limit = c["threshold"][measure]
                measures.append(
                    Measure(body["feature_set"], measure, c["name"], c[measure], limit, now)
                )
    record_measures(offline.location, measures)


def _population(described: dict[str, Any]) -> str:
    """``history 2026-12-04..2026-12-05``, ``training set fraud_v3``, ``served ...``."""
    if described.get("name"):
        return f"training set {described['name']}"
    days = f"{described.get('start') or 'first'}..{described.get('end') or 'last'}"
    return f"{described['of']} {days}"


def _print_drift(console: Console, body: dict[str, Any]) -> None:
    title = (
        f"{body['feature_set']}@v{body['version']}: drift of {_population(body['current'])} "
        f"against {_population(body['reference'])}"
    )
    table = Table(title=title)
    for column in ("column", "type", "PSI", "limit", "JS", "limit ", "drifted"):
        table.add_column(column, justify="left" if column in ("column", "type") else "right")
    for c in body["columns"]:
        table.add_row(
            c["name"],
            c["type"],
            _fmt(c["psi"]),
            _fmt(c["threshold"]["psi"]),
            _fmt(c["js"]),
            _fmt(c["threshold"]["js"]),
            "[red]yes[/]" if c["drifted"] else "no",
        )
    console.print(table)
    for skipped in body["skipped"]:
        console.print(f"not compared: {skipped['name']}, {skipped['reason']}", style="dim")


@app.command()
def drift(
    feature_set: Annotated[str, typer.Argument(help="Feature set name")],
    reference: Annotated[
        str | None, typer.Option("--reference", help="training_set:NAME (default: history days)")
    ] = None,
    reference_start: Annotated[str | None, typer.Option("--reference-start")] = None,
    reference_end: Annotated[str | None, typer.Option("--reference-end")] = None,
    current: Annotated[
        str | None, typer.Option("--current", help="history (default) or served")
    ] = None,
    current_start: Annotated[str | None, typer.Option("--current-start")] = None,
    current_end: Annotated[str | None, typer.Option("--current-end")] = None,
    version: Annotated[int | None, typer.Option("--version")] = None,
) -> None:
    """PSI and Jensen-Shannon of every field/feature of a recent population against a
    reference; records the result (for `monitor` and /metrics); exit 4 when one drifted.

    Defaults: the reference is the 7 days of history ending two days ago, the current
    population yesterday and today; against a training set, the served values. Limits come
    from the definition's monitoring.drift.
    """
    from headwater.serving.monitoring_api import DriftRequest, feature_set_at, measure_drift

    _, catalog, offline = _stores()
    fs = feature_set_at(catalog, feature_set, version)
    asked = DriftRequest(
        reference=reference,
        reference_start=reference_start,
        reference_end=reference_end,
        current=current,
        current_start=current_start,
        current_end=current_end,
    )
    body = measure_drift(catalog, offline, fs, asked)
    _record_drift(offline, body)
    console = Console(highlight=False, soft_wrap=True)
    _print_drift(console, body)
    if body["drifted"]:
        console.print(f"[red]drifted:[/] {', '.join(body['drifted'])}")
        raise typer.Exit(_CROSSED)


@app.command()
def monitor(
    feature_set: Annotated[
        list[str] | None, typer.Argument(help="Feature sets (default: every active one)")
    ] = None,
) -> None:
    """Health of each feature set against its definition's monitoring limits: freshness,
    consumer lag, dead letters by reason, the last consistency and drift measured.

    Exit 4 when a limit is crossed (for cron and CI), 0 otherwise.
    """
    from headwater.serving.monitor import all_health

    settings, catalog, offline = _stores()
    table = Table(title="Headwater health")
    for column in _HEALTH_COLUMNS:
        table.add_column(column, justify="left" if column in ("feature set", "status") else "right")
    problems: list[str] = []
    for health in all_health(catalog.definitions(), offline, settings, feature_set):
        name = f"{health.feature_set}@v{health.version}"
        letters = sum(health.dead_letters.values())
        rate = health.consistency["mismatch_rate"] if health.consistency else None
        drifted = sorted(
            {
                d["column"]
                for d in health.drift
                if d["limit"] is not None and d["value"] > d["limit"]
            }
        )
        table.add_row(
            name,
            "-" if health.freshness_seconds is None else f"{health.freshness_seconds:.0f}s",
            _fmt(health.lag),
            f"{letters}" + (f" ({health.dead_letter_rate:.2%})" if health.dead_letter_rate else ""),
            "-" if rate is None else f"{rate:.4%}",
            ", ".join(drifted) or "-",
            "[red]problem[/]" if health.problems else "[green]ok[/]",
        )
        problems += [f"{name}: {p}" for p in health.problems]
    console = Console(highlight=False, soft_wrap=True)
    console.print(table)
    for problem in problems:
        console.print(f"[red]•[/] {problem}")
    if problems:
        raise typer.Exit(_CROSSED)
