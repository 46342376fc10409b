"""The ``headwater`` command."""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from typer._click.core import Context as ClickContext
from typer._click.exceptions import UsageError
from typer.core import TyperCommand

from headwater.schemas.errors import FeatureStoreError
from headwater.schemas.settings import load_settings

__all__ = ["app", "main"]

app = typer.Typer(no_args_is_help=True, add_completion=False, help="Headwater feature store.")
_err = Console(stderr=True)


def _fail(exc: Exception) -> None:
    _err.print(f"[red]error:[/] {exc}", highlight=False, soft_wrap=True)
    raise typer.Exit(1)


@app.command()
def up() -> None:
    """Start the local services (a KRaft Kafka broker and Redis); reuse running ones."""
    from headwater.stack.cli import up_command

    up_command()


@app.command()
def down() -> None:
    """Stop the local services that `headwater up` started."""
    from headwater.stack.cli import down_command

    down_command()


@app.command()
def apply(
    path: Annotated[
        Path | None, typer.Argument(help="YAML file or directory of definitions")
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Validate and show; change nothing")
    ] = False,
) -> None:
    """Validate definitions and create their topics, Delta tables and catalog entries."""
    from headwater.apply import apply_definitions

    try:
        settings = load_settings()
        report = apply_definitions(settings, path or settings.definitions, dry_run=dry_run)
    except FeatureStoreError as exc:
        _fail(exc)
        return
    console = Console(highlight=False)
    console.print("[bold]plan[/]" + (" (dry run: nothing changed)" if dry_run else ""))
    for item in report.plan.items:
        style = {"create": "green", "update": "yellow", "new_version": "magenta"}.get(
            item.action, "dim"
        )
        console.print(f"  [{style}]{escape(item.describe())}[/]")
    if dry_run:
        return
    for topic in report.topics_created:
        console.print(f"  created topic {topic}")
    for table in report.tables_created:
        console.print(f"  created Delta table {table}")
    for source, schema_id in report.schema_ids.items():
        console.print(f"  source {source}: schema id {schema_id}")
    if report.plan.new_versions:
        names = ", ".join(fs.qualified_name for fs in report.plan.new_versions)
        console.print(f"  workers will compute {names} from the start of its source topic")


@app.command()
def retire(
    reference: Annotated[str, typer.Argument(help="NAME@vN: the feature-set version to retire")],
) -> None:
    """Stop serving and computing one feature-set version (its data stays)."""
    import re

    from headwater.connectors.catalog import Catalog

    match = re.fullmatch(r"([A-Za-z_]\w*)@v(\d+)", reference)
    if match is None:
        _fail(ValueError(f"{reference!r} is not NAME@vN, e.g. user_spend@v1"))
        return
    try:
        settings = load_settings()
        fs = Catalog(settings.catalog_url).retire(match.group(1), int(match.group(2)))
    except FeatureStoreError as exc:
        _fail(exc)
        return
    Console().print(f"retired {fs.qualified_name}")


@app.command()
def compact(
    name: Annotated[
        str | None, typer.Argument(help="Feature set (default: all active ones)")
    ] = None,
    vacuum_hours: Annotated[
        int | None,
        typer.Option(
            help="Also delete files unreferenced for this many hours (ends time travel before)"
        ),
    ] = None,
) -> None:
    """Compact the Delta history tables (the maintenance the micro-batch appends need)."""
    from headwater.connectors.catalog import Catalog
    from headwater.connectors.offline_delta import DeltaOfflineStore

    try:
        settings = load_settings()
        sets = Catalog(settings.catalog_url).definitions().feature_sets
        chosen = [fs for fs in sets if name is None or fs.name == name]
        if not chosen:
            raise KeyError(f"unknown feature set {name!r}; see `headwater catalog list`")
        offline = DeltaOfflineStore(settings.offline_root)
        for fs in chosen:
            result = offline.compact(fs, vacuum_hours=vacuum_hours)
            Console().print(
                f"{fs.qualified_name}: {result['files_before']} files -> {result['files_after']}"
            )
    except (FeatureStoreError, KeyError) as exc:
        _fail(exc)


