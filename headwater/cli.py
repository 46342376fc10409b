"""The ``headwater`` command."""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from schemas.errors import FeatureStoreError
from schemas.settings import load_settings

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
    path: Annotated[Path | None, typer.Argument(help="YAML file or directory of definitions")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Validate and show; change nothing")] = False,
) -> None:
    """Validate definitions and create their topics, Delta tables and catalog entries."""
    from headwater.apply import apply_definitions

    try:
        settings = load_settings()
        report = apply_definitions(settings, path or settings.definitions, dry_run=dry_run)
    except FeatureStoreError as exc:
        _fail(exc)
        return
    console = Console()
    d = report.definitions
    console.print(
        f"{'validated' if dry_run else 'applied'}: {len(d.entities)} entities, {len(d.sources)} sources, "
        f"{len(d.feature_sets)} feature sets, {len(d.feature_services)} feature services"
    )
    for topic in report.topics_created:
        console.print(f"  created topic {topic}")
    for table in report.tables_created:
        console.print(f"  created Delta table {table}")
    for source, schema_id in report.schema_ids.items():
        console.print(f"  source {source}: schema id {schema_id}")


@app.command()
def worker() -> None:
    """Run the stream workers (faust) for every applied feature set."""
    import faust

    from stream_workers.app import create_app

    try:
        settings = load_settings()
        faust_app = create_app(settings)
    except FeatureStoreError as exc:
        _fail(exc)
        return
    faust.Worker(faust_app, loglevel="INFO", quiet=True, override_logging=True).execute_from_commandline()


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Bind address (default from settings)")] = None,
    port: Annotated[int | None, typer.Option(help="Port (default from settings)")] = None,
) -> None:
    """Run the HTTP API."""
    import uvicorn

    from serving.app import create_app

    try:
        settings = load_settings()
        api = create_app(settings)
    except FeatureStoreError as exc:
        _fail(exc)
        return
    uvicorn.run(
        api,
        host=host or settings.serving.host,
        port=port or settings.serving.port,
        log_level="warning",
    )


@app.command()
def ingest(
    files: Annotated[list[Path], typer.Argument(help="Parquet, CSV or JSON-lines files")],
    source: Annotated[str, typer.Option("--source", help="Source to ingest into")],
) -> None:
    """Replay files into a source's Kafka topic, preserving event time and row order."""
    from headwater.ingest import ingest_files

    try:
        settings = load_settings()
        count = ingest_files(settings, source, files)
    except FeatureStoreError as exc:
        _fail(exc)
        return
    Console().print(f"ingested {count} events into source {source!r}")


@app.command()
def demo() -> None:
    """The main job end to end on the bundled sample data, then stop what it started."""
    from headwater.demo import run_demo

    try:
        run_demo()
    except FeatureStoreError as exc:
        _fail(exc)


def main() -> None:
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)
