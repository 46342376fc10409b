"""Recorded measures: the newest run of each (feature set, measure) replaces the previous
run, columns included; old ones age out."""

from __future__ import annotations

import time
from pathlib import Path

from headwater.schemas.offline_location import OfflineLocation
from headwater.serving.monitor_records import Measure, latest_measures, record_measures


def test_the_newest_run_replaces_the_previous_one(tmp_path: Path) -> None:
    location = OfflineLocation.of(tmp_path)
    assert latest_measures(location) == []
    now = int(time.time() * 1000)
    record_measures(
        location,
        [
            Measure("s", "psi", "amount", 0.5, 0.2, now - 5_000),
            Measure("s", "psi", "event_time", 8.0, 0.2, now - 5_000),
            Measure("s", "mismatch_rate", "spend", 0.01, None, now - 5_000),
            Measure("old", "psi", "x", 1.0, 0.2, now - 10 * 86_400_000),
        ],
    )
    record_measures(location, [Measure("s", "psi", "amount", 0.05, 0.2, now)])
    latest = latest_measures(location, max_age_ms=86_400_000)
    assert [(m.feature_set, m.measure, m.column, m.value) for m in latest] == [
        ("s", "mismatch_rate", "spend", 0.01),
        ("s", "psi", "amount", 0.05),
    ]
    assert not latest[1].crossed and Measure("s", "psi", "a", 0.3, 0.2, now).crossed
    assert len(latest_measures(location)) == 3  # without an age limit, "old" stays
