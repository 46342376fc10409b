"""Statistics, drift and the health monitor on a real pipeline (Kafka, worker, Redis, Delta,
the API), checked against exact computations on the rows the history table holds.

The data: ten days of generated transactions whose amounts grow by 60 % over the last two
days (a shifted distribution) while currencies and statuses keep their mix (unchanged).
"""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime, timedelta

import httpx
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
import yaml

from headwater.connectors.offline_delta import DeltaOfflineStore, open_delta, read_delta
from headwater.sample_data import generate_transactions
from headwater.serving.monitor_records import latest_measures
from headwater.serving.stats_profile import QUANTILE_RANK_ERROR
from tests.integration.pipeline import Deployment

pytestmark = pytest.mark.integration

DAY_MS = 86_400_000


def _shifted(data: pa.Table, since_ms: int) -> pa.Table:
    """``data`` with the amounts of events at or after ``since_ms`` raised by 60 %."""
    recent = pc.greater_equal(data.column("event_time"), since_ms)
    amounts = pc.if_else(recent, pc.multiply(data.column("amount"), 1.6), data.column("amount"))
    return data.set_column(data.schema.get_field_index("amount"), "amount", amounts)


def _history(deployment: Deployment) -> pa.Table:
    fs = deployment.definitions().feature_set(deployment.feature_set)
    offline = DeltaOfflineStore(deployment.settings.offline_location)
    table = open_delta(offline.location, offline.table_uri(fs))
    assert table is not None
    return read_delta(table)


def _column(body: dict[str, object], name: str) -> dict[str, object]:
    columns = body["columns"]
    assert isinstance(columns, list)
    return next(c for c in columns if c["name"] == name)


def _add_monitoring(deployment: Deployment, limits: dict[str, object]) -> None:
    path = deployment.defs_dir / "features.yaml"
    doc = yaml.safe_load(path.read_text())
    doc["feature_sets"][0]["monitoring"] = limits
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    applied = deployment.cli("apply", str(deployment.defs_dir))
    assert applied.returncode == 0, applied.stdout + applied.stderr
    assert "update" in applied.stdout  # metadata: the same version, updated in place


