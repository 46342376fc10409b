"""``headwater ingest``: files or SQL rows into a source's topic, once or on a schedule.

Its exit codes differ from the other commands' (2: a bad row stopped the run; 3: partial
success), so it handles those errors itself."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

# typer >= 0.26 vendors click as ``typer._click`` and raises its UsageError, which has no
# public name; pyproject pins typer accordingly.
from typer._click.core import Context as ClickContext
from typer._click.exceptions import UsageError
from typer.core import TyperCommand

from headwater.cli_app import app, err, fail
from headwater.schemas.settings import load_settings


class _IngestCommand(TyperCommand):
    """``ingest`` documents exit code 2 as "bad input", so its usage errors exit 1 like the rest."""

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
        err.print(f"[red]bad input:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
        raise typer.Exit(2) from None
    except ValueError as exc:
        fail(exc)
    finally:
        if rejects is not None:
            rejects.close()
    if total.rejected:
        console.print(f"rejected {total.rejected} bad row(s), written to {skip_bad_rows}")
        raise typer.Exit(3)
