"""`headwater consistency`: sampled online responses are logged to Delta and recomputed
offline at their served_at; a quiet stream gives 0 mismatches, late events show up."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pyarrow as pa
import pytest

from headwater.sample_data import generate_transactions
from headwater.serving.response_log import read_response_log
from tests.integration.pipeline import Deployment

pytestmark = pytest.mark.integration


def test_logged_responses_match_offline_until_late_events_arrive(
    deployment: Deployment, tmp_path: Path
) -> None:
    now = time.time_ns() // 1_000_000
    data = generate_transactions(
        end_ms=now // 60_000 * 60_000, users=10, days=1, events_per_user_day=20, seed=4
    )
    worker = deployment.start_worker()
    deployment.ingest(data, worker)
    deployment.env["HEADWATER_SERVING__LOG_SAMPLE_RATE"] = "1"
    deployment.env["HEADWATER_SERVING__LOG_FLUSH_SECONDS"] = "0.2"
    url = deployment.start_api()

    fs = deployment.definitions().feature_set(deployment.feature_set)
    refs = [f"{fs.name}:{f.name}" for f in fs.features]
    users = sorted(set(data.column("user_id").to_pylist())) + ["ghost"]
    served = []
    for _ in range(4):
        response = httpx.post(
            f"{url}/v1/online-features",
            json={"features": refs, "entities": {"user_id": users}},
            timeout=30,
        )
        assert response.status_code == 200
        served.append(response.json())
        time.sleep(0.05)
    expected_rows = 4 * len(users)
    deadline = time.monotonic() + 30
    while (
        read_response_log(deployment.settings.offline_root).num_rows < expected_rows
        and time.monotonic() < deadline
    ):
        time.sleep(0.2)
    logged = read_response_log(deployment.settings.offline_root)
    assert logged.num_rows == expected_rows
    assert (
        f'"{fs.name}@v{fs.version}:{fs.features[0].name}"' in logged.column("features")[0].as_py()
    )

    quiet = deployment.cli("consistency", "--fail-above", "0")
    assert quiet.returncode == 0, quiet.stdout + quiet.stderr
    for ref in refs:
        pinned = ref.replace(":", f"@v{fs.version}:", 1)
        line = next(l for l in quiet.stdout.splitlines() if pinned in l)
        assert [c.strip() for c in line.split("│")[2:5]] == [str(expected_rows), "0", "0.0000%"], (
            line
        )

    # An approved event for u00001, dated before those responses but arriving after them.
    row = {
        **data.to_pylist()[0],
        "user_id": "u00001",
        "transaction_id": "late-1",
        "status": "approved",
        "event_time": now - 600_000,
        "amount": 12.5,
    }
    deployment.ingest(pa.Table.from_pylist([row], schema=data.schema), worker)
    late = deployment.cli("consistency", "--fail-above", "0")
    assert late.returncode == 4, late.stdout + late.stderr
    count_ref = next(r for r in refs if "count" in r).replace(":", f"@v{fs.version}:", 1)
    line = next(l for l in late.stdout.splitlines() if count_ref in l)
    assert [c.strip() for c in line.split("│")[2:4]] == [str(expected_rows), "4"], (
        line
    )  # u00001 in each of 4 responses
    assert "mismatch" in late.stdout and "u00001" in late.stdout