@app.command("reset-epoch")
def reset_epoch_command(
    source: Annotated[str, typer.Argument(help="Source whose topic lost the end of its log")],
) -> None:
    """Start a new epoch of a source's topic at the current end of its log.

    For a topic whose log lost events under the same topic id (the worker stops on it with a
    CRITICAL line): the events in the log now count as applied, every later one as new.
    Stop producers to that topic first; see README "Topic identity".
    """
    from headwater.connectors.catalog import Catalog
    from headwater.connectors.topic_epochs import reset_epoch

    try:
        settings = load_settings()
        catalog = Catalog(settings.catalog_url)
        topic = catalog.definitions().source(source).topic
        epoch = reset_epoch(settings.kafka, catalog, topic)
    except (FeatureStoreError, KeyError) as exc:
        _fail(exc)
        return
    starts = ", ".join(f"partition {p} after offset {o}" for p, o in sorted(epoch.start.items()))
    Console().print(f"{topic}: new epoch {epoch.name}; events are new from {starts}")


catalog_app = typer.Typer(no_args_is_help=True, help="Browse the feature catalog.")
app.add_typer(catalog_app, name="catalog")


def _catalog() -> tuple[Any, Any]:
    from headwater.connectors.catalog import Catalog
    from headwater.connectors.offline_delta import DeltaOfflineStore

    settings = load_settings()
    return Catalog(settings.catalog_url), DeltaOfflineStore(settings.offline_root)


@catalog_app.command("list")
def catalog_list() -> None:
    """Every active feature set with its entity, owner and tags."""
    from rich.table import Table

    try:
        catalog, _ = _catalog()
        sets = catalog.definitions().feature_sets
    except FeatureStoreError as exc:
        _fail(exc)
        return
    table = Table(show_edge=False, header_style="bold")
    for column in ("feature set", "entity", "source", "features", "owner", "tags", "description"):
        table.add_column(column)
    for fs in sets:
        table.add_row(
            fs.qualified_name,
            fs.entity,
            fs.source,
            str(len(fs.features)),
            fs.owner,
            ", ".join(fs.tags),
            fs.description,
        )
    Console().print(table)


@catalog_app.command("search")
def catalog_search(
    words: Annotated[
        list[str],
        typer.Argument(help="Words to match in names, descriptions, tags, labels, owners"),
    ],
) -> None:
    """Find features by name, description, tags, labels or owner (all words must match)."""
    query = " ".join(words)
    from rich.table import Table

    from headwater.serving.catalog_views import search_features

    try:
        catalog, _ = _catalog()
        hits = search_features(catalog.definitions(), query)
    except FeatureStoreError as exc:
        _fail(exc)
        return
    table = Table(
        show_edge=False, header_style="bold", title=f"{len(hits)} feature(s) match {query!r}"
    )
    for column in ("reference", "function", "field", "window", "owner", "tags"):
        table.add_column(column)
    for h in hits:
        table.add_row(
            h["reference"],
            h["function"],
            h["field"] or "",
            h["window"],
            h["owner"],
            ", ".join(h["tags"]),
        )
    Console().print(table)


@catalog_app.command("show")
def catalog_show(name: Annotated[str, typer.Argument(help="Feature set name")]) -> None:
    """One feature set: its definition and versions, as JSON."""
    import json

    from headwater.serving.catalog_views import feature_set_summary

    try:
        catalog, _ = _catalog()
        versions = catalog.feature_set_versions(name)
    except FeatureStoreError as exc:
        _fail(exc)
        return
    if not versions:
        _fail(KeyError(f"unknown feature set {name!r}; see `headwater catalog list`"))
        return
    shown = [feature_set_summary(fs, status=status) for fs, status in versions]
    Console().print_json(json.dumps(shown if len(shown) > 1 else shown[0]))


