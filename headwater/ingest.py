"""Batch ingestion: files or SQL rows into a source's topic through the one producer connector.

Each input unit (one file, or one SQL query run) is read and validated whole before any of
it is produced: a bad row stops the run with nothing of that unit produced (earlier units
are complete and acknowledged), unless bad rows are skipped into a reject file. Every
message carries ``hw.event_id`` = sha256(source, file identity or query, row number).
"""

from __future__ import annotations

import glob
import hashlib
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import pyarrow as pa
from rich.progress import BarColumn, Progress, ProgressColumn, Task, TextColumn, TimeRemainingColumn
from rich.text import Text

from headwater.connectors.catalog import Catalog
from headwater.connectors.kafka import EventProducer, wait_for_kafka
from headwater.connectors.replay import (
    EVENT_ID_HEADER,
    SUPPORTED_SUFFIXES,
    BadRow,
    BadRowError,
    Rows,
    RowValidator,
    event_id,
    iter_file_rows,
)
from headwater.connectors.sources_sql import query_identity, read_sql_rows
from headwater.schedule import FileIdentity, Ledger
from headwater.schemas.errors import ConfigError
from headwater.schemas.settings import KafkaSettings, Settings
from headwater.watermarks import WatermarkTracker

__all__ = ["IngestResult", "Ingestor", "expand_inputs", "ingest_files"]


def expand_inputs(args: Sequence[str | Path], *, allow_empty: bool = False) -> list[Path]:
    """Files named, in directories (supported files directly inside, sorted) and glob matches.

    Raises:
        ConfigError: a named path does not exist or has an unsupported type, or nothing matched.
    """
    found: list[Path] = []
    for arg in map(str, args):
        if any(c in arg for c in "*?["):
            found += [p for p in map(Path, sorted(glob.glob(arg, recursive=True))) if _supported(p)]
        elif Path(arg).is_dir():
            found += sorted(p for p in Path(arg).iterdir() if _supported(p))
        elif Path(arg).is_file():
            if not _supported(Path(arg)):
                raise ConfigError(
                    f"{arg}: unsupported file type; use {', '.join(SUPPORTED_SUFFIXES)}"
                )
            found.append(Path(arg))
        else:
            raise ConfigError(f"{arg}: no such file or directory")
    if not found and not allow_empty:
        raise ConfigError(
            f"no {', '.join(SUPPORTED_SUFFIXES)} files in {', '.join(map(str, args))}"
        )
    return list(dict.fromkeys(found))


