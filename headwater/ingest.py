"""Batch ingestion: files into a source's topic through the one producer connector."""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial
from pathlib import Path

from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

from connectors.kafka import EventProducer, wait_for_kafka
from connectors.replay import read_table, replay_table
from schemas.catalog import Catalog
from schemas.definitions import Definitions
from schemas.errors import DefinitionError
from schemas.settings import Settings

__all__ = ["ingest_files", "key_fields"]


def key_fields(defs: Definitions, source: str) -> tuple[str, ...]:
    """The message key of a source: the entity keys of its feature sets (one partition per entity).

    Raises:
        DefinitionError: the source's feature sets are keyed by different entities.
    """
    entities = {fs.entity for fs in defs.feature_sets_of(source)}
    if len(entities) > 1:
        msg = (
            f"source {source!r} feeds feature sets of several entities {sorted(entities)}; "
            "give each entity its own source topic"
        )
        raise DefinitionError(msg)
    if not entities:
        return ()
    return defs.entity(entities.pop()).keys


def ingest_files(settings: Settings, source_name: str, files: Sequence[Path], *, show_progress: bool = True) -> int:
    """Produce every row of ``files`` to the source's topic; returns once Kafka acknowledged all."""
    catalog = Catalog(settings.catalog_url)
    defs = catalog.definitions()
    try:
        source = defs.source(source_name)
    except KeyError as exc:
        raise DefinitionError(exc.args[0]) from exc
    schema_id = catalog.register_schema(f"{source.topic}-value", source.schema)
    keys = key_fields(defs, source_name)
    wait_for_kafka(settings.kafka)
    producer = EventProducer(settings.kafka)
    total = 0
    tables = [(path, read_table(path)) for path in files]
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.completed:,}/{task.total:,} events"),
        TimeRemainingColumn(),
        disable=not show_progress,
    ) as progress:
        for path, table in tables:
            task = progress.add_task(f"{path.name} -> {source.topic}", total=table.num_rows)
            total += replay_table(
                producer, source, schema_id, keys, table, progress=partial(progress.advance, task)
            )
    return total
