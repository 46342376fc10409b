"""Prometheus metrics of the stream workers, served on ``worker.metrics_port``.

Names follow Prometheus conventions (``_total`` counters, base units in seconds).
"""

from __future__ import annotations

import logging

from prometheus_client import Counter, Gauge, Histogram, start_http_server

__all__ = [
    "BATCH_SECONDS",
    "CONSUMER_LAG",
    "DEAD_LETTERED",
    "EVENTS_APPLIED",
    "EVENTS_ERASED",
    "EVENTS_IN",
    "NEWEST_EVENT_TIME",
    "PARTITION_NEWEST_EVENT_TIME",
    "PROCESSING_ERRORS",
    "SOURCE_PAUSED",
    "STORE_FAULTS",
    "STORE_UP",
    "TOPIC_EPOCHS",
    "serve_metrics",
]

log = logging.getLogger(__name__)

EVENTS_IN = Counter(
    "headwater_events_in_total", "Messages consumed from a source topic", ["source"]
)
DEAD_LETTERED = Counter(
    "headwater_events_dead_lettered_total",
    "Messages sent to the dead-letter topic",
    ["source", "reason"],
)
EVENTS_APPLIED = Counter(
    "headwater_events_applied_total",
    "Events that passed a feature-set version's filter and reached both stores",
    ["feature_set"],
)
EVENTS_ERASED = Counter(
    "headwater_events_erased_skipped_total",
    "Messages skipped because their entity was erased before they were produced (replays "
    "of the raw topic); neither stored nor dead-lettered",
    ["source"],
)
BATCH_SECONDS = Histogram(
    "headwater_batch_seconds",
    "Time to write one micro-batch to Delta and Redis",
    ["source"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
CONSUMER_LAG = Gauge(
    "headwater_consumer_lag",
    "Messages of a source topic not yet committed by the workers",
    ["source"],
)
NEWEST_EVENT_TIME = Gauge(
    "headwater_newest_event_time_seconds",
    "Newest event time applied, per feature-set version",
    ["feature_set"],
)
PARTITION_NEWEST_EVENT_TIME = Gauge(
    "headwater_partition_newest_event_time_seconds",
    "Newest event time applied, per partition of a source topic",
    ["source", "partition"],
)

PROCESSING_ERRORS = Counter(
    "headwater_processing_errors_total",
    "Events that failed in a way nobody foresaw (isolated, then dead-lettered or stopped on)",
    ["source"],
)
STORE_FAULTS = Counter(
    "headwater_store_faults_total",
    "Batches that failed because a store (redis, delta, kafka, catalog) failed; retried",
    ["store"],
)
STORE_UP = Gauge(
    "headwater_store_up",
    "Whether the worker's last use of a store succeeded (0 while it retries a fault)",
    ["store"],
)
SOURCE_PAUSED = Gauge(
    "headwater_source_paused",
    "1 while a source's agent has stopped on purpose (processing error set to stop, or a "
    "truncated topic); see the worker's CRITICAL log line for the fix",
    ["source"],
)
TOPIC_EPOCHS = Counter(
    "headwater_topic_epochs_total",
    "Times a source topic was found recreated (a new topic id) and started a new epoch",
    ["source"],
)


def serve_metrics(port: int) -> bool:
    """Start the metrics endpoint; ``port`` 0 disables it. A busy port is logged, not fatal:
    a second worker on the same host must still process events."""
    if port == 0:
        return False
    try:
        start_http_server(port, addr="0.0.0.0")
    except OSError as exc:
        log.warning(
            "metrics endpoint not started on port %d: %s; set HEADWATER_WORKER__METRICS_PORT",
            port,
            exc,
        )
        return False
    return True