def test_stats_drift_and_monitor_on_a_real_pipeline(deployment: Deployment) -> None:
    now = time.time_ns() // 1_000_000 // 60_000 * 60_000
    today = datetime.fromtimestamp(now / 1000, UTC).date()
    shift_from = (
        int(datetime(today.year, today.month, today.day, tzinfo=UTC).timestamp() * 1000) - DAY_MS
    )
    data = generate_transactions(end_ms=now, users=60, days=10, events_per_user_day=6, seed=17)
    data = _shifted(data, shift_from)
    worker = deployment.start_worker()
    deployment.ingest(data, worker)
    deployment.env["HEADWATER_SERVING__LOG_SAMPLE_RATE"] = "1"
    deployment.env["HEADWATER_SERVING__LOG_FLUSH_SECONDS"] = "0.2"
    url = deployment.start_api()
    name = deployment.feature_set

    # Statistics of the whole history equal exact numpy computations on its rows.
    history = _history(deployment)
    body = httpx.get(f"{url}/v1/stats/{name}", timeout=60).json()
    assert body["of"] == "history" and body["rows"] == history.num_rows
    amount = _column(body, "amount")
    exact = history.column("amount").to_numpy()
    assert amount["count"] == exact.size and amount["nulls"] == 0
    assert amount["mean"] == pytest.approx(exact.mean(), rel=1e-12)
    assert amount["stddev"] == pytest.approx(exact.std(), rel=1e-9)
    assert (amount["min"], amount["max"]) == (exact.min(), exact.max())
    ordered = np.sort(exact)
    for q in amount["quantiles"]:
        rank = np.searchsorted(ordered, q["value"], side="right") / ordered.size
        assert abs(rank - q["q"]) <= QUANTILE_RANK_ERROR + 1 / ordered.size, q
    currency = _column(body, "currency")
    values, counts = np.unique(
        history.column("currency").to_numpy(zero_copy_only=False), return_counts=True
    )
    assert {t["value"]: t["count"] for t in currency["top"]} == dict(
        zip(values.tolist(), counts.tolist(), strict=True)
    )
    assert sum(amount["histogram"]["counts"]) == pytest.approx(exact.size, abs=20)

    # The CLI prints the same numbers, and its rerun reads no data file again.
    printed = deployment.cli("stats", name)
    assert printed.returncode == 0, printed.stdout + printed.stderr
    assert f"history, {history.num_rows} rows" in printed.stdout
    row = next(line for line in printed.stdout.splitlines() if re.match(r"\W*amount\s", line))
    assert f"{exact.mean():.6g}" in row and f"{exact.max():.6g}" in row

    # One day only: the rows of that day.
    day = (today - timedelta(days=4)).isoformat()
    one = httpx.get(f"{url}/v1/stats/{name}", params={"start": day, "end": day}, timeout=60).json()
    assert one["rows"] == pc.sum(pc.equal(history.column("_event_date"), day)).as_py()
    bad = httpx.get(f"{url}/v1/stats/{name}", params={"start": "yesterday"}, timeout=10)
    assert bad.status_code == 422 and "write YYYY-MM-DD" in bad.json()["detail"]
    assert httpx.get(f"{url}/v1/stats/nope", timeout=10).status_code == 404

    # Drift: the last two days against the seven before them. The amounts moved, the
    # currencies did not.
    reference = ((today - timedelta(days=8)).isoformat(), (today - timedelta(days=2)).isoformat())
    params = {"reference_start": reference[0], "reference_end": reference[1]}
    drift = httpx.get(f"{url}/v1/drift/{name}", params=params, timeout=60).json()
    assert "amount" in drift["drifted"] and "currency" not in drift["drifted"]
    assert _column(drift, "amount")["psi"] > 0.2 > _column(drift, "currency")["psi"]
    calm = httpx.get(
        f"{url}/v1/drift/{name}",
        params={
            "reference_start": reference[0],
            "reference_end": (today - timedelta(days=5)).isoformat(),
            "current_start": (today - timedelta(days=4)).isoformat(),
            "current_end": reference[1],
        },
        timeout=60,
    ).json()
    assert "amount" not in calm["drifted"], _column(calm, "amount")

    # The CLI records what it measured; /metrics and the monitor show it, and the monitor
    # fails (exit 4) on the drift, naming the column and the limit.
    _add_monitoring(deployment, {"max_lag": 1_000_000, "drift": {"psi": 0.25}})
    cli = deployment.cli(
        "drift", name, "--reference-start", reference[0], "--reference-end", reference[1]
    )
    assert cli.returncode == 4, cli.stdout + cli.stderr
    assert "drifted: amount" in cli.stdout
    # What the CLI measured (its own merge of the same partials: KLL's compactions are
    # randomised, so two merges may differ within the sketch's rank error).
    (recorded,) = [
        m
        for m in latest_measures(deployment.settings.offline_location)
        if m.feature_set == name and m.measure == "psi" and m.column == "amount"
    ]
    recorded_psi = recorded.value
    assert recorded.limit == 0.25 and recorded_psi == pytest.approx(
        _column(drift, "amount")["psi"], abs=0.05
    )
    metrics = httpx.get(f"{url}/metrics", timeout=10).text
    line = next(
        l
        for l in metrics.splitlines()
        if l.startswith("headwater_feature_drift_psi{")
        and f'feature_set="{name}"' in l
        and 'column="amount"' in l
    )
    assert float(line.rsplit(" ", 1)[1]) == pytest.approx(recorded_psi, rel=1e-9)
    assert (
        f'headwater_monitor_limit{{column="amount",feature_set="{name}",measure="psi"}} 0.25'
        in metrics
    )

    health = httpx.get(f"{url}/v1/monitor/{name}", timeout=60).json()
    newest = pc.max(history.column("event_time_ms")).as_py()
    assert health["newest_event_time_ms"] == newest
    assert health["lag"]["total"] == 0 and health["dead_letters"] == {}
    assert set(health["lag"]["partitions"].values()) == {0}
    assert len(health["lag"]["partitions"]) == deployment.settings.kafka.partitions
    assert any(
        "drift: amount PSI" in p and "monitoring.drift.psi" in p for p in health["problems"]
    ), health
    monitor = deployment.cli("monitor", name)
    assert monitor.returncode == 4, monitor.stdout + monitor.stderr
    assert "drift: amount PSI" in monitor.stdout

    # Statistics of what was served: the response log's values of this feature set.
    fs = deployment.definitions().feature_set(name)
    users = sorted(set(data.column("user_id").to_pylist()))[:20]
    refs = [f"{name}:{f.name}" for f in fs.features]
    answer = httpx.post(
        f"{url}/v1/online-features",
        json={"features": refs, "entities": {"user_id": users}},
        timeout=30,
    ).json()
    deadline = time.monotonic() + 30
    served = None
    while time.monotonic() < deadline:
        served = httpx.get(f"{url}/v1/stats/{name}", params={"served": "true"}, timeout=30).json()
        if served["rows"] >= len(users):
            break
        time.sleep(0.3)
    assert served is not None and served["rows"] == len(users)
    first = fs.features[0].name
    expected = [r["values"][0] for r in answer["results"]]
    column = _column(served, first)
    present = [v for v in expected if v is not None]
    assert column["count"] == len(present)
    assert column["mean"] == pytest.approx(float(np.mean(present)), rel=1e-12)

    # Statistics of what a model saw: a saved training set's feature values.
    labels = pa.table(
        {
            "user_id": users,
            "event_timestamp": pa.array([now - DAY_MS] * len(users), pa.timestamp("ms", tz="UTC")),
        }
    )
    entities = deployment.settings.home / "labels.parquet"
    out = deployment.settings.home / "train.parquet"
    pq.write_table(labels, entities)
    saved = deployment.cli(
        "retrieve",
        "--entities",
        str(entities),
        "--features",
        ",".join(refs),
        "--out",
        str(out),
        "--save",
        "model_a",
    )
    assert saved.returncode == 0, saved.stdout + saved.stderr
    frame = pq.read_table(out)
    seen = httpx.get(
        f"{url}/v1/stats/{name}", params={"training_set": "model_a"}, timeout=60
    ).json()
    assert seen["of"] == "training_set" and seen["rows"] == len(users)
    assert sorted(c["name"] for c in seen["columns"]) == sorted(f.name for f in fs.features)
    spend = next(f.name for f in fs.features if f.function == "sum")
    exact_spend = frame.column(spend).drop_null().to_numpy()
    assert _column(seen, spend)["mean"] == pytest.approx(exact_spend.mean(), rel=1e-12)
    assert _column(seen, spend)["count"] == exact_spend.size
    unknown = httpx.get(f"{url}/v1/stats/{name}", params={"training_set": "nope"}, timeout=10)
    assert unknown.status_code == 404 and "nope" in unknown.json()["detail"]
