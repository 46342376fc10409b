"""``headwater retrieve`` (training sets, saved and rebuilt) and ``headwater consistency``
(online answers recomputed offline)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from headwater.cli_app import app, fail
from headwater.schemas.settings import load_settings


@app.command()
def retrieve(
    out: Annotated[Path, typer.Option("--out", help="Output file: .parquet or .csv")],
    entities: Annotated[
        Path | None,
        typer.Option("--entities", help="Entity keys + label times: Parquet, CSV or JSON lines"),
    ] = None,
    features: Annotated[
        list[str] | None,
        typer.Option("--features", help="REF[,REF...] as set[@vN]:feature (repeatable)"),
    ] = None,
    feature_service: Annotated[
        str | None, typer.Option("--feature-service", help="Instead of --features")
    ] = None,
    timestamp_column: Annotated[
        str, typer.Option("--timestamp-column", help="Label time column")
    ] = "event_timestamp",
    as_of: Annotated[
        list[str] | None,
        typer.Option(
            "--as-of",
            help="Read the tables as of a time (ISO-8601 with zone) or versions: SET=VERSION (repeatable)",
        ),
    ] = None,
    save: Annotated[
        str | None, typer.Option("--save", help="Record this training set under NAME")
    ] = None,
    rebuild_name: Annotated[
        str | None,
        typer.Option(
            "--rebuild", metavar="NAME", help="Rebuild a saved training set, byte for byte"
        ),
    ] = None,
) -> None:
    """Build a point-in-time training set (or rebuild a saved one) into a file."""
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    from headwater.connectors.catalog import Catalog
    from headwater.connectors.offline_delta import DeltaOfflineStore
    from headwater.connectors.replay import read_table
    from headwater.schemas.errors import ConfigError
    from headwater.serving.features import resolve_features
    from headwater.serving.training_sets import parse_as_of
    from headwater.serving.training_sets import rebuild as rebuild_set
    from headwater.serving.training_sets import retrieve as retrieve_set

    try:
        if out.suffix.lower() not in (".parquet", ".csv"):
            raise ConfigError(f"--out {out}: use a .parquet or .csv file")
        settings = load_settings()
        catalog = Catalog(settings.catalog_url)
        offline = DeltaOfflineStore(settings.offline_location)
        if rebuild_name is not None:
            if entities or features or feature_service or as_of or save:
                raise ConfigError(
                    "--rebuild NAME takes only --out; the rest is recorded with the training set"
                )
            table = rebuild_set(offline, catalog, rebuild_name)
        else:
            if entities is None:
                raise ConfigError("--entities FILE is required (or --rebuild NAME)")
            refs = [r.strip() for item in features or [] for r in item.split(",") if r.strip()]
            resolved = resolve_features(catalog.definitions(), refs or None, feature_service)
            table = retrieve_set(
                offline,
                catalog,
                resolved,
                read_table(entities),
                timestamp_column=timestamp_column,
                as_of=parse_as_of(as_of or []),
                save_as=save,
            )
        out.parent.mkdir(parents=True, exist_ok=True)
        if out.suffix.lower() == ".csv":
            pacsv.write_csv(table, out)
        else:
            pq.write_table(table, out)
    except ValueError as exc:
        fail(exc)
    saved = f"; saved as {save!r}" if save else ""
    Console(highlight=False, soft_wrap=True).print(
        f"wrote {table.num_rows} rows x {table.num_columns} columns to {out}{saved}"
    )


@app.command()
def consistency(
    since: Annotated[
        str | None,
        typer.Option("--since", help="Only responses served at or after this ISO-8601 time"),
    ] = None,
    limit: Annotated[
        int | None, typer.Option("--limit", min=1, help="Only the newest N logged rows")
    ] = None,
    fail_above: Annotated[
        float | None,
        typer.Option(
            "--fail-above", min=0.0, help="Exit 4 if any feature's mismatch rate exceeds this"
        ),
    ] = None,
) -> None:
    """Recompute logged online responses offline (at their served_at) and report mismatch rates.

    Logging is on when serving.log_sample_rate > 0 (HEADWATER_SERVING__LOG_SAMPLE_RATE).
    """
    from rich.table import Table

    from headwater.connectors.catalog import Catalog
    from headwater.connectors.offline_delta import DeltaOfflineStore
    from headwater.schemas.avro import event_time_ms
    from headwater.serving.consistency import check_consistency

    try:
        since_ms = None if since is None else event_time_ms(since, "--since")
        settings = load_settings()
        report = check_consistency(
            DeltaOfflineStore(settings.offline_location),
            Catalog(settings.catalog_url),
            since_ms=since_ms,
            limit=limit,
        )
    except ValueError as exc:
        fail(exc)
    console = Console(highlight=False, soft_wrap=True)
    if not report.responses:
        console.print(
            "no logged responses; set HEADWATER_SERVING__LOG_SAMPLE_RATE (e.g. 0.01) for `headwater serve`"
        )
        return
    _record_consistency(settings, report)
    table = Table(title=f"online vs offline at served_at, {report.responses} logged entity rows")
    for column in ("feature", "compared", "mismatches", "rate"):
        table.add_column(column, justify="left" if column == "feature" else "right")
    for f in report.features:
        table.add_row(f.feature, str(f.compared), str(f.mismatches), f"{f.rate:.4%}")
    console.print(table)
    for f in report.features:
        for example in f.examples:
            console.print(f"  mismatch {f.feature}: {example}")
    if fail_above is not None and any(f.rate > fail_above for f in report.features):
        raise typer.Exit(4)


def _record_consistency(settings: Any, report: Any) -> None:
    """Keep each feature's mismatch rate for ``headwater monitor`` and ``/metrics``, with
    the limit of its feature set's ``monitoring.max_mismatch_rate``."""
    from headwater.connectors.catalog import Catalog
    from headwater.schemas.definitions import FeatureRef
    from headwater.serving.monitor_records import Measure, record_measures

    now = int(time.time() * 1000)
    catalog = Catalog(settings.catalog_url)
    try:
        defs = catalog.definitions(include_retired=True)
    finally:
        catalog.close()
    measures = []
    for f in report.features:
        ref = FeatureRef.parse(f.feature)
        limit = defs.feature_set(ref.feature_set, ref.version).monitoring.max_mismatch_rate
        measures.append(Measure(ref.feature_set, "mismatch_rate", ref.feature, f.rate, limit, now))
    record_measures(settings.offline_location, measures)
