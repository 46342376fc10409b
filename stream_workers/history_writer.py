"""A source's rows appended to each version's Delta history, exactly once, in batches.

The offline half of the worker's batches (``stream_workers/processor.py``). Each version's
position in the topic is the Delta app transaction of its last commit (per partition, per
topic epoch): the next event it needs is the one after it. Rows wait in memory until enough
of them (or enough time) makes a commit worth its cost, and the in-memory position moves as
soon as rows are buffered. A crash in between leaves Delta behind Kafka's committed offsets;
the restarted worker's catch-up re-reads exactly that gap, so buffered rows may always be
dropped (``forget``) without loss.

A commit that a batch makes due runs on a thread of its own while the next batches are
processed: a Delta commit of a few seconds' rows takes 100-200 ms, and a batch that waited
for it made every event behind it that much later in Redis (freshness p99 at 10k events/s
was set by these waits). One commit runs at a time, in order; the next one, ``flush`` and
``forget`` wait for it. A commit that failed puts its rows back in front of the buffer and
raises its error from the next call, so the caller retries as it did before.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc

from headwater.connectors.base import BaseOfflineStore
from headwater.connectors.errors import StoreFaultError, store_faults
from headwater.connectors.topic_epochs import positions_prefix
from headwater.schemas.tiles import FeatureSetPlan, TopicEpoch

__all__ = ["HistoryRows", "HistoryWriter"]


@dataclass
class HistoryRows:
    """Rows of a batch a version has not stored yet, and the positions they bring it to."""

    table: pa.Table
    advanced: dict[int, int]


class HistoryWriter:
    """Positions and buffered appends of the versions of one source.

    Args:
        offline: the store.
        writer_id: names this deployment's app transactions (its consumer group).
        histories: the Arrow schema of each version's history (by qualified name).
        epoch: the topic epoch positions are kept in (``None``: one nameless epoch).
        flush_rows, flush_seconds: commits wait for this many rows or this long (0 and 0:
            every batch is committed at once); ``flush`` also commits everything once no
            batch came for ``idle_flush_seconds``.
    """

    def __init__(
        self,
        offline: BaseOfflineStore,
        writer_id: str,
        histories: dict[str, pa.Schema],
        epoch: Callable[[], TopicEpoch | None],
        *,
        flush_rows: int,
        flush_seconds: float,
        idle_flush_seconds: float,
    ) -> None:
        self._offline = offline
        self._writer_id = writer_id
        self._histories = histories
        self._epoch = epoch
        self._flush_rows = flush_rows
        self._flush_seconds = flush_seconds
        self._idle_flush_seconds = idle_flush_seconds
        self._positions: dict[str, dict[int, int]] = {}
        self._buffers: dict[str, _Buffer] = {}
        self._last_batch = time.monotonic()
        self._committer: ThreadPoolExecutor | None = None
        self._inflight: tuple[_Buffer, Future[None]] | None = None

    def position(self, plan: FeatureSetPlan, partition: int) -> int:
        """Offset of the last event of ``partition`` this version has consumed in the topic's
        current epoch (its start, -1 for a new topic, when it consumed none)."""
        cached = self._positions.setdefault(plan.feature_set.qualified_name, {})
        if partition not in cached:
            fs = plan.feature_set
            epoch = self._epoch()
            with store_faults("delta", f"reading the position of {fs.qualified_name}"):
                found = self._offline.committed_offsets(fs, self._prefix(), [partition])
            start = epoch.start.get(partition, -1) if epoch is not None else -1
            cached[partition] = found.get(partition, start)
        return cached[partition]

    def rows(
        self, plan: FeatureSetPlan, rows: pa.Table, last: dict[int, int]
    ) -> HistoryRows | None:
        """The rows of a batch (whose last offsets per partition are ``last``) this version
        has not stored yet, in its history schema; ``None`` for a replay of what it has.
        Nothing changes until ``buffer``."""
        positions = {p: self.position(plan, p) for p in last}
        advanced = {p: o for p, o in last.items() if o > positions[p]}
        if not advanced:
            return None
        if rows.num_rows:
            done = pa.array(
                [positions[p] for p in rows.column("_partition").to_pylist()], pa.int64()
            )
            rows = rows.filter(pc.greater(rows.column("_offset"), done))
        schema = self._histories[plan.feature_set.qualified_name]
        return HistoryRows(rows.select(schema.names).cast(schema), advanced)

    def buffer(self, plan: FeatureSetPlan, rows: HistoryRows) -> None:
        """Keep rows for the next commit; the in-memory position moves now."""
        name = plan.feature_set.qualified_name
        self._buffers.setdefault(name, _Buffer(plan)).add(rows.table, rows.advanced)
        self._positions[name].update(rows.advanced)

    def commit_due(self, plans: Sequence[FeatureSetPlan]) -> None:
        """Commit the buffers of ``plans`` that reached their row or age bound; marks the
        end of a batch (see ``flush``)."""
        self._last_batch = time.monotonic()
        if self._inflight is not None and self._inflight[1].done():
            self._wait()  # a failed commit is reported by the first batch after it
        for plan in plans:
            buffer = self._buffers.get(plan.feature_set.qualified_name)
            if (
                buffer is not None
                and buffer.positions
                and (buffer.rows >= self._flush_rows or buffer.age_s() >= self._flush_seconds)
            ):
                self._wait()
                taken = buffer.take()
                if self._committer is None:
                    self._committer = ThreadPoolExecutor(1, thread_name_prefix="delta-commit")
                commit = self._committer.submit(self._commit, taken, self._prefix())
                self._inflight = (taken, commit)

    def flush(self, *, older_than_s: float = 0.0) -> int:
        """Commit buffered rows (those buffered at least ``older_than_s`` ago, or all once no
        batch came for ``idle_flush_seconds``); returns the rows committed.

        Raises:
            StoreFaultError: Delta failed; the rows stay buffered.
        """
        self._wait()
        if time.monotonic() - self._last_batch >= self._idle_flush_seconds:
            older_than_s = 0.0
        committed = 0
        for buffer in self._buffers.values():
            if buffer.positions and buffer.age_s() >= older_than_s:
                committed += buffer.rows
                self._commit(buffer)
        return committed

    def forget(self, *, drop_buffers: bool = False) -> None:
        """Forget cached positions (read again from Delta), and buffered rows with them if
        asked: their gap is re-read from Kafka by the catch-up."""
        try:
            self._wait()  # positions are read again from Delta: after the last commit
        except StoreFaultError:
            pass  # its rows are back in their buffer; they are committed or dropped below
        if drop_buffers:
            self._buffers.clear()
        self._positions.clear()

    def _wait(self) -> None:
        """Wait for the commit in flight, if any.

        Raises:
            StoreFaultError: it failed; its rows are back in front of their buffer.
        """
        if self._inflight is None:
            return
        taken, future = self._inflight
        self._inflight = None
        try:
            future.result()
        except BaseException:
            name = taken.plan.feature_set.qualified_name
            self._buffers.setdefault(name, _Buffer(taken.plan)).put_back(taken)
            raise

    def _prefix(self) -> str:
        epoch = self._epoch()
        return self._writer_id if epoch is None else positions_prefix(self._writer_id, epoch)

    def _commit(self, buffer: _Buffer, prefix: str | None = None) -> None:
        # Committed even when no row passed the filter: the app transaction is the version's
        # position, and an empty commit still moves it.
        fs = buffer.plan.feature_set
        table = (
            pa.concat_tables(buffer.tables)
            if buffer.tables
            else self._histories[fs.qualified_name].empty_table()
        )
        with store_faults("delta", f"appending to the history of {fs.qualified_name}"):
            self._offline.append(fs, table, prefix or self._prefix(), buffer.positions)
        buffer.take()


class _Buffer:
    """Rows of one version waiting for their Delta commit, with the positions they reach.

    Delta commits are costly (each is a file and a log entry, and readers replay the log), so
    rows are committed in larger batches than Redis writes: bounded by rows and seconds.
    """

    def __init__(self, plan: FeatureSetPlan) -> None:
        self.plan = plan
        self.tables: list[pa.Table] = []
        self.positions: dict[int, int] = {}
        self.rows = 0
        self.since = 0.0

    def add(self, table: pa.Table, positions: dict[int, int]) -> None:
        if not self.positions:
            self.since = time.monotonic()
        if table.num_rows:
            self.tables.append(table)
            self.rows += table.num_rows
        for p, o in positions.items():
            self.positions[p] = max(o, self.positions.get(p, -1))

    def age_s(self) -> float:
        return time.monotonic() - self.since if self.positions else 0.0

    def take(self) -> _Buffer:
        """What the buffer holds, as a buffer of its own; this one is left empty."""
        taken = _Buffer(self.plan)
        taken.tables, taken.positions, taken.rows, taken.since = (
            self.tables,
            self.positions,
            self.rows,
            self.since,
        )
        self.tables, self.positions, self.rows = [], {}, 0
        return taken

    def put_back(self, older: _Buffer) -> None:
        """Rows taken for a commit that failed, in front of those buffered since."""
        since = older.since if not self.positions else min(older.since, self.since)
        self.tables = older.tables + self.tables
        self.rows += older.rows
        for p, o in older.positions.items():
            self.positions[p] = max(o, self.positions.get(p, -1))
        self.since = since
