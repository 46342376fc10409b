"""The second aggregation group end to end: a real worker folds Kafka events into Redis and
Delta, and the values read over HTTP, through the SDK and in a training set all equal the
brute-force definition (percentiles against ddsketch's own sketch of the same events)."""

from __future__ import annotations

import time
from datetime import datetime
from pathlib import Path

import httpx
import pyarrow as pa
import pytest

from headwater import FeatureStore
from headwater.apply import apply_definitions
from headwater.sample_data import generate_transactions
from tests.integration.pipeline import Deployment
from tests.reference import brute_force
from tests.reference import example_events_by_user as _events_by_user

pytestmark = pytest.mark.integration

FEATURES = """\
feature_sets:
  - name: user_shape_{suffix}
    entity: user_{suffix}
    source: transactions_{suffix}
    resolution: 1m
    filter: "status == 'approved'"
    transforms:
      amount_cents: "to_long(round(amount * 100))"
      is_large: "if(amount >= 100, 1, 0)"
    features:
      - {{name: p_amount_1d, function: approx_percentile, field: amount, window: 1d, percentiles: [0.5, 0.9, 0.99]}}
      - {{name: p_amount_7d, function: approx_percentile, field: amount, window: 7d, percentiles: [0.5], accuracy: 0.02}}
      - {{name: merchants_7d, function: approx_count_distinct, field: merchant_id, window: 7d}}
      - {{name: top_merchants_1d, function: top_k, field: merchant_id, k: 3, window: 1d}}
      - {{name: currency_mix_7d, function: histogram, field: currency, max_keys: 2, window: 7d}}
      - {{name: var_amount_1d, function: variance, field: amount, window: 1d}}
      - {{name: skew_amount_7d, function: skew, field: amount, window: 7d}}
      - {{name: kurt_cents_7d, function: kurtosis, field: amount_cents, window: 7d}}
      - {{name: first_merchants_1d, function: first_n, field: merchant_id, n: 2, window: 1d}}
      - {{name: recent_merchants, function: last_distinct_n, field: merchant_id, n: 3}}
      - {{name: large_count_1d, function: count_if, where: "amount >= 100", window: 1d}}
      - {{name: large_spend_1d, function: sum_if, field: amount, where: "is_large == 1", window: 1d}}
      - {{name: spend_yesterday, function: sum, field: amount, window: 1d, offset: 1d}}
      - {{name: spend_1d, function: sum, field: amount, window: 1d}}
"""


def test_new_aggregations_online_sdk_and_training_set(
    deployment: Deployment, tmp_path: Path
) -> None:
    (deployment.defs_dir / "shape.yaml").write_text(
        FEATURES.format(suffix=deployment.suffix).replace(
            f"entity: user_{deployment.suffix}", "entity: user"
        )
    )
    apply_definitions(deployment.settings, deployment.defs_dir)
    now = time.time_ns() // 1_000_000
    data = generate_transactions(
        end_ms=now // 60_000 * 60_000, users=10, days=3, events_per_user_day=30, seed=18
    )
    worker = deployment.start_worker()
    deployment.ingest(data, worker)
    url = deployment.start_api()

    events = _events_by_user(data)
    users = sorted(events) + ["ghost"]
    defs = deployment.definitions()
    fs = defs.feature_set(f"user_shape_{deployment.suffix}")
    types = deployment.history_types()
    refs = [f"{fs.name}:{f.name}" for f in fs.features]
    # The filter and transforms match the example set's: the same events reach both.
    assert dict(fs.transforms) == dict(defs.feature_set(deployment.feature_set).transforms)

    answer = httpx.post(
        f"{url}/v1/online-features",
        json={"features": refs, "entities": {"user_id": users}},
        timeout=30,
    )
    assert answer.status_code == 200, answer.text
    body = answer.json()
    served = datetime.fromisoformat(body["served_at"])
    served_ms = int(served.timestamp() * 1000)
    assert [r["entity"]["user_id"] for r in body["results"]] == users
    for user, result in zip(users, body["results"], strict=True):
        want, _ = brute_force(fs, types, events.get(user, []), served_ms)
        assert result["values"] == want, user
    with FeatureStore(deployment.settings) as store:
        online = store.get_online_features({"user_id": users}, refs)
        for user, values in zip(users, online.values, strict=True):
            want, _ = brute_force(fs, types, events.get(user, []), online.served_at_ms)
            assert values == want, user
        some = online.values[0]
        assert len(some[0]) == 3 and some[0][0] <= some[0][1] <= some[0][2]
        assert some[3] and set(some[3][0]) == {"value", "count"}

        label_times = [now - (i * 5_400_000) % (3 * 86_400_000) for i in range(len(users) * 4)]
        label_users = [users[i % len(users)] for i in range(len(label_times))]
        labels = pa.table(
            {"user_id": label_users, "event_timestamp": pa.array(label_times, pa.int64())}
        )
        table = store.get_historical_features(labels, refs)
        for i, row in enumerate(table.to_pylist()):
            want, _ = brute_force(fs, types, events.get(label_users[i], []), label_times[i])
            assert [row[f.name] for f in fs.features] == want, (label_users[i], label_times[i])
