"""``headwater dlq list|show|replay``: see the dead letters, and send them back once fixed.

A worker dead-letters an event it cannot use (undecodable, an unknown schema id, a missing
key, a time too far in the future...) with the reason, the error and the field at fault.
``list`` counts the letters per source and reason, ``show`` prints a sample, and ``replay``
re-produces them into the source topic after the definition, schema or setting that refused
them was fixed: exactly once (``connectors.dlq``), so a second replay of the same letters
does nothing and a replay of one reason leaves the others replayable.
"""

from __future__ import annotations

from dataclasses import dataclass

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from headwater.connectors.catalog import Catalog
from headwater.connectors.dlq import DeadLetterReplayer, read_dead_letters
from headwater.schemas.settings import Settings
from headwater.serving import dead_letter_views as views
from headwater.serving.dead_letter_views import LetterView, ReasonCount, dead_letter_source

__all__ = [
    "LetterView",
    "ReasonCount",
    "ReplayReport",
    "count_dead_letters",
    "print_counts",
    "print_sample",
    "replay_dead_letters",
    "sample_dead_letters",
]


@dataclass(frozen=True)
class ReplayReport:
    source: str
    topic: str
    replayed: int
    """Letters re-produced by this run."""
    skipped: int
    """Matching letters that an earlier run replayed already."""


def count_dead_letters(settings: Settings) -> list[ReasonCount]:
    """Letters per source and reason of every source in the catalog."""
    catalog = Catalog(settings.catalog_url)
    try:
        sources = catalog.definitions().sources
    finally:
        catalog.close()
    return views.count_dead_letters(settings.kafka, sources)


def sample_dead_letters(
    settings: Settings, source_name: str, *, reason: str | None = None, limit: int = 10
) -> tuple[list[LetterView], int]:
    """The first ``limit`` letters of a source (of ``reason``), and how many match in all."""
    catalog = Catalog(settings.catalog_url)
    try:
        return views.sample_dead_letters(
            catalog, settings.kafka, source_name, reason=reason, limit=limit
        )
    finally:
        catalog.close()


def replay_dead_letters(
    settings: Settings, source_name: str, *, reason: str | None = None
) -> ReplayReport:
    """Replay the letters of a source (of ``reason``) that no run replayed before.

    Raises:
        DefinitionError: unknown source.
        KafkaUnavailableError, ProduceError: Kafka failed; rerun, nothing is replayed twice.
    """
    catalog = Catalog(settings.catalog_url)
    try:
        source = dead_letter_source(catalog, source_name)
    finally:
        catalog.close()
    replayer = DeadLetterReplayer(settings.kafka, source.dlq_topic, source.topic)
    done = replayer.replayed()
    matching = [
        letter
        for letter in read_dead_letters(settings.kafka, source.dlq_topic)
        if reason is None or letter.reason == reason
    ]
    todo = [letter for letter in matching if letter.id not in done]
    replayed = replayer.replay(todo)
    return ReplayReport(source.name, source.topic, replayed, len(matching) - len(todo))


def print_counts(console: Console, counts: list[ReasonCount]) -> None:
    if not counts:
        console.print("no dead letters")
        return
    table = Table(title="dead letters")
    for name in ("source", "reason", "letters", "replayed", "pending"):
        table.add_column(
            name, justify="right" if name in ("letters", "replayed", "pending") else "left"
        )
    for c in counts:
        table.add_row(c.source, c.reason, str(c.letters), str(c.replayed), str(c.pending))
    console.print(table)


def print_sample(console: Console, source: str, views: list[LetterView], matching: int) -> None:
    if not views:
        console.print(
            f"no dead letters of {source}" + (" with that reason" if matching == 0 else "")
        )
        return
    table = Table(title=f"dead letters of {source}: {len(views)} of {matching}")
    for name in ("letter", "reason", "field", "error", "event time", "from", "replayed"):
        table.add_column(name, overflow="fold")
    for v in views:
        table.add_row(
            f"{v.partition}:{v.offset}",
            v.reason,
            v.field or "-",
            escape(f"{v.error_class}: {v.error}" if v.error_class else v.error),
            v.event_time or "-",
            v.source_position or "-",
            "yes" if v.replayed else "no",
        )
    console.print(table)
