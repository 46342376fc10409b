"""A sample of served online responses, logged to Delta for ``headwater consistency``.

Each logged row is one entity of one response: the time it was served for, the features as
``set@vN:feature`` (so the check recomputes exactly those versions), the entity keys, and
the values and statuses served. Rows are buffered and committed by a background thread, so
a lookup never waits for Delta; at most ``flush_seconds`` of log is lost on a crash.
"""

from __future__ import annotations

import json
import logging
import random
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
from deltalake import write_deltalake

from headwater.connectors.offline_delta import open_delta, read_delta
from headwater.schemas.offline_location import OfflineLocation

__all__ = ["LOG_SCHEMA", "ResponseLog", "read_response_log", "response_log_uri"]

log = logging.getLogger(__name__)

LOG_SCHEMA = pa.schema(
    [
        pa.field("served_at_ms", pa.int64(), nullable=False),
        pa.field("features", pa.string(), nullable=False),
        pa.field("entity", pa.string(), nullable=False),
        pa.field("values", pa.string(), nullable=False),
        pa.field("statuses", pa.string(), nullable=False),
        pa.field("_served_date", pa.string(), nullable=False),
    ]
)


def response_log_uri(where: OfflineLocation | Path) -> str:
    return OfflineLocation.of(where).uri("_served_responses")


class ResponseLog:
    """Samples responses (``sample_rate`` of them) and commits them every ``flush_seconds``."""

    def __init__(
        self, where: OfflineLocation | Path, *, sample_rate: float, flush_seconds: float
    ) -> None:
        self._location = OfflineLocation.of(where)
        self.uri = response_log_uri(self._location)
        self._rate = sample_rate
        self._rows: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._run, args=(flush_seconds,), name="response-log", daemon=True
        )
        self._thread.start()

    def record(
        self,
        served_at_ms: int,
        pinned_refs: tuple[str, ...],
        entities: list[dict[str, Any]],
        values: list[list[Any]],
        statuses: list[list[str]],
    ) -> bool:
        """Log one response if it is sampled; returns whether it was."""
        if self._rate <= 0 or random.random() >= self._rate:
            return False
        features = json.dumps(list(pinned_refs))
        day = datetime.fromtimestamp(served_at_ms / 1000, UTC).strftime("%Y-%m-%d")
        rows = [
            {
                "served_at_ms": served_at_ms,
                "features": features,
                "entity": json.dumps(entity, sort_keys=True),
                "values": json.dumps(row_values),
                "statuses": json.dumps(row_statuses),
                "_served_date": day,
            }
            for entity, row_values, row_statuses in zip(entities, values, statuses, strict=True)
        ]
        with self._lock:
            self._rows.extend(rows)
        return True

    def flush(self) -> int:
        """Commit what is buffered; returns the number of rows written."""
        with self._lock:
            rows, self._rows = self._rows, []
        if not rows:
            return 0
        write_deltalake(
            self.uri,
            pa.Table.from_pylist(rows, schema=LOG_SCHEMA),
            mode="append",
            partition_by=["_served_date"],
            storage_options=self._location.options(),
        )
        return len(rows)

    def _run(self, flush_seconds: float) -> None:
        while not self._stop.wait(flush_seconds):
            try:
                self.flush()
            except Exception:  # a logging failure must not take serving down; say so loudly
                log.exception("could not write the response log to %s", self.uri)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        self.flush()


def read_response_log(where: OfflineLocation | Path, *, since_ms: int | None = None) -> pa.Table:
    """The logged rows (served at or after ``since_ms``); empty when nothing was logged."""
    location = OfflineLocation.of(where)
    table = open_delta(location, response_log_uri(location))
    if table is None:
        return LOG_SCHEMA.empty_table()
    rows = read_delta(table)
    if since_ms is not None:
        rows = rows.filter(pa.compute.greater_equal(rows.column("served_at_ms"), since_ms))
    return rows