@catalog_app.command("lineage")
def catalog_lineage(name: Annotated[str, typer.Argument(help="Feature set name")]) -> None:
    """Source topic and schema -> versions -> online keys and Delta table -> services."""
    import json

    from headwater.serving.catalog_views import lineage

    try:
        catalog, offline = _catalog()
        graph = lineage(catalog, offline, name, key_prefix=load_settings().redis.key_prefix)
    except (FeatureStoreError, KeyError) as exc:
        _fail(exc)
        return
    Console().print_json(json.dumps(graph))


@app.command()
def worker(
    processes: Annotated[
        int,
        typer.Option(
            "--processes",
            min=1,
            help="Worker processes to run in the one consumer group (e.g. one per core)",
        ),
    ] = 1,
) -> None:
    """Run the stream workers (faust) for every applied feature set."""
    import os

    if processes > 1:
        from headwater.processes import supervise_workers

        raise typer.Exit(supervise_workers(processes))

    import mode.loop

    # uvloop before faust creates its loop: about 20 % more events/s for a bare faust agent
    # on this project's 2-core machines (bench/faust_baseline.py: 16.6k -> 20.3k).
    mode.loop.use("uvloop")
    import faust

    from headwater.stream_workers.app import create_app, reload_requested

    try:
        settings = load_settings()
        faust_app = create_app(settings)
    except FeatureStoreError as exc:
        _fail(exc)
        return
    import gc

    # A batch allocates about a hundred thousand short-lived objects next to a large cache
    # of entity states; with the default thresholds the collector runs hundreds of times per
    # batch and its full passes walk the cache: a quarter of a worker's time (34k vs 26k
    # events/s for the processor alone). Rarer young collections keep cycles collected.
    gc.freeze()
    gc.set_threshold(50_000, 50, 100)
    try:
        faust.Worker(
            faust_app, loglevel="INFO", quiet=True, override_logging=True
        ).execute_from_commandline()
    finally:
        if reload_requested():
            # Same pid, fresh interpreter: supervisors and tests keep tracking one process.
            os.execv(sys.executable, [sys.executable, "-m", "headwater", "worker"])


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Bind address (default from settings)")] = None,
    port: Annotated[int | None, typer.Option(help="Port (default from settings)")] = None,
) -> None:
    """Run the HTTP API."""
    import uvicorn

    from headwater.serving.app import create_app

    try:
        settings = load_settings()
        api = create_app(settings)
    except FeatureStoreError as exc:
        _fail(exc)
        return
    import gc

    # Lookups allocate many short-lived objects; without this, full collections that walk
    # every long-lived object (modules, plans) add tens of ms to the tail.
    gc.freeze()
    uvicorn.run(
        api,
        host=host or settings.serving.host,
        port=port or settings.serving.port,
        log_level="warning",
    )


class _IngestCommand(TyperCommand):
    """``ingest`` documents exit code 2 as "bad input", so its usage errors exit 1 like the rest.

    (typer vendors click as ``typer._click``: its ``UsageError`` is the one raised here.)
    """

    def parse_args(self, ctx: ClickContext, args: list[str]) -> list[str]:
        try:
            return super().parse_args(ctx, args)
        except UsageError as exc:
            exc.exit_code = 1
            raise


