"""One micro-batch of a source's messages into both stores, exactly once.

Kept free of faust so it can be tested directly. For each batch:
  1. decode and validate every message; bad ones go to ``dlq.<source>`` with the reason,
  2. append the good ones to each feature set's Delta history (skipping offsets an earlier
     run already committed, per the table's app transactions),
  3. merge them into each entity's online state in Redis (skipping offsets at or below the
     entity's stored offset),
and only then does the caller acknowledge the messages to Kafka. A crash anywhere replays the
batch, and both skips make the replay change nothing that was already written.
"""

from __future__ import annotations

import logging
import math
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa

from connectors.base import BaseOfflineStore, BaseOnlineStore, EntityKey
from connectors.kafka import EventProducer
from connectors.offline_delta import history_schema
from schemas.avro import AvroSchema, decode_wire, event_time_ms, split_wire
from schemas.catalog import Catalog, CatalogError
from schemas.definitions import Entity, FeatureSet, Source
from schemas.errors import EventError
from schemas.tiles import EntityState, FeatureSetPlan

__all__ = ["BatchProcessor", "BatchResult", "RawMessage"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class RawMessage:
    """A Kafka message as the worker received it."""

    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    timestamp_ms: int


@dataclass
class BatchResult:
    accepted: int = 0
    dead_lettered: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class _Event:
    record: dict[str, Any]
    e: int
    message: RawMessage


class BatchProcessor:
    """Processes batches of one source for all of its feature sets.

    Args:
        writer_id: names this deployment's Delta app transactions (the consumer group), so
            restarts of the same group recognise their own commits.
        clock_ms: the writer's clock; events dated after it wait as ``pending`` online.
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
        dlq: EventProducer,
        writer_id: str,
        max_future_skew_ms: int,
        clock_ms: Callable[[], int] = lambda: time.time_ns() // 1_000_000,
    ) -> None:
        self.source = source
        self.plans = [FeatureSetPlan(fs, source) for fs in feature_sets]
        by_name = {e.name: e for e in entities}
        self._keys = {fs.name: by_name[fs.entity].keys for fs in feature_sets}
        self._catalog = catalog
        self._online = online
        self._offline = offline
        self._dlq = dlq
        self._writer_id = writer_id
        self._skew = max_future_skew_ms
        self._clock = clock_ms
        self._writers: dict[int, AvroSchema] = {}
        self._history_schema = history_schema(source.schema)
        self._numeric = [
            f for f, t in source.schema.field_types.items() if t in ("float", "double")
        ]
        self._committed: dict[str, dict[int, int]] = {}

    def forget_offsets(self) -> None:
        """Drop cached Delta offsets; call when partitions are reassigned."""
        self._committed.clear()

    def _writer_schema(self, payload: bytes) -> AvroSchema:
        schema_id, _ = split_wire(payload)
        schema = self._writers.get(schema_id)
        if schema is None:
            try:
                schema = self._catalog.schema_by_id(schema_id)
            except CatalogError as exc:
                raise EventError(str(exc), reason="unknown_schema") from exc
            self._writers[schema_id] = schema
        return schema

    def _validate(self, msg: RawMessage) -> _Event:
        if msg.value is None:
            raise EventError("message has no value (tombstone)", reason="undecodable")
        record = decode_wire(msg.value, self._writer_schema(msg.value), self.source.schema)
        ts_field = self.source.timestamp
        e = event_time_ms(record.get(ts_field), ts_field)
        if e - msg.timestamp_ms > self._skew:
            text = (
                f"field {ts_field!r}: event time {e} is {e - msg.timestamp_ms} ms after its "
                f"arrival {msg.timestamp_ms}; at most {self._skew} ms is accepted"
            )
            raise EventError(text, field=ts_field, reason="future")
        for name in self._numeric:
            value = record.get(name)
            if value is not None and not math.isfinite(value):
                raise EventError(f"field {name!r}: {value} is not a finite number", field=name, reason="non_finite")
        for keys in self._keys.values():
            for key in keys:
                if record.get(key) is None:
                    raise EventError(f"entity key field {key!r} is missing", field=key, reason="missing_key")
        return _Event(record, e, msg)

    def _dead_letter(self, msg: RawMessage, exc: EventError, result: BatchResult) -> None:
        headers = {
            "hw.reason": exc.reason.encode(),
            "hw.error": str(exc).encode()[:4000],
            "hw.error_class": type(exc).__name__.encode(),
            "hw.field": (exc.field or "").encode(),
            "hw.source_topic": self.source.topic.encode(),
            "hw.partition": str(msg.partition).encode(),
            "hw.offset": str(msg.offset).encode(),
        }
        self._dlq.produce(self.source.dlq_topic, msg.value or b"", msg.key, headers, msg.timestamp_ms)
        result.dead_lettered[exc.reason] = result.dead_lettered.get(exc.reason, 0) + 1

    def process(self, messages: Sequence[RawMessage]) -> BatchResult:
        """Write one batch to the DLQ, Delta and Redis; returns what happened to it."""
        result = BatchResult()
        events: list[_Event] = []
        for msg in messages:
            try:
                events.append(self._validate(msg))
            except EventError as exc:
                self._dead_letter(msg, exc, result)
        if result.dead_lettered:
            self._dlq.flush()
            log.warning("%s: dead-lettered %s", self.source.name, result.dead_lettered)
        result.accepted = len(events)
        if events:
            for plan in self.plans:
                self._append_offline(plan.feature_set, events)
                self._update_online(plan, events)
        return result

    def _append_offline(self, fs: FeatureSet, events: Sequence[_Event]) -> None:
        committed = self._committed.get(fs.name)
        partitions = {ev.message.partition for ev in events}
        if committed is None or not partitions <= committed.keys():
            committed = self._offline.committed_offsets(fs, self._writer_id, partitions)
            self._committed[fs.name] = committed
        fresh = [ev for ev in events if ev.message.offset > committed.get(ev.message.partition, -1)]
        if not fresh:
            return
        rows = []
        offsets: dict[int, int] = {}
        for ev in fresh:
            m = ev.message
            row = dict(ev.record)
            row["event_time_ms"] = ev.e
            row["_event_date"] = datetime.fromtimestamp(ev.e / 1000, UTC).strftime("%Y-%m-%d")
            row["_partition"] = m.partition
            row["_offset"] = m.offset
            row["_arrival_ms"] = m.timestamp_ms
            rows.append(row)
            offsets[m.partition] = max(offsets.get(m.partition, -1), m.offset)
        self._offline.append(fs, pa.Table.from_pylist(rows, schema=self._history_schema), self._writer_id, offsets)
        committed.update(offsets)

    def _update_online(self, plan: FeatureSetPlan, events: Sequence[_Event]) -> None:
        fs = plan.feature_set
        keys = self._keys[fs.name]
        grouped: dict[EntityKey, list[tuple[dict[str, Any], int, int]]] = defaultdict(list)
        for ev in events:
            key = tuple(str(ev.record[k]) for k in keys)
            grouped[key].append((ev.record, ev.e, ev.message.offset))
        entity_keys = list(grouped)
        before = dict(zip(entity_keys, self._online.read(fs, entity_keys), strict=True))
        now = self._clock()
        after: dict[EntityKey, EntityState] = {}
        for key, rows in grouped.items():
            old = before[key]
            state = EntityState() if old is None else _copy(old)
            if plan.apply(state, rows, now):
                after[key] = state
        self._online.write(fs, after, before)


def _copy(state: EntityState) -> EntityState:
    """A copy safe to mutate: ``apply`` replaces tile dicts' values, never shared lists."""
    return EntityState(
        tiles={k: dict(v) for k, v in state.tiles.items()},
        lifetime=dict(state.lifetime),
        newest=state.newest,
        pending=list(state.pending),
        offset=state.offset,
    )
