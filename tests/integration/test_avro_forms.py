"""Sources in every Avro form a real producer writes (DESIGN §8), end to end.

Events go in through confluent-kafka's ``AvroSerializer`` against ``/registry`` (what Kafka
Connect, Debezium and Confluent producers do), through a real worker into Redis and Delta;
online values (SDK), point-in-time values (SDK) and ``tests.reference.brute_force`` over
hand-normalised rows must all agree.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa
import pytest

from headwater import FeatureStore
from tests.integration.avro_forms import FormsSource
from tests.integration.pipeline import Deployment
from tests.reference import brute_force

pytestmark = pytest.mark.integration

MINUTE = 60_000


def _check_online_offline(
    forms: FormsSource,
    events: Mapping[str, Sequence[tuple[Mapping[str, Any], int, int]]],
    field_types: Mapping[str, str],
    label_times: Sequence[int],
) -> None:
    """Online (now) and point-in-time (at ``label_times``) both equal the brute force."""
    fs = forms.feature_set()
    refs = forms.refs()
    accounts = [*sorted(events), "ghost"]
    with FeatureStore(forms.deployment.settings) as store:
        online = store.get_online_features({"account_id": accounts}, refs)
        for account, values, statuses in zip(accounts, online.values, online.statuses, strict=True):
            want, status = brute_force(fs, field_types, events.get(account, []), online.served_at_ms)
            assert values == want, account
            assert {s.value for s in statuses} == {status}, account
        labels = pa.table(
            {
                "account_id": [a for a in accounts for _ in label_times],
                "event_timestamp": pa.array(
                    [t for _ in accounts for t in label_times], pa.int64()
                ),
            }
        )
        offline = store.get_historical_features(labels, refs)
        names = [f.name for f in fs.features]
        for row in offline.to_pylist():
            want, _ = brute_force(fs, field_types, events.get(row["account_id"], []), row["event_timestamp"])
            assert [row[n] for n in names] == want, (row["account_id"], row["event_timestamp"])


def test_timestamp_millis_event_time_from_a_confluent_producer(
    deployment: Deployment, forms_source: Callable[..., FormsSource]
) -> None:
    """Issue 12 item 1: the Connect/Debezium form of an event time must not crash the worker."""
    schema = {
        "type": "record",
        "name": "Payment",
        "namespace": "com.example.connect",
        "fields": [
            {"name": "account_id", "type": "string"},
            {"name": "amount", "type": "double"},
            {"name": "event_time", "type": {"type": "long", "logicalType": "timestamp-millis"}},
        ],
    }
    forms = forms_source(
        schema,
        [
            {"name": "n_1h", "function": "count", "window": "1h"},
            {"name": "spend_1h", "function": "sum", "field": "amount", "window": "1h"},
            {"name": "last_amount", "function": "last", "field": "amount"},
        ],
    )
    now = time.time_ns() // 1_000_000
    base = now // MINUTE * MINUTE - 50 * MINUTE
    times = [base + i * 7 * MINUTE + 123 for i in range(8)]
    # The serializer takes the datetimes a Connect producer holds, as fastavro does.
    records = [
        {
            "account_id": f"a{i % 3}",
            "amount": 1.25 * (i + 1),
            "event_time": datetime.fromtimestamp(t / 1000, UTC),
        }
        for i, t in enumerate(times)
    ]
    url = deployment.start_api()
    forms.produce(f"{url}/registry", records)
    worker = deployment.start_worker()
    forms.wait(worker)

    events: dict[str, list[tuple[Mapping[str, Any], int, int]]] = {}
    for seq, (record, t) in enumerate(zip(records, times, strict=True)):
        account = str(record["account_id"])
        row = {"account_id": account, "amount": record["amount"], "event_time": t}
        events.setdefault(account, []).append((row, t, seq))
    types = {"account_id": "string", "amount": "double", "event_time": "timestamp"}
    _check_online_offline(forms, events, types, [base, times[3], times[-1], now])
    # The history holds event times as epoch milliseconds, like event_time_ms.
    with FeatureStore(deployment.settings) as store:
        history = store.offline.history(forms.feature_set())
    assert sorted(history.column("event_time").to_pylist()) == times
    assert sorted(history.column("event_time_ms").to_pylist()) == times
