"""``headwater erase``: the right to erasure of one entity key (``headwater/erasure.py``)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

from headwater.cli_app import app
from headwater.schemas.settings import load_settings

__all__ = ["erase"]


def _when(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="seconds")


@app.command()
def erase(
    entity: Annotated[
        list[str] | None,
        typer.Option(
            "--entity",
            metavar="FIELD=VALUE",
            help="A key field of the entity to erase; repeat for each field of a multi-field key",
        ),
    ] = None,
    entity_name: Annotated[
        str | None,
        typer.Option("--entity-name", help="The entity, when its key fields do not tell"),
    ] = None,
    retention_hours: Annotated[
        int,
        typer.Option(
            "--retention-hours",
            min=0,
            help="Keep the old Delta files (time travel) this long before a vacuum deletes "
            "them; 0 deletes them now",
        ),
    ] = 168,
    wait_seconds: Annotated[
        float,
        typer.Option("--wait-seconds", min=0, help="How long to wait for running workers"),
    ] = 120.0,
    vacuum: Annotated[
        bool,
        typer.Option(
            "--vacuum", help="Delete the old files of past erasures whose retention passed"
        ),
    ] = False,
) -> None:
    """Erase one entity everywhere: online state, history rows, and (after a retention) old files.

    Replays of the raw topic skip its old events; later events are new. Audited.
    """
    from headwater.connectors.catalog import Catalog
    from headwater.connectors.catalog.audit import acting_as, local_actor
    from headwater.erasure import erase_entity, vacuum_erasures
    from headwater.erasure_keys import ErasureRequestError, parse_entity_pairs, resolve_entity_key

    settings = load_settings()
    console = Console(highlight=False)
    catalog = Catalog(settings.catalog_url)
    try:
        with acting_as(local_actor()):
            if vacuum:
                if entity:
                    msg = "--vacuum takes no --entity: it vacuums after every past erasure"
                    raise ErasureRequestError(msg)
                done = vacuum_erasures(settings, catalog)
                for request, files in sorted(done.vacuumed.items()):
                    console.print(f"erasure {request}: {files} old file(s) deleted")
                for request, at in sorted(done.pending.items()):
                    console.print(
                        f"erasure {request}: retention not passed; run `headwater erase --vacuum` "
                        f"again after {_when(at)}"
                    )
                if not done.vacuumed and not done.pending:
                    console.print("nothing to vacuum")
                return
            fields = parse_entity_pairs(entity or [])
            found, key = resolve_entity_key(
                catalog.definitions(include_retired=True), fields, entity_name
            )
            report = erase_entity(
                settings,
                catalog,
                found.name,
                key,
                retention_hours=retention_hours,
                wait_timeout_s=wait_seconds,
            )
    finally:
        catalog.close()
    shown = ", ".join(f"{k}={v}" for k, v in report.key.items())
    console.print(f"erased {report.entity} {escape(shown)} (erasure request {report.erasure_id})")
    console.print(f"  online: {report.online_keys_deleted} key(s) deleted")
    for name, rows in report.rows_deleted.items():
        console.print(f"  history {name}: {rows} row(s) deleted")
    for name, rows in report.training_set_rows.items():
        console.print(f"  training set {name}: {rows} row(s) deleted from its kept input")
    console.print(f"  response log: {report.response_log_rows} row(s) deleted")
    for topic, ends in report.topic_ends.items():
        console.print(
            f"  replays of {topic} skip its events before offsets {ends}; later events are new"
        )
    if report.vacuumed_files is not None:
        console.print(f"  old files: {report.vacuumed_files} deleted now (retention 0)")
    else:
        console.print(
            f"  old files: kept {report.retention_hours} h for time travel; they can be deleted "
            f"after {report.vacuum_after}: run `headwater erase --vacuum` then"
        )
    for warning in report.warnings:
        console.print(f"  [yellow]warning:[/] {escape(warning)}")
