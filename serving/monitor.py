"""Is a feature set healthy? Freshness, lag, dead letters and the last measured consistency
and drift, each against the limits its definition sets (``monitoring:``).

- freshness: now minus the newest event time in the offline history, read from the Delta
  log's per-file statistics (no data file is opened);
- lag: messages of the source topic the workers' group has not committed;
- dead letters: per reason, and their rate per message of the source topic;
- consistency and drift: the newest values recorded by ``headwater consistency`` and
  ``headwater drift`` / ``monitor --drift-reference`` (``serving.monitor_records``).

A store that cannot be asked (Kafka down) is a problem in the summary, not a crash.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from headwater.connectors.dlq import watermarks
from headwater.connectors.errors import StoreFaultError
from headwater.connectors.kafka_groups import partition_lags
from headwater.connectors.offline_delta import DeltaOfflineStore, open_delta
from headwater.schemas.definitions import Definitions, FeatureSet, Source
from headwater.schemas.durations import format_duration
from headwater.schemas.settings import KafkaSettings, Settings
from headwater.serving.dead_letter_views import count_dead_letters
from headwater.serving.monitor_records import Measure, latest_measures

__all__ = ["Health", "all_health", "feature_set_health", "newest_event_time_ms"]


@dataclass
class Health:
    feature_set: str
    version: int
    newest_event_time_ms: int | None = None
    freshness_seconds: float | None = None
    lag: int | None = None
    lag_partitions: dict[int, int] = field(default_factory=dict)
    topic_messages: int | None = None
    dead_letters: dict[str, int] = field(default_factory=dict)
    consistency: dict[str, Any] | None = None
    drift: list[dict[str, Any]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def dead_letter_rate(self) -> float | None:
        if not self.topic_messages:
            return None
        return sum(self.dead_letters.values()) / self.topic_messages

    def body(self) -> dict[str, Any]:
        """The JSON of ``/v1/monitor/{feature_set}``."""
        return {
            "feature_set": self.feature_set,
            "version": self.version,
            "newest_event_time_ms": self.newest_event_time_ms,
            "freshness_seconds": self.freshness_seconds,
            "lag": None
            if self.lag is None
            else {
                "total": self.lag,
                "partitions": {str(p): n for p, n in sorted(self.lag_partitions.items())},
            },
            "dead_letters": dict(self.dead_letters),
            "dead_letter_rate": self.dead_letter_rate,
            "consistency": self.consistency,
            "drift": self.drift,
            "problems": list(self.problems),
        }


def newest_event_time_ms(offline: DeltaOfflineStore, fs: FeatureSet) -> int | None:
    """The newest event time in the history, from the Delta log's file statistics."""
    table = open_delta(offline.location, offline.table_uri(fs))
    if table is None:
        return None
    actions = pa.table(table.get_add_actions(flatten=True))
    if not actions.num_rows or "max.event_time_ms" not in actions.column_names:
        return None
    newest = pc.max(actions.column("max.event_time_ms")).as_py()
    return None if newest is None else int(newest)


def _topic_messages(kafka: KafkaSettings, topic: str) -> int:
    """Messages the source topic holds now (its retention's worth)."""
    return sum(high - low for low, high in watermarks(kafka, topic).values())


def feature_set_health(
    offline: DeltaOfflineStore,
    kafka: KafkaSettings,
    group_id: str,
    fs: FeatureSet,
    source: Source,
    measures: list[Measure],
    *,
    now_ms: int | None = None,
) -> Health:
    """``fs``'s health against its limits; ``measures`` are the recorded ones (all sets)."""
    now_ms = int(time.time() * 1000) if now_ms is None else now_ms
    limits = fs.monitoring
    health = Health(fs.name, fs.version)
    health.newest_event_time_ms = newest_event_time_ms(offline, fs)
    if health.newest_event_time_ms is not None:
        age_ms = max(0, now_ms - health.newest_event_time_ms)
        health.freshness_seconds = age_ms / 1000
        if limits.freshness_ms is not None and age_ms > limits.freshness_ms:
            health.problems.append(
                f"stale: newest event {format_duration(age_ms)} old, over the "
                f"{format_duration(limits.freshness_ms)} limit (monitoring.freshness)"
            )
    elif limits.freshness_ms is not None:
        health.problems.append("stale: no event in the offline history yet")
    try:
        health.lag_partitions = partition_lags(kafka, group_id, source.topic)
        health.lag = sum(health.lag_partitions.values())
        health.topic_messages = _topic_messages(kafka, source.topic)
        for count in count_dead_letters(kafka, [source]):
            health.dead_letters[count.reason] = count.letters
    except StoreFaultError as exc:
        health.problems.append(f"kafka: {exc}")
    if limits.max_lag is not None and health.lag is not None and health.lag > limits.max_lag:
        health.problems.append(
            f"lag {health.lag} over the {limits.max_lag} limit (monitoring.max_lag)"
        )
    rate = health.dead_letter_rate
    if (
        limits.max_dead_letter_rate is not None
        and rate is not None
        and rate > limits.max_dead_letter_rate
    ):
        health.problems.append(
            f"dead letters {rate:.2%} of the source's messages, over the "
            f"{limits.max_dead_letter_rate:.2%} limit (monitoring.max_dead_letter_rate)"
        )
    mine = [m for m in measures if m.feature_set == fs.name]
    mismatch = [m for m in mine if m.measure == "mismatch_rate"]
    if mismatch:
        worst = max(mismatch, key=lambda m: m.value)
        health.consistency = {
            "mismatch_rate": worst.value,
            "feature": worst.column,
            "checked_at_ms": max(m.measured_at_ms for m in mismatch),
        }
        limit = limits.max_mismatch_rate
        if limit is not None and worst.value > limit:
            health.problems.append(
                f"online/offline mismatch rate {worst.value:.4%} ({worst.column}) over the "
                f"{limit:.4%} limit (monitoring.max_mismatch_rate)"
            )
    for m in (m for m in mine if m.measure in ("psi", "js")):
        health.drift.append(
            {
                "column": m.column,
                "measure": m.measure,
                "value": m.value,
                "limit": m.limit,
                "measured_at_ms": m.measured_at_ms,
            }
        )
        if m.crossed:
            health.problems.append(
                f"drift: {m.column} {m.measure.upper()} {m.value:.3f} over the {m.limit} limit "
                f"(monitoring.drift.{m.measure})"
            )
    return health


def all_health(
    defs: Definitions,
    offline: DeltaOfflineStore,
    settings: Settings,
    names: list[str] | None = None,
) -> list[Health]:
    """The health of the feature sets called ``names`` (default: every active one)."""
    chosen = [defs.feature_set(n) for n in names] if names else list(defs.feature_sets)
    measures = latest_measures(offline.location)
    group = settings.worker.group_id
    return [
        feature_set_health(offline, settings.kafka, group, fs, defs.source(fs.source), measures)
        for fs in chosen
    ]
