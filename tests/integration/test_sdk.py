"""The Python SDK over a real deployment: online lookups and point-in-time retrieval from
pandas and polars frames, rows in the caller's order, none dropped."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd  # type: ignore[import-untyped]
import polars as pl
import pyarrow.parquet as pq
import pytest

from headwater import FeatureStore
from headwater.ingest import ingest_files
from headwater.sample_data import generate_transactions
from headwater.serving.errors import BadRequestError
from tests.integration.pipeline import Deployment
from tests.reference import brute_force
from tests.reference import example_events_by_user as _events_by_user

pytestmark = pytest.mark.integration


def test_sdk_online_and_historical(deployment: Deployment, tmp_path: Path) -> None:
    now = time.time_ns() // 1_000_000
    data = generate_transactions(
        end_ms=now // 60_000 * 60_000, users=12, days=2, events_per_user_day=15, seed=21
    )
    half = data.num_rows // 2
    pq.write_table(data.slice(half), tmp_path / "d.parquet")
    worker = deployment.start_worker()
    with FeatureStore(deployment.settings) as store:
        # Direct ingestion from a notebook, through the same topic: pandas, then polars.
        assert store.ingest(data.slice(0, 100).to_pandas(), source=deployment.source) == 100
        assert (
            store.ingest(pl.from_arrow(data.slice(100, half - 100)), source=deployment.source)
            == half - 100
        )
    ingest_files(
        deployment.settings, deployment.source, [tmp_path / "d.parquet"], show_progress=False
    )
    deployment.wait_caught_up(worker)

    events = _events_by_user(data)
    with FeatureStore(deployment.settings) as store:
        defs = store.catalog.definitions()
        fs = defs.feature_set(deployment.feature_set)
        types = deployment.history_types()
        refs = [f"{fs.name}:{f.name}" for f in fs.features]
        users = sorted(events) + ["ghost"]

        online = store.get_online_features({"user_id": users}, refs)
        for user, values, statuses in zip(users, online.values, online.statuses, strict=True):
            want, status = brute_force(fs, types, events.get(user, []), online.served_at_ms)
            assert values == want, user
            assert {s.value for s in statuses} == {status}

        label_times = [now - (i * 3_600_000) % (2 * 86_400_000) for i in range(len(users) * 3)]
        label_users = [users[i % len(users)] for i in range(len(label_times))]
        frame = pd.DataFrame(
            {
                "user_id": label_users,
                "event_timestamp": [datetime.fromtimestamp(t / 1000, UTC) for t in label_times],
                "label": range(len(label_times)),
            }
        )
        from_pandas = store.get_historical_features(frame, refs, output="pandas")
        assert list(from_pandas["label"]) == list(
            range(len(label_times))
        )  # order kept, none dropped
        for i, row in from_pandas.iterrows():
            want, _ = brute_force(fs, types, events.get(label_users[i], []), label_times[i])
            got = [None if pd.isna(row[f.name]) else row[f.name] for f in fs.features]
            assert got == want, (label_users[i], label_times[i])

        polars_frame = pl.DataFrame({"user_id": label_users, "ts": label_times})
        from_polars = store.get_historical_features(
            polars_frame, feature_service="fraud_model", timestamp_column="ts", output="polars"
        )
        assert from_polars.height == len(label_times)
        assert from_polars["user_id"].to_list() == label_users
        assert from_polars.columns == [
            "user_id",
            "ts",
            "spend_1h",
            "txn_count_1d",
            "avg_amount_7d",
            "last_merchant",
        ]


def test_feature_history_and_snapshot_without_an_entity_frame(
    deployment: Deployment, tmp_path: Path
) -> None:
    now = time.time_ns() // 1_000_000
    data = generate_transactions(
        end_ms=now // 60_000 * 60_000, users=5, days=1, events_per_user_day=10, seed=31
    )
    worker = deployment.start_worker()
    deployment.ingest(data, worker)
    events = _events_by_user(data)
    with FeatureStore(deployment.settings) as store:
        defs = store.catalog.definitions()
        fs = defs.feature_set(deployment.feature_set)
        types = deployment.history_types()
        refs = [f"{fs.name}:{f.name}" for f in fs.features]
        start, end = now - 12 * 3_600_000, now - 3_600_000

        history = store.get_historical_features(
            features=refs, start=datetime.fromtimestamp(start / 1000, UTC), end=end
        )
        expected = sorted(
            (e, user) for user, evs in events.items() for _, e, _ in evs if start <= e < end
        )
        assert (
            list(
                zip(
                    history.column("event_timestamp").to_pylist(),
                    history.column("user_id").to_pylist(),
                    strict=True,
                )
            )
            == expected
        )
        for row in history.to_pylist():
            want, _ = brute_force(fs, types, events[row["user_id"]], row["event_timestamp"])
            assert [row[f.name] for f in fs.features] == want

        at = now - 6 * 3_600_000
        snapshot = store.get_historical_features(features=refs, at=at)
        seen = sorted(user for user, evs in events.items() if any(e <= at for _, e, _ in evs))
        assert snapshot.column("user_id").to_pylist() == seen
        for row in snapshot.to_pylist():
            want, _ = brute_force(fs, types, events[row["user_id"]], at)
            assert [row[f.name] for f in fs.features] == want

        with pytest.raises(BadRequestError, match="start=/end="):
            store.get_historical_features(features=refs)