@app.command(
    cls=_IngestCommand,
    epilog=(
        "Exit codes: 0 success; 1 usage, configuration or Kafka error; 2 a bad row stopped the run "
        "(nothing of that file or query was produced; earlier ones were); 3 partial success: "
        "bad rows went to the --skip-bad-rows file, the good ones were produced."
    ),
)
def ingest(
    files: Annotated[
        list[str] | None,
        typer.Argument(help="CSV, Parquet, JSON-lines or Avro files, directories or globs"),
    ] = None,
    source: Annotated[str, typer.Option("--source", help="Source to ingest into")] = "",
    mapping: Annotated[
        list[str] | None, typer.Option("--map", help="Rename a column: OLD=NEW (repeatable)")
    ] = None,
    sql: Annotated[
        str | None, typer.Option("--sql", help="Read rows of this query instead of files")
    ] = None,
    db: Annotated[
        str | None,
        typer.Option(
            "--db", help="Database URL for --sql: sqlite:///f.db, postgresql+psycopg://..."
        ),
    ] = None,
    watermark: Annotated[
        str | None,
        typer.Option(
            "--watermark",
            help="With --sql: only rows not ingested before (COLUMN at or above the last value ingested; rows at it are told apart by content)",
        ),
    ] = None,
    skip_bad_rows: Annotated[
        Path | None,
        typer.Option(
            "--skip-bad-rows",
            metavar="REJECTS.jsonl",
            help="Write bad rows here (file, row, column, reason) and go on",
        ),
    ] = None,
    rate: Annotated[
        float | None, typer.Option("--rate", min=0.001, help="At most N events per second")
    ] = None,
    schedule: Annotated[
        str | None,
        typer.Option(
            "--schedule", help="Run again every interval (15m, 1h) or on a 5-field cron expression"
        ),
    ] = None,
    max_runs: Annotated[
        int | None, typer.Option("--max-runs", min=1, help="With --schedule: stop after N runs")
    ] = None,
    again: Annotated[
        bool, typer.Option("--again", help="Re-ingest files already ingested unchanged")
    ] = False,
) -> None:
    """Replay files or SQL rows into a source's Kafka topic, preserving event time and row order.

    Each file (or query run) is validated whole before any of it is produced. Ingested files and SQL watermarks are recorded under <home>/ingest/<source>.json once Kafka acknowledged them, so a rerun (or the next --schedule run) skips what is done and repeats nothing; every message carries an hw.event_id header that is the same on a rerun.
    """
    from headwater.connectors.replay import BadRowError
    from headwater.ingest import Ingestor, IngestResult, expand_inputs
    from headwater.schedule import Ledger, parse_schedule, run_schedule
    from headwater.schemas.errors import ConfigError

    console, total = Console(highlight=False), IngestResult()
    rejects = None
    try:
        if not source:
            raise ConfigError("--source NAME is required")
        if bool(files) == bool(sql):
            raise ConfigError("give either FILE... or --sql QUERY --db URL")
        if sql and not db:
            raise ConfigError("--sql needs --db URL, e.g. --db sqlite:///events.db")
        if sql and schedule and not watermark:
            raise ConfigError(
                "--schedule with --sql needs --watermark COLUMN, or every run repeats all rows"
            )
        renames = dict(item.split("=", 1) for item in mapping or [] if "=" in item)
        if len(renames) != len(mapping or []) or any(not k or not v for k, v in renames.items()):
            raise ConfigError(f"--map takes OLD=NEW, got {mapping}")
        if schedule:
            parse_schedule(schedule)
        settings = load_settings()
        rejects = skip_bad_rows.open("w", encoding="utf-8") if skip_bad_rows else None
        ingestor = Ingestor.for_source(
            settings, source, mapping=renames, rejects=rejects, rate=rate
        )
        ledger = Ledger.for_source(settings.home, source)

        def run_once(run: int) -> None:
            if sql and db:
                result = ingestor.ingest_sql(
                    db, sql, watermark=watermark, ledger=ledger if watermark else None
                )
            else:
                paths = expand_inputs(files or [], allow_empty=schedule is not None)
                result = ingestor.ingest_files(paths, ledger, skip_done=not again)
            total.produced += result.produced
            total.rejected += result.rejected
            skipped = (
                f", skipped {result.skipped_files} file(s) ingested before"
                if result.skipped_files
                else ""
            )
            prefix = f"run {run}: " if schedule else ""
            console.print(
                f"{prefix}ingested {result.produced} events into source {source!r}{skipped}"
            )

        if schedule:
            run_schedule(run_once, schedule, max_runs=max_runs)
        else:
            run_once(1)
    except BadRowError as exc:
        _err.print(f"[red]bad input:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
        raise typer.Exit(2) from None
    except (FeatureStoreError, ValueError, OSError) as exc:
        _fail(exc)
    finally:
        if rejects is not None:
            rejects.close()
    if total.rejected:
        console.print(f"rejected {total.rejected} bad row(s), written to {skip_bad_rows}")
        raise typer.Exit(3)


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
        offline = DeltaOfflineStore(settings.offline_root)
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
    except (FeatureStoreError, ValueError, OSError) as exc:
        _fail(exc)
        return
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
            DeltaOfflineStore(settings.offline_root),
            Catalog(settings.catalog_url),
            since_ms=since_ms,
            limit=limit,
        )
    except (FeatureStoreError, ValueError, OSError) as exc:
        _fail(exc)
        return
    console = Console(highlight=False, soft_wrap=True)
    if not report.responses:
        console.print(
            "no logged responses; set HEADWATER_SERVING__LOG_SAMPLE_RATE (e.g. 0.01) for `headwater serve`"
        )
        return
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


