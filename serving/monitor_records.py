"""The last measured consistency and drift, kept beside the offline tables.

``headwater consistency`` and ``headwater drift`` (and the monitor) take seconds to minutes;
their results are appended to a Delta table ``<offline>/_monitoring/measures`` so that the
monitor's summary, the console and the API's ``/metrics`` show the latest values without
measuring again. One row per measured column: which feature set, which measure
(``mismatch_rate``, ``psi``, ``js``), the column, the value, when, and the limit it had.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc
from deltalake import write_deltalake

from headwater.connectors.offline_delta import open_delta, read_delta
from headwater.schemas.offline_location import OfflineLocation

__all__ = ["MEASURES_SCHEMA", "Measure", "latest_measures", "record_measures"]

MEASURES_SCHEMA = pa.schema(
    [
        pa.field("feature_set", pa.string(), nullable=False),
        pa.field("measure", pa.string(), nullable=False),
        pa.field("column", pa.string(), nullable=False),
        pa.field("value", pa.float64(), nullable=False),
        pa.field("limit", pa.float64()),
        pa.field("measured_at_ms", pa.int64(), nullable=False),
    ]
)


@dataclass(frozen=True)
class Measure:
    feature_set: str
    """The feature set's name (all versions)."""
    measure: str
    column: str
    value: float
    limit: float | None
    measured_at_ms: int

    @property
    def crossed(self) -> bool:
        return self.limit is not None and self.value > self.limit


def _uri(location: OfflineLocation) -> str:
    return location.uri("_monitoring", "measures")


def record_measures(location: OfflineLocation, measures: Iterable[Measure]) -> int:
    """Append ``measures``; returns how many."""
    rows = [m.__dict__ for m in measures]
    if rows:
        table = pa.Table.from_pylist(rows, schema=MEASURES_SCHEMA)
        write_deltalake(_uri(location), table, mode="append", storage_options=location.options())
    return len(rows)


def latest_measures(location: OfflineLocation, *, max_age_ms: int | None = None) -> list[Measure]:
    """The values of the newest run of each (feature set, measure); those older than
    ``max_age_ms`` are left out (a feature set no longer measured stops being reported)."""
    table = open_delta(location, _uri(location))
    if table is None:
        return []
    rows = read_delta(table)
    if max_age_ms is not None:
        since = int(time.time() * 1000) - max_age_ms
        rows = rows.filter(pc.greater_equal(rows.column("measured_at_ms"), since))
    measures = [Measure(**row) for row in rows.to_pylist()]
    # One run measures every column at once: its values replace the previous run's, and a
    # column it left out (no longer compared) is no longer reported.
    last_run: dict[tuple[str, str], int] = {}
    for m in measures:
        key = (m.feature_set, m.measure)
        last_run[key] = max(last_run.get(key, m.measured_at_ms), m.measured_at_ms)
    newest = {
        (m.feature_set, m.measure, m.column): m
        for m in measures
        if m.measured_at_ms == last_run[(m.feature_set, m.measure)]
    }
    return sorted(newest.values(), key=lambda m: (m.feature_set, m.measure, m.column))
