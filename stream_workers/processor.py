"""One micro-batch of a source's messages into both stores, exactly once.

Kept free of faust so it can be tested directly. For each batch:
  1. every feature-set version that is behind the batch (new, or added while the worker was
     down) first catches up from its own position by re-reading the gap from Kafka,
  2. decode and validate every message; bad ones go to ``dlq.<source>`` with the reason,
  3. for each version: filter and transform the batch (vectorised, on Arrow), append the
     rows to its Delta history together with the batch's last offset per partition (a Delta
     app transaction, also when no row passed the filter), and merge the rows into each
     entity's online state in Redis (skipping offsets at or below the entity's offset),
and only then does the caller acknowledge the messages to Kafka. A crash anywhere replays the
batch, and both skips make the replay change nothing that was already written.

The Delta app transaction of a version is its position in the topic: the next event it
needs is the one after it. That is what makes a new version catch up by itself, with no
special bootstrap: its position starts at -1.

This module orchestrates those steps; step 2 is ``event_decoding`` and ``dead_letters``, the
Delta half of step 3 ``history_writer`` and the Redis half ``online_fold``.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.compute as pc

from headwater.connectors.base import BaseOfflineStore, BaseOnlineStore
from headwater.connectors.catalog import Catalog
from headwater.connectors.errors import StoreFaultError, iterate_with_faults, store_faults
from headwater.connectors.kafka import EventProducer, KafkaRecord, RawMessage
from headwater.connectors.offline_delta import history_schema
from headwater.schemas.definitions import Entity, FeatureSet, Source
from headwater.schemas.errors import EventError
from headwater.schemas.expressions import apply_filter_and_transforms
from headwater.schemas.tiles import FeatureSetPlan, TopicEpoch
from headwater.stream_workers.dead_letters import DeadLetters
from headwater.stream_workers.erasure_skips import ErasureSkips, applicable
from headwater.stream_workers.errors import EventProcessingError, TopicTruncatedError
from headwater.stream_workers.event_decoding import EventDecoder
from headwater.stream_workers.history_writer import HistoryRows, HistoryWriter
from headwater.stream_workers.metrics import (
    BATCH_SECONDS,
    DEAD_LETTERED,
    EVENTS_APPLIED,
    EVENTS_ERASED,
    EVENTS_IN,
    NEWEST_EVENT_TIME,
    PARTITION_NEWEST_EVENT_TIME,
    PROCESSING_ERRORS,
    TOPIC_EPOCHS,
)
from headwater.stream_workers.online_fold import OnlineFolder, OnlineWrite

__all__ = ["BatchProcessor", "BatchResult", "KafkaRecord", "RangeReader", "RawMessage"]

log = logging.getLogger(__name__)

_WRITE_ATTEMPTS = 5

RangeReader = Callable[[int, int, int], Iterator[Sequence[KafkaRecord]]]
"""(partition, start, end) -> batches of the messages with start <= offset < end."""


@dataclass
class BatchResult:
    accepted: int = 0
    dead_lettered: dict[str, int] = field(default_factory=dict)
    caught_up: dict[str, int] = field(default_factory=dict)
    erased: int = 0


class BatchProcessor:
    """Processes batches of one source for all of its feature-set versions.

    Args:
        writer_id: names this deployment's Delta app transactions (the consumer group), so
            restarts of the same group recognise their own commits.
        dlq: where bad events go; ``None`` counts them without sending (replays).
        read_range: re-reads part of a partition so a version that is behind can catch up;
            ``None`` disables catching up.
        offline_flush_rows, offline_flush_seconds: Delta commits wait for this many rows or
            this long (0 and 0: every batch is committed at once); ``flush`` also commits
            them once no batch came for ``offline_idle_flush_seconds``.
        state_cache_entities: how many entity states (per version) to keep in memory
            between batches; a cached state is trusted only while the store accepts the
            compare-and-set of its offsets, so a stale one costs a retry, never a wrong value.
        clock_ms: the writer's clock; events dated after it wait as ``pending`` online.
        stop_on_processing_error: an event that fails in a way nobody foresaw raises
            ``EventProcessingError`` instead of going to the DLQ (``processing_error``).
        topic_epoch: the source topic's current epoch (``connectors.topic_epochs``); every
            stored position is kept per epoch. ``None``: one nameless epoch (tests, benches).
        log_ends: the next offset of each partition of the topic; with it, positions stored
            past a partition's end (a log that lost events) stop processing
            (``TopicTruncatedError``) instead of skipping new events silently.
    """

    def __init__(
        self,
        *,
        source: Source,
        feature_sets: Sequence[FeatureSet],
        entities: Sequence[Entity],
        catalog: Catalog,
        online: BaseOnlineStore,
        offline: BaseOfflineStore,
        dlq: EventProducer | None,
        writer_id: str,
        max_future_skew_ms: int,
        read_range: RangeReader | None = None,
        state_cache_entities: int = 100_000,
        offline_flush_rows: int = 0,
        offline_flush_seconds: float = 0.0,
        offline_idle_flush_seconds: float = math.inf,
        clock_ms: Callable[[], int] = lambda: time.time_ns() // 1_000_000,
        stop_on_processing_error: bool = False,
        native_decoding: bool = True,
        topic_epoch: Callable[[], TopicEpoch] | None = None,
        log_ends: Callable[[], dict[int, int]] | None = None,
    ) -> None:
        self.source = source
        self.plans = [FeatureSetPlan(fs, source) for fs in feature_sets]
        by_name = {e.name: e for e in entities}
        self._keys = {fs.qualified_name: by_name[fs.entity].keys for fs in feature_sets}
        self._decoder = EventDecoder(
            source,
            catalog,
            max_future_skew_ms,
            key_fields=tuple(dict.fromkeys(k for keys in self._keys.values() for k in keys)),
            # Keys of several fields can collide through their separator (Entity.key_from_parts).
            joined_keys=tuple(
                dict.fromkeys(
                    by_name[fs.entity]
                    for fs in feature_sets
                    if len(self._keys[fs.qualified_name]) > 1
                )
            ),
            native=native_decoding,
        )
        self._dead_letters = DeadLetters(source, dlq, self._position)
        self._read_range = read_range
        self._newest: dict[str, int] = {}
        self._partition_newest: dict[int, int] = {}
        self._folder = OnlineFolder(
            online, self._keys, state_cache_entities, clock_ms, self._current_epoch
        )
        self._offline_history = HistoryWriter(
            offline,
            writer_id,
            {p.feature_set.qualified_name: history_schema(p.history_columns) for p in self.plans},
            self._current_epoch,
            flush_rows=offline_flush_rows,
            flush_seconds=offline_flush_seconds,
            idle_flush_seconds=offline_idle_flush_seconds,
        )
        self._stop_on_error = stop_on_processing_error
        self._epoch_of = topic_epoch
        self._log_ends = log_ends
        self._epoch: TopicEpoch | None = None
        self.erasures: ErasureSkips | None = None
        """Erasures of this source (``erasure_skips``), swapped in by the worker; per batch."""
        # Last offset per partition processed since the partitions were assigned: offsets
        # between it and the next batch are not events (transaction markers, aborted pushes).
        self._delivered: dict[int, int] = {}

    def forget_positions(self) -> None:
        """Commit buffered rows, then drop cached positions and states; call when partitions
        are reassigned (another worker may write to them from now on).

        Rows that cannot be committed now (Delta is down) are dropped rather than kept: the
        positions go with them, so whoever owns the partitions next re-reads that gap from
        Kafka (the catch-up), and nothing is lost.
        """
        try:
            self.flush()
        except StoreFaultError as exc:
            log.warning(
                "%s: buffered history rows dropped, to be re-read from Kafka: %s",
                self.source.name,
                exc,
            )
            self._offline_history.forget(drop_buffers=True)
        self._offline_history.forget()
        self._folder.drop_states()
        self._epoch = None  # read again: the topic may have been replaced meanwhile
        self._delivered.clear()

    def _position(self, plan: FeatureSetPlan, partition: int) -> int:
        return self._offline_history.position(plan, partition)

    def _current_epoch(self) -> TopicEpoch | None:
        if self._epoch is None and self._epoch_of is not None:
            with store_faults("kafka", f"reading the identity of {self.source.topic}"):
                self._epoch = self._epoch_of()
        return self._epoch

    def verify_topic(self, partitions: Iterable[int]) -> None:
        """Check that stored positions still describe the topic: a new topic id starts a new
        epoch here (with a warning); positions past a partition's end raise.

        Called when a batch replays offsets already handled (after a crash, a rebalance, or
        because the topic was replaced under the worker) and on the idle timer.

        Raises:
            TopicTruncatedError: the log ends before a stored position, under the same id.
        """
        if self._epoch_of is None:
            return
        with store_faults("kafka", f"reading the identity of {self.source.topic}"):
            new = self._epoch_of()
        old = self._epoch
        if old is None:
            self._epoch = new
        elif new.name != old.name:
            self._switch_epoch(old, new)
        if self._log_ends is None:
            return
        with store_faults("kafka", f"reading the log ends of {self.source.topic}"):
            ends = self._log_ends()
        for partition in partitions:
            end = ends.get(partition)
            stored = max(self._position(plan, partition) for plan in self.plans)
            if end is not None and stored >= end:
                self._epoch = None  # so that a reset of the epoch is seen on the next try
                self._offline_history.forget()
                start = new.start.get(partition, -1)
                msg = (
                    f"topic {self.source.topic!r} partition {partition} ends at offset {end}, but "
                    f"Headwater stored events up to offset {stored} of it (topic id {new.name}, "
                    f"epoch start {start}): the log lost its end, and new events would reuse "
                    f"offsets already applied. Nothing more of {self.source.name!r} is processed "
                    f"until you run `headwater reset-epoch {self.source.name}` (events now in the "
                    "log count as applied, later ones as new), or recreate the topic"
                )
                raise TopicTruncatedError(msg)

    def _switch_epoch(self, old: TopicEpoch, new: TopicEpoch) -> None:
        """The topic was replaced: commit what is buffered under the old epoch, then forget
        every cached position and state (positions restart at the new epoch's start)."""
        self.flush()
        log.warning(
            "topic %s was replaced (epoch %s -> %s): a new epoch; positions restart, every "
            "event of the new topic is applied, and events of the old one stay counted",
            self.source.topic,
            old.name,
            new.name,
        )
        TOPIC_EPOCHS.labels(self.source.name).inc()
        self._epoch = new
        self._offline_history.forget()
        self._folder.drop_states()
        self._delivered.clear()

    def process(self, messages: Sequence[KafkaRecord]) -> BatchResult:
        """Write one batch to the DLQ, Delta and Redis; returns what happened to it.

        Raises:
            StoreFaultError: a store failed; nothing of the batch was lost, and calling
                ``process`` again with the same batch (after a backoff) is exact.
            EventProcessingError: an event failed in an unforeseen way and
                ``on_processing_error`` is ``"stop"``.
        """
        result = BatchResult()
        if not messages:
            return result
        first: dict[int, int] = {}
        for m in messages:
            first[m.partition] = min(first.get(m.partition, m.offset), m.offset)
        replayed = [
            p
            for p, offset in first.items()
            if any(offset <= self._position(plan, p) for plan in self.plans)
        ]
        if replayed:
            # Offsets already handled: a retry, a replay after a crash or rebalance, or a
            # topic replaced under the worker. Only the last must not be skipped.
            self.verify_topic(replayed)
        for partition, offset in first.items():
            for name, count in self.catch_up(partition, offset).items():
                result.caught_up[name] = result.caught_up.get(name, 0) + count
        with BATCH_SECONDS.labels(self.source.name).time():
            self._process_isolating(self.plans, messages, result, dead_letter=True)
        EVENTS_IN.labels(self.source.name).inc(len(messages))
        EVENTS_ERASED.labels(self.source.name).inc(result.erased)
        for m in messages:
            self._delivered[m.partition] = max(self._delivered.get(m.partition, -1), m.offset)
        for reason, count in result.dead_lettered.items():
            DEAD_LETTERED.labels(self.source.name, reason).inc(count)
        return result

    def catch_up(self, partition: int, end: int) -> dict[str, int]:
        """Bring every version whose position in ``partition`` is before ``end - 1`` up to it.

        Returns the events replayed per version. A no-op without a ``read_range``.
        """
        done: dict[str, int] = {}
        if self._read_range is None:
            return done
        delivered = self._delivered.get(partition)
        if delivered is not None and delivered < end - 1:
            end = delivered + 1  # the consumer skipped the offsets between: not events
        for plan in self.plans:
            behind = self._position(plan, partition)
            if behind < end - 1:
                done[plan.feature_set.qualified_name] = self._catch_up(
                    plan, partition, behind + 1, end
                )
        return done

    def _catch_up(self, plan: FeatureSetPlan, partition: int, start: int, end: int) -> int:
        assert self._read_range is not None
        log.info(
            "%s: catching up partition %d from offset %d to %d",
            plan.feature_set.qualified_name,
            partition,
            start,
            end,
        )
        count = 0
        scratch = BatchResult()
        for batch in iterate_with_faults(
            self._read_range(partition, start, end), "kafka", f"re-reading {self.source.topic}"
        ):
            # These events went through the DLQ when the worker first consumed them; one
            # that fails only for this version is isolated and dead-lettered all the same.
            self._process_isolating([plan], batch, scratch, dead_letter=False)
            count += len(batch)
        EVENTS_ERASED.labels(self.source.name).inc(scratch.erased)
        return count

    def _process_isolating(
        self,
        plans: Sequence[FeatureSetPlan],
        messages: Sequence[KafkaRecord],
        result: BatchResult,
        *,
        dead_letter: bool,
    ) -> None:
        """``_process``, isolating an event that fails in a way nobody foresaw.

        A store fault propagates: the caller retries the whole batch after a backoff. Any
        other exception is a fault of some event (or of our code on it): the batch is split
        in halves until that one event is found, which goes to the DLQ with reason
        ``processing_error`` and the exception, and every other event is processed as
        usual. ``_process`` writes nothing before all of its computing has succeeded, so a
        failed attempt leaves only the entity states it folded in memory, which are dropped.
        """
        try:
            self._process(plans, messages, result, dead_letter=dead_letter)
            return
        except StoreFaultError:
            self._folder.drop_states()
            raise
        except Exception as exc:  # noqa: BLE001 - isolated below, never swallowed
            self._folder.drop_states()
            if len(messages) == 1:
                self._poison(plans, messages[0], exc, result)
                return
        middle = len(messages) // 2
        # Each half keeps its partitions' offsets in order: a prefix of the batch holds a
        # prefix of every partition's messages.
        self._process_isolating(plans, messages[:middle], result, dead_letter=dead_letter)
        self._process_isolating(plans, messages[middle:], result, dead_letter=dead_letter)

    def _poison(
        self,
        plans: Sequence[FeatureSetPlan],
        msg: KafkaRecord,
        exc: Exception,
        result: BatchResult,
    ) -> None:
        """Dead-letter the one event ``exc`` came from (or stop, if so configured)."""
        where = f"{self.source.topic}[{msg.partition}]@{msg.offset}"
        versions = ", ".join(p.feature_set.qualified_name for p in plans)
        PROCESSING_ERRORS.labels(self.source.name).inc()
        if self._stop_on_error:
            msg_text = (
                f"event {where} failed for {versions}: {type(exc).__name__}: {exc}; "
                "worker.on_processing_error is 'stop', so this source stops here; set it to "
                "'dead_letter' to send such events to the DLQ and carry on"
            )
            raise EventProcessingError(msg_text) from exc
        log.error(
            "event %s failed for %s (%s: %s); it goes to %s with reason processing_error",
            where,
            versions,
            type(exc).__name__,
            exc,
            self.source.dlq_topic,
            exc_info=exc,
        )
        if isinstance(exc, EventError):
            error = exc
        else:
            text = f"processing failed for {versions}: {type(exc).__name__}: {exc}"
            error = EventError(text, reason="processing_error")
        self._process(
            plans, [msg], result, dead_letter=True, poison={(msg.partition, msg.offset): error}
        )

    def _process(
        self,
        plans: Sequence[FeatureSetPlan],
        messages: Sequence[KafkaRecord],
        result: BatchResult,
        *,
        dead_letter: bool,
        poison: Mapping[tuple[int, int], EventError] | None = None,
    ) -> None:
        """Validate, compute, then write one batch for ``plans``.

        Everything that can fail because of the data (decoding, Arrow conversion, filters,
        transforms, folding into entity states) happens before the first write, so an
        exception before the writes leaves both stores and the offline buffers untouched.
        """
        skips = applicable(self.erasures, self._current_epoch()) if self.erasures else None
        decoded = self._decoder.decode(messages, skips=skips, poison=poison)
        batch, bad, last = decoded.table, decoded.bad, decoded.last
        work: list[tuple[FeatureSetPlan, pa.Table, HistoryRows | None, OnlineWrite | None]] = []
        for plan in plans:
            rows = batch
            # Also on an empty batch (all events bad), so its rows have the transform columns.
            if plan.transforms or plan.filter is not None:
                rows = apply_filter_and_transforms(batch, plan.filter, plan.transforms)
            work.append(
                (
                    plan,
                    rows,
                    self._offline_history.rows(plan, rows, last),
                    self._folder.fold(plan, rows),
                )
            )
        # Writes from here on: the DLQ first, so a bad event is reported before any offset
        # past it can be committed.
        if bad and dead_letter:
            for reason, count in self._dead_letters.send(plans, bad).items():
                result.dead_lettered[reason] = result.dead_lettered.get(reason, 0) + count
        for plan, rows, offline, online in work:
            if offline is not None:
                self._offline_history.buffer(plan, offline)
            if online is not None:
                self._folder.write(plan, online)
            if dead_letter and rows.num_rows:
                name = plan.feature_set.qualified_name
                EVENTS_APPLIED.labels(name).inc(rows.num_rows)
                newest = max(
                    pc.max(rows.column("event_time_ms")).as_py(), self._newest.get(name, 0)
                )
                self._newest[name] = newest
                NEWEST_EVENT_TIME.labels(name).set(newest / 1000)
        self._offline_history.commit_due(plans)
        if dead_letter:
            result.accepted += decoded.accepted
            self._note_partition_times(batch)
        result.erased += len(messages) - decoded.accepted - len(bad)

    def _note_partition_times(self, batch: pa.Table) -> None:
        """The newest event time applied per source partition (a partition whose producer
        stopped shows up stale while the others move on)."""
        if not batch.num_rows or "_partition" not in batch.column_names:
            return
        newest = batch.group_by("_partition").aggregate([("event_time_ms", "max")])
        for partition, ms in zip(
            newest.column("_partition").to_pylist(),
            newest.column("event_time_ms_max").to_pylist(),
            strict=True,
        ):
            if ms is not None and ms > self._partition_newest.get(partition, -1):
                self._partition_newest[partition] = ms
                PARTITION_NEWEST_EVENT_TIME.labels(self.source.name, str(partition)).set(ms / 1000)

    def flush(self, *, older_than_s: float = 0.0) -> int:
        """Commit buffered history rows (see ``HistoryWriter.flush``); called on a timer,
        on revocation and when the worker stops."""
        return self._offline_history.flush(older_than_s=older_than_s)

    def fold_history(self, feature_set: FeatureSet, rows: pa.Table) -> None:
        """Replace the online states of the entities in ``rows`` by the fold of ``rows``.

        ``rows`` are rows of the version's Delta history (what this processor appended:
        post-filter and transforms, with ``event_time_ms``, ``_partition`` and ``_offset``),
        holding every event of their entities, in offset order per partition. They are
        folded by the code that folds a batch of the stream, into empty states that replace
        what Redis holds for those entities (each entity atomically). ``rebuild-online``
        calls it with the worker stopped, so nothing races the replacement.
        """
        plans = [p for p in self.plans if p.feature_set == feature_set]
        if not plans:
            msg = f"{feature_set.qualified_name} is not one of this processor's feature sets"
            raise ValueError(msg)
        self._folder.replace(plans[0], rows)