def _supported(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in SUPPORTED_SUFFIXES


class _RateColumn(ProgressColumn):
    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        return Text(f"{speed:,.0f} events/s" if speed else "", style="progress.data.speed")


@dataclass
class IngestResult:
    produced: int = 0
    rejected: int = 0
    files: int = 0
    skipped_files: int = 0
    rejects: list[BadRow] = field(default_factory=list)


class Ingestor:
    """Validates and produces input units of one source; see the module docstring.

    Args:
        rejects: where bad rows go (JSON lines); ``None`` stops at the first bad row.
        rate: at most this many events per second (``None``: as fast as Kafka takes them).
    """

    def __init__(
        self,
        validator: RowValidator,
        *,
        kafka: KafkaSettings | None = None,
        rejects: IO[str] | None = None,
        rate: float | None = None,
        show_progress: bool = True,
        producer: EventProducer | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.validator, self.source = validator, validator.source
        self.kafka, self.rejects, self.rate, self.show_progress = (
            kafka,
            rejects,
            rate,
            show_progress,
        )
        self._producer = producer
        self._clock, self._sleep = clock, sleep

    @classmethod
    def for_source(
        cls,
        settings: Settings,
        source_name: str,
        *,
        mapping: Mapping[str, str] | None = None,
        **options: Any,
    ) -> Ingestor:
        """An ingestor of a source registered in the catalog (registers its schema id)."""
        catalog = Catalog(settings.catalog_url)
        defs = catalog.definitions()
        source = defs.source(source_name)  # UnknownNameError lists the known sources
        schema_id = catalog.register_schema(source.subject, source.schema)
        validator = RowValidator(source, schema_id, defs.entity_of_source(source_name), mapping)
        return cls(validator, kafka=settings.kafka, **options)

    @property
    def producer(self) -> EventProducer:
        if self._producer is None:
            if self.kafka is None:
                raise ConfigError("no Kafka settings to produce with")
            wait_for_kafka(self.kafka)
            self._producer = EventProducer(self.kafka)
        return self._producer

    def validate(
        self, origin: str, identity: str, text: bool, rows: Rows, result: IngestResult
    ) -> list[tuple[bytes, bytes, bytes]]:
        """Encoded ``(key, value, event id)`` of every good row; bad rows raise or are rejected."""
        messages = []
        for row_no, raw in rows:
            try:
                if isinstance(raw, BadRow):
                    raise BadRowError(raw)
                key, value = self.validator.encode(origin, row_no, raw, text)
            except BadRowError as exc:
                if self.rejects is None:
                    raise
                result.rejects.append(exc.bad)
                continue
            messages.append((key, value, event_id(self.source.name, identity, row_no)))
        return messages

    def produce(
        self, label: str, messages: list[tuple[bytes, bytes, bytes]], progress: Progress
    ) -> None:
        """Produce in order, throttled to ``rate``, and wait until Kafka acknowledged all."""
        task = progress.add_task(f"{label} -> {self.source.topic}", total=len(messages))
        step = max(1, min(10_000, int(self.rate / 10))) if self.rate else 10_000
        started, topic, producer = self._clock(), self.source.topic, self.producer
        for start in range(0, len(messages), step):
            for key, value, eid in messages[start : start + step]:
                producer.produce(topic, value, key, headers={EVENT_ID_HEADER: eid})
            progress.advance(task, min(step, len(messages) - start))
            if self.rate:
                delay = started + (start + step) / self.rate - self._clock()
                if delay > 0:
                    self._sleep(delay)
        producer.flush()

    def _unit(
        self,
        label: str,
        origin: str,
        identity: str,
        text: bool,
        rows: Rows,
        result: IngestResult,
        progress: Progress,
    ) -> int:
        before = len(result.rejects)
        messages = self.validate(origin, identity, text, rows, result)
        if self.rejects is not None:
            for bad in result.rejects[before:]:
                self.rejects.write(bad.as_json() + "\n")
            self.rejects.flush()
        result.rejected += len(result.rejects) - before
        self.produce(label, messages, progress)
        result.produced += len(messages)
        return len(messages)

    def _progress(self) -> Progress:
        return Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            TextColumn("{task.completed:,}/{task.total:,} events"),
            _RateColumn(),
            TimeRemainingColumn(),
            disable=not self.show_progress,
        )

    def ingest_files(
        self, files: Sequence[Path], ledger: Ledger | None = None, *, skip_done: bool = True
    ) -> IngestResult:
        """Ingest ``files`` in order; with a ledger, skip files it has and record each one done."""
        result = IngestResult()
        with self._progress() as progress:
            for path in files:
                identity = FileIdentity.of(path)
                if ledger is not None and skip_done and ledger.is_done(identity):
                    result.skipped_files += 1
                    continue
                text, rows = iter_file_rows(path)
                count = self._unit(
                    path.name, str(path), identity.text, text, rows, result, progress
                )
                result.files += 1
                if ledger is not None:
                    ledger.mark_file(identity, count)
                    ledger.save()
        return result

    def ingest_table(self, table: pa.Table, *, label: str = "dataframe") -> IngestResult:
        """Ingest an in-memory table (a notebook's data frame) in row order.

        Event ids derive from the table's content, so ingesting the same frame twice gives
        the same ids (detectable duplicates).
        """
        sink = pa.BufferOutputStream()
        with pa.ipc.new_stream(sink, table.schema) as writer:
            writer.write_table(table)
        identity = f"table:{hashlib.sha256(sink.getvalue().to_pybytes()).hexdigest()}"
        result = IngestResult()
        rows = enumerate(table.to_pylist(), 1)
        with self._progress() as progress:
            self._unit(label, label, identity, False, rows, result, progress)
        return result

    def ingest_sql(
        self, db_url: str, query: str, *, watermark: str | None = None, ledger: Ledger | None = None
    ) -> IngestResult:
        """Ingest a query's rows; with ``watermark`` and a ledger, only the rows no earlier run
        ingested: those above the last maximum, and those at it that are new
        (``headwater.watermarks``)."""
        result = IngestResult()
        key = query_identity(db_url, query, watermark)
        previous = ledger.watermark(key) if ledger is not None and watermark else None
        tracker = WatermarkTracker(previous)
        after = tracker.after

        def tracked() -> Iterator[tuple[int, dict[str, Any]]]:
            rows = read_sql_rows(
                db_url, query, watermark_column=watermark, after=after, inclusive=tracker.inclusive
            )
            for row_no, row in rows:
                if watermark is None or tracker.admit(row.get(watermark), row):
                    yield row_no, row

        identity = f"{key}:after={after!r}"
        with self._progress() as progress:
            self._unit("query", "query", identity, False, tracked(), result, progress)
        state = tracker.state()
        if ledger is not None and watermark is not None and state is not None and state != previous:
            ledger.set_watermark(key, state)
            ledger.save()
        return result


def ingest_files(
    settings: Settings,
    source_name: str,
    files: Sequence[Path],
    *,
    show_progress: bool = True,
    again: bool = False,
) -> int:
    """Produce every row of ``files`` to the source's topic; returns once Kafka acknowledged all.

    Like the CLI, it keeps the source's bookkeeping: a file ingested before, unchanged, is
    skipped (0 events) unless ``again``; so a backfill rerun after a crash repeats nothing.

    Raises:
        BadRowError: a row is bad (nothing of its file was produced).
    """
    ledger = Ledger.for_source(settings.home, source_name)
    ingestor = Ingestor.for_source(settings, source_name, show_progress=show_progress)
    return ingestor.ingest_files(files, ledger, skip_done=not again).produced
