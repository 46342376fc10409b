"""Training sets: `headwater retrieve` and `POST /v1/historical-features` over a real
deployment; a saved training set rebuilds byte for byte after more data arrived, and
`--as-of` reads the tables as they were."""

from __future__ import annotations

import hashlib
import subprocess
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from headwater.connectors.catalog import Catalog
from headwater.connectors.offline_delta import DeltaOfflineStore
from headwater.sample_data import generate_transactions
from tests.integration.pipeline import Deployment
from tests.reference import brute_force
from tests.reference import example_events_by_user as _events_by_user

pytestmark = pytest.mark.integration


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_saved_training_set_rebuilds_byte_identical(deployment: Deployment, tmp_path: Path) -> None:
    now = time.time_ns() // 1_000_000
    data = generate_transactions(
        end_ms=now // 60_000 * 60_000, users=15, days=2, events_per_user_day=12, seed=8
    )
    first, second = data.slice(0, data.num_rows // 2), data.slice(data.num_rows // 2)
    worker = deployment.start_worker()
    deployment.ingest(first, worker)

    defs = deployment.definitions()
    fs = defs.feature_set(deployment.feature_set)
    types = deployment.history_types()
    refs = [f"{fs.name}:{f.name}" for f in fs.features]
    users = sorted({u for u in data.column("user_id").to_pylist()}) + ["ghost"]
    label_users = [users[i % len(users)] for i in range(90)]
    label_times = [now - (i * 1_234_567) % (2 * 86_400_000) for i in range(90)]
    labels = pa.table(
        {"user_id": label_users, "event_timestamp": label_times, "label": list(range(90))}
    )
    pq.write_table(labels, tmp_path / "labels.parquet")

    def retrieve(features: str, out: str, *more: str) -> subprocess.CompletedProcess[str]:
        entities = str(tmp_path / "labels.parquet")
        return deployment.cli(
            "retrieve",
            "--entities",
            entities,
            "--features",
            features,
            "--out",
            str(tmp_path / out),
            *more,
        )

    saved = retrieve(",".join(refs), "a.parquet", "--save", "fraud_train_1")
    assert saved.returncode == 0, saved.stderr
    assert "saved as 'fraud_train_1'" in saved.stdout
    a = pq.read_table(tmp_path / "a.parquet")
    assert a.column("label").to_pylist() == list(range(90))
    events = _events_by_user(first)
    for i, row in enumerate(a.to_pylist()):
        want, _ = brute_force(fs, types, events.get(label_users[i], []), label_times[i])
        assert [row[f.name] for f in fs.features] == want, i
    offline = DeltaOfflineStore(deployment.settings.offline_location)
    version_then = offline.version_at(fs)
    record = Catalog(deployment.settings.catalog_url).training_set("fraud_train_1")
    assert record.table_versions == {fs.qualified_name: version_then}
    assert record.features == tuple(f"{fs.name}@v{fs.version}:{f.name}" for f in fs.features)
    assert record.rows == 90
    time.sleep(1.1)
    between = datetime.now(UTC).isoformat()
    time.sleep(1.1)

    # More data arrives, changing features at the same label times.
    deployment.ingest(second, worker)
    assert offline.version_at(fs) > version_then
    fresh = retrieve(",".join(refs), "fresh.parquet")
    assert fresh.returncode == 0, fresh.stderr
    assert _sha(tmp_path / "fresh.parquet") != _sha(tmp_path / "a.parquet")
    everything = _events_by_user(data)
    for i, row in enumerate(pq.read_table(tmp_path / "fresh.parquet").to_pylist()):
        want, _ = brute_force(fs, types, everything.get(label_users[i], []), label_times[i])
        assert [row[f.name] for f in fs.features] == want, i

    rebuilt = deployment.cli(
        "retrieve", "--rebuild", "fraud_train_1", "--out", str(tmp_path / "b.parquet")
    )
    assert rebuilt.returncode == 0, rebuilt.stderr
    assert _sha(tmp_path / "b.parquet") == _sha(tmp_path / "a.parquet")

    # --as-of a version or a time reads the table as it was.
    for pin in ([f"{fs.name}={version_then}"], [between]):
        args = [a for p in pin for a in ("--as-of", p)]
        pinned = retrieve(",".join(refs), "pinned.parquet", *args)
        assert pinned.returncode == 0, pinned.stderr
        assert pq.read_table(tmp_path / "pinned.parquet").equals(a), pin

    # Names are never reused; bad input is one line naming the fix.
    again = retrieve(refs[0], "c.parquet", "--save", "fraud_train_1")
    assert again.returncode == 1
    assert "choose another name" in again.stderr
    bad_time = retrieve(refs[0], "c.parquet", "--as-of", "yesterday")
    assert bad_time.returncode == 1
    assert "ISO-8601" in bad_time.stderr
    unknown = deployment.cli("retrieve", "--rebuild", "nope", "--out", str(tmp_path / "c.parquet"))
    assert unknown.returncode == 1
    assert "fraud_train_1" in unknown.stderr

    # The catalog's lineage links the feature set to the training set.
    lineage = deployment.cli("catalog", "lineage", fs.name)
    assert '"fraud_train_1"' in lineage.stdout


def test_historical_features_over_http(deployment: Deployment, tmp_path: Path) -> None:
    now = time.time_ns() // 1_000_000
    data = generate_transactions(
        end_ms=now // 60_000 * 60_000, users=6, days=1, events_per_user_day=20, seed=3
    )
    worker = deployment.start_worker()
    deployment.ingest(data, worker)
    deployment.env["HEADWATER_SERVING__HISTORICAL_MAX_ROWS"] = "5"
    url = deployment.start_api()
    defs = deployment.definitions()
    fs = defs.feature_set(deployment.feature_set)
    types = deployment.history_types()
    refs = [f"{fs.name}:{f.name}" for f in fs.features]
    users = ["u00001", "u00002", "ghost", "u00001"]
    times: list[int | str] = [now, now - 3_600_000, now, "2020-01-01T00:00:00Z"]
    response = httpx.post(
        f"{url}/v1/historical-features",
        json={"features": refs, "entities": {"user_id": users, "event_timestamp": times}},
        timeout=30,
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["features"] == refs
    events = _events_by_user(data)
    epoch = [now, now - 3_600_000, now, 1_577_836_800_000]
    for i, result in enumerate(body["results"]):
        assert result["entity"] == {"user_id": users[i]}
        assert result["event_timestamp"] == times[i]
        want, _ = brute_force(fs, types, events.get(users[i], []), epoch[i])
        assert result["values"] == want, i
    too_many = httpx.post(
        f"{url}/v1/historical-features",
        json={"features": refs, "entities": {"user_id": ["a"] * 6, "event_timestamp": [now] * 6}},
        timeout=30,
    )
    assert too_many.status_code == 413
    assert "headwater retrieve" in too_many.json()["detail"]
    naive = httpx.post(
        f"{url}/v1/historical-features",
        json={
            "features": refs,
            "entities": {"user_id": ["a"], "event_timestamp": ["2026-01-01T00:00:00"]},
        },
        timeout=30,
    )
    assert naive.status_code == 422
    assert "event_timestamp[0]" in naive.json()["detail"]
    unknown = httpx.post(
        f"{url}/v1/historical-features",
        json={
            "features": [f"{fs.name}:nope"],
            "entities": {"user_id": ["a"], "event_timestamp": [now]},
        },
        timeout=30,
    )
    assert unknown.status_code == 404