@app.command("rebuild-online")
def rebuild_online(
    reference: Annotated[
        str | None,
        typer.Argument(help="NAME@vN: one feature-set version (default: every active one)"),
    ] = None,
) -> None:
    """Recompute the online states (Redis) from the Delta history: for a Redis that lost data,
    or a new one. Stop the workers first; a worker started afterwards catches up the rest."""
    from headwater.stream_workers.rebuild import rebuild_online as run

    try:
        report = run(load_settings(), reference)
    except FeatureStoreError as exc:
        _fail(exc)
        return
    console = Console(highlight=False, soft_wrap=True)
    for warning in report.warnings:
        console.print(f"[yellow]warning:[/] {escape(warning)}")
    for v in report.versions:
        console.print(
            f"{v.feature_set}: {v.entities} entities rebuilt from {v.rows} history rows, "
            f"{v.removed} keys without history removed ({v.seconds:.1f} s)"
        )


@app.command()
def demo(
    users: Annotated[
        int, typer.Option(min=1, help="Card holders in the generated sample (~119 events each)")
    ] = 3_000,
) -> None:
    """The main job end to end on the bundled sample data, then stop what it started.

    It uses names of its own only (topics headwater-demo.*, Redis keys hw-demo:*, <home>/demo).
    """
    from headwater.demo import run_demo

    try:
        run_demo(card_holders=users)
    except FeatureStoreError as exc:
        _fail(exc)


dlq_app = typer.Typer(no_args_is_help=True, help="See dead letters and replay them once fixed.")
app.add_typer(dlq_app, name="dlq")


@dlq_app.command("list")
def dlq_list() -> None:
    """Dead letters per source and reason: how many, how many replayed, how many pending."""
    from headwater.dlq import count_dead_letters, print_counts

    try:
        counts = count_dead_letters(load_settings())
    except FeatureStoreError as exc:
        _fail(exc)
        return
    print_counts(Console(highlight=False), counts)


@dlq_app.command("show")
def dlq_show(
    source: Annotated[str, typer.Argument(help="Source name")],
    reason: Annotated[str | None, typer.Option(help="Only letters of this reason")] = None,
    limit: Annotated[int, typer.Option(min=1, help="Letters to show")] = 10,
) -> None:
    """A sample of a source's dead letters: position, reason, field, error, event time."""
    from headwater.dlq import print_sample, sample_dead_letters

    try:
        views, matching = sample_dead_letters(load_settings(), source, reason=reason, limit=limit)
    except FeatureStoreError as exc:
        _fail(exc)
        return
    print_sample(Console(highlight=False), source, views, matching)


@dlq_app.command("replay")
def dlq_replay(
    source: Annotated[str, typer.Argument(help="Source name")],
    reason: Annotated[str | None, typer.Option(help="Only letters of this reason")] = None,
) -> None:
    """Re-produce a source's dead letters into its topic (after fixing what refused them),
    exactly once: letters replayed before are skipped."""
    from headwater.dlq import replay_dead_letters

    try:
        report = replay_dead_letters(load_settings(), source, reason=reason)
    except FeatureStoreError as exc:
        _fail(exc)
        return
    which = f" with reason {reason}" if reason else ""
    Console(highlight=False).print(
        f"replayed {report.replayed} dead letter(s) of {report.source}{which} into {report.topic}; "
        f"{report.skipped} replayed before, skipped"
    )


def main() -> None:
    logging.basicConfig(
        level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)
