"""Dead letters as people look at them: counts per source and reason, and a sample.

Shared by ``headwater dlq list|show`` and the API (the console's dead-letter page, the
monitor's counts by reason). Reading goes through ``connectors.dlq`` (a throwaway consumer,
no group), so looking never moves anyone's offsets.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from headwater.connectors.catalog import Catalog, CatalogError
from headwater.connectors.dlq import DeadLetter, read_dead_letters, replayed_letters
from headwater.schemas.avro import WIRE_HEADER_SIZE, decode_body, event_time_ms, wire_schema_id
from headwater.schemas.definitions import Source
from headwater.schemas.errors import DefinitionError, EventError, UnknownNameError
from headwater.schemas.settings import KafkaSettings

__all__ = [
    "LetterView",
    "ReasonCount",
    "count_dead_letters",
    "dead_letter_source",
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


def dead_letter_source(catalog: Catalog, name: str) -> Source:
    """The source called ``name``, for a dead-letter command or page."""
    try:
        return catalog.definitions().source(name)
    except UnknownNameError as exc:
        msg = f"{exc}; see `headwater dlq list`"
        raise DefinitionError(msg) from exc


def count_dead_letters(kafka: KafkaSettings, sources: Sequence[Source]) -> list[ReasonCount]:
    """Letters per source and reason (sources without letters are left out)."""
    counts = []
    for source in sources:
        replayed = replayed_letters(kafka, source.dlq_topic)
        letters: Counter[str] = Counter()
        done: Counter[str] = Counter()
        for letter in read_dead_letters(kafka, source.dlq_topic):
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
    catalog: Catalog,
    kafka: KafkaSettings,
    source_name: str,
    *,
    reason: str | None = None,
    limit: int = 10,
) -> tuple[list[LetterView], int]:
    """The first ``limit`` letters of a source (of ``reason``), and how many match in all.

    Raises:
        DefinitionError: unknown source (the message names the command that lists them).
    """
    source = dead_letter_source(catalog, source_name)
    replayed = replayed_letters(kafka, source.dlq_topic)
    views: list[LetterView] = []
    matching = 0
    for letter in read_dead_letters(kafka, source.dlq_topic):
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
                source_position=f"{source.topic}[{position[0]}]@{position[1]}" if position else "",
                replayed=letter.id in replayed,
            )
        )
    return views, matching
