"""``headwater dlq list|show|replay``: see the dead letters, and send them back once fixed.

A worker dead-letters an event it cannot use (undecodable, an unknown schema id, a missing
key, a time too far in the future...) with the reason, the error and the field at fault.
``list`` counts the letters per source and reason, ``show`` prints a sample, and ``replay``
re-produces them into the source topic after the definition, schema or setting that refused
them was fixed: exactly once (``connectors.dlq``), so a second replay of the same letters
does nothing and a replay of one reason leaves the others replayable.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from headwater.connectors.catalog import Catalog, CatalogError
from headwater.connectors.dlq import (
    DeadLetter,
    DeadLetterReplayer,
    read_dead_letters,
    replayed_letters,
)
from headwater.schemas.avro import WIRE_HEADER_SIZE, decode_body, event_time_ms, wire_schema_id
from headwater.schemas.definitions import Source
from headwater.schemas.errors import DefinitionError, EventError, UnknownNameError
from headwater.schemas.settings import Settings

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
class ReasonCount:
    source: str
    reason: str
    letters: int
    replayed: int

    @property
    def pending(self) -> int:
        """Letters not replayed yet."""
        return self.letters - self.replayed


@dataclass(frozen=True)
class LetterView:
    """One letter as ``show`` prints it."""

    partition: int
    offset: int
    reason: str
    field: str
    error: str
    error_class: str
    event_time: str | None
    """ISO-8601 UTC when the event decodes and has a time, else ``None``."""
    source_position: str
    replayed: bool


@dataclass(frozen=True)
class ReplayReport:
    source: str
    topic: str
    replayed: int
    """Letters re-produced by this run."""
    skipped: int
    """Matching letters that an earlier run replayed already."""


def _source(catalog: Catalog, name: str) -> Source:
    try:
        return catalog.definitions().source(name)
    except UnknownNameError as exc:
        msg = f"{exc}; see `headwater dlq list`"
        raise DefinitionError(msg) from exc


def count_dead_letters(settings: Settings) -> list[ReasonCount]:
    """Letters per source and reason (sources without letters are left out)."""
    catalog = Catalog(settings.catalog_url)
    try:
        sources = catalog.definitions().sources
    finally:
        catalog.close()
    counts = []
    for source in sources:
        replayed = replayed_letters(settings.kafka, source.dlq_topic)
        letters: Counter[str] = Counter()
        done: Counter[str] = Counter()
        for letter in read_dead_letters(settings.kafka, source.dlq_topic):
            letters[letter.reason] += 1
            done[letter.reason] += letter.id in replayed
        counts += [ReasonCount(source.name, r, n, done[r]) for r, n in sorted(letters.items())]
    return counts


def _event_time(catalog: Catalog, source: Source, letter: DeadLetter) -> str | None:
    """The letter's event time, if its value decodes (with the catalog's schemas) and has one."""
    if not letter.value:
        return None
    try:
        writer = catalog.schema_by_id(wire_schema_id(letter.value))
        record = decode_body(letter.value, writer, source.schema, offset=WIRE_HEADER_SIZE)
        ms = event_time_ms(record.get(source.timestamp), source.timestamp)
    except (CatalogError, EventError):
        return None
    return (
        datetime.fromtimestamp(ms / 1000, UTC)
        .isoformat(timespec="milliseconds")
        .replace("+00:00", "Z")
    )


def sample_dead_letters(
    settings: Settings, source_name: str, *, reason: str | None = None, limit: int = 10
) -> tuple[list[LetterView], int]:
    """The first ``limit`` letters of a source (of ``reason``), and how many match in all."""
    catalog = Catalog(settings.catalog_url)
    try:
        source = _source(catalog, source_name)
        replayed = replayed_letters(settings.kafka, source.dlq_topic)
        views: list[LetterView] = []
        matching = 0
        for letter in read_dead_letters(settings.kafka, source.dlq_topic):
            if reason is not None and letter.reason != reason:
                continue
            matching += 1
            if len(views) >= limit:
                continue
            position = letter.source_position
            views.append(
                LetterView(
                    partition=letter.partition,
                    offset=letter.offset,
                    reason=letter.reason,
                    field=letter.field,
                    error=letter.error,
                    error_class=letter.headers.get("hw.error_class", ""),
                    event_time=_event_time(catalog, source, letter),
                    source_position=f"{source.topic}[{position[0]}]@{position[1]}"
                    if position
                    else "",
                    replayed=letter.id in replayed,
                )
            )
        return views, matching
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
        source = _source(catalog, source_name)
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
