"""The ``headwater`` command: services, definitions, the worker and the API.

Commands of other areas live in their own modules and register on the same ``app``
(``cli_app``): the catalog (``cli_catalog``), ingestion (``cli_ingest``), training sets and
consistency (``cli_offline``) and dead letters (``cli_dlq``). The processes' own bootstraps
live with them (``stream_workers.main``, ``serving.server``).
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

from headwater import (
    cli_catalog,
    cli_dlq,
    cli_erase,
    cli_ingest,
    cli_keys,
    cli_monitor,
    cli_offline,
)
from headwater.cli_app import app, fail
from headwater.schemas.errors import UnknownNameError
from headwater.schemas.settings import load_settings

__all__ = ["app", "main"]
# The command modules register on ``app`` when imported.
_COMMANDS = (cli_catalog, cli_dlq, cli_ingest, cli_erase, cli_keys, cli_monitor, cli_offline)


@app.command()
def up(
    secure: Annotated[
        bool,
        typer.Option(
            "--secure",
            help="Kafka with SASL/SCRAM and Redis with an ACL user (also: stack.secure)",
        ),
    ] = False,
    kafka_brokers: Annotated[
        int | None,
        typer.Option(
            "--kafka-brokers",
            min=1,
            max=9,
            help="Kafka nodes to run; 3 or more replicate every topic 3 times and survive "
            "one node's loss (also: stack.kafka_brokers)",
        ),
    ] = None,
    redis_cluster: Annotated[
        bool,
        typer.Option(
            "--redis-cluster",
            help="a 6-node Redis Cluster (3 primaries, 3 replicas) at redis.url's port and "
            "the five after it, instead of one redis-server (also: redis.cluster)",
        ),
    ] = False,
) -> None:
    """Start the local services (a KRaft Kafka broker or cluster, and Redis); reuse running ones."""
    from headwater.stack.cli import up_command

    up_command(secure=secure, kafka_brokers=kafka_brokers, redis_cluster=redis_cluster)


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

    settings = load_settings()
    report = apply_definitions(settings, path or settings.definitions, dry_run=dry_run)
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
        fail(ValueError(f"{reference!r} is not NAME@vN, e.g. user_spend@v1"))
    settings = load_settings()
    fs = Catalog(settings.catalog_url).retire(match.group(1), int(match.group(2)))
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

    settings = load_settings()
    sets = Catalog(settings.catalog_url).definitions().feature_sets
    chosen = [fs for fs in sets if name is None or fs.name == name]
    if not chosen:
        msg = f"unknown feature set {name!r}; see `headwater catalog list`"
        raise UnknownNameError(msg, kind="feature set", name=str(name))
    offline = DeltaOfflineStore(settings.offline_location)
    for fs in chosen:
        result = offline.compact(fs, vacuum_hours=vacuum_hours)
        Console().print(
            f"{fs.qualified_name}: {result['files_before']} files -> {result['files_after']}"
        )


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

    settings = load_settings()
    catalog = Catalog(settings.catalog_url)
    topic = catalog.definitions().source(source).topic
    epoch = reset_epoch(settings.kafka, catalog, topic)
    starts = ", ".join(f"partition {p} after offset {o}" for p, o in sorted(epoch.start.items()))
    Console().print(f"{topic}: new epoch {epoch.name}; events are new from {starts}")


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
    if processes > 1:
        from headwater.processes import supervise_workers

        raise typer.Exit(supervise_workers(processes))
    from headwater.stream_workers.main import run_worker

    run_worker(load_settings(), restart=[sys.executable, "-m", "headwater", "worker"])


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Bind address (default from settings)")] = None,
    port: Annotated[int | None, typer.Option(help="Port (default from settings)")] = None,
    workers: Annotated[
        int, typer.Option(min=1, help="Server processes sharing the port (one per core)")
    ] = 1,
    reuse_port: Annotated[
        bool, typer.Option(hidden=True, help="Bind with SO_REUSEPORT (set by --workers)")
    ] = False,
    processes: Annotated[int, typer.Option(hidden=True)] = 1,
) -> None:
    """Run the HTTP API."""
    settings = load_settings()
    if workers > 1:
        from headwater.processes import supervise

        bound = [
            "--host",
            host or settings.serving.host,
            "--port",
            str(port or settings.serving.port),
        ]
        args = ["serve", *bound, "--reuse-port", "--processes", str(workers)]
        raise typer.Exit(supervise(args, workers, "API"))
    from headwater.serving.server import run_server

    run_server(settings, host=host, port=port, reuse_port=reuse_port, processes=processes)


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

    report = run(load_settings(), reference)
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

    run_demo(card_holders=users)


def main() -> None:
    logging.basicConfig(
        level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        app()
    except KeyboardInterrupt:
        _exit(130)
    except SystemExit as done:
        if isinstance(done.code, str):
            print(done.code, file=sys.stderr)
        _exit(done.code if isinstance(done.code, int) else int(done.code is not None))
    _exit(0)


def _exit(code: int) -> None:
    """End the command with ``code``; after it used Delta tables, without the interpreter's
    teardown.

    deltalake (1.6) leaves native threads (its object-store runtime, pyarrow's inside its
    file system) whose destruction at interpreter exit can abort the process ("terminate
    called without an active exception", exit -6) after the command did all its work, most
    often on object storage. Everything the command wrote is flushed first.
    """
    if "deltalake" not in sys.modules:
        sys.exit(code)
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
