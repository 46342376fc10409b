"""Versioning end to end: in-place updates, a breaking change making v2, both serving,
v2 computed from the topic's history by the running worker, and retirement."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pyarrow.parquet as pq
import pytest

from headwater.apply import apply_definitions
from headwater.connectors.catalog import Catalog
from headwater.connectors.offline_delta import DeltaOfflineStore
from headwater.ingest import ingest_files
from headwater.sample_data import generate_transactions
from tests.integration.pipeline import Deployment
from tests.reference import brute_force
from tests.reference import example_events_by_user as _events_by_user

pytestmark = pytest.mark.integration


def _edit(deployment: Deployment, old: str, new: str) -> None:
    path = deployment.defs_dir / "features.yaml"
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new))


def _wait_for(predicate, what: str, timeout_s: float = 60) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.3)


def test_breaking_change_serves_both_versions_and_v2_has_the_whole_history(
    deployment: Deployment, tmp_path: Path
) -> None:
    settings = deployment.settings
    name = deployment.feature_set
    now = time.time_ns() // 1_000_000
    data = generate_transactions(
        end_ms=now // 60_000 * 60_000, users=15, days=1, events_per_user_day=20, seed=3
    )
    first, second = data.slice(0, data.num_rows // 2), data.slice(data.num_rows // 2)
    pq.write_table(first, tmp_path / "first.parquet")
    pq.write_table(second, tmp_path / "second.parquet")

    worker = deployment.start_worker()
    ingest_files(settings, deployment.source, [tmp_path / "first.parquet"], show_progress=False)
    deployment.wait_caught_up(worker)

    # Re-applying the same files changes nothing.
    report = apply_definitions(settings, deployment.defs_dir)
    assert {item.action for item in report.plan.items} == {"unchanged"}

    # Metadata and a feature over state v1 already keeps: updated in place.
    _edit(
        deployment, "description: Card spend per user", "description: Card spend per user, in EUR"
    )
    _edit(
        deployment,
        "      - {name: txn_count_total, function: count}",
        "      - {name: txn_count_total, function: count}\n      - {name: txn_count_2h, function: count, window: 2h}",
    )
    report = apply_definitions(settings, deployment.defs_dir, dry_run=True)
    (fs_item,) = [i for i in report.plan.items if i.kind == "feature_set"]
    assert (fs_item.action, fs_item.version) == ("update", 1)
    assert "new feature(s) ['txn_count_2h']" in fs_item.changes
    assert any(c.startswith("description:") for c in fs_item.changes)
    assert (
        Catalog(settings.catalog_url).definitions().feature_set(name).description
        == "Card spend per user"
    )  # dry run
    apply_definitions(settings, deployment.defs_dir)
    assert (
        Catalog(settings.catalog_url)
        .feature_set_versions(name)[0][0]
        .feature("txn_count_2h")
        .window_ms
        == 7_200_000
    )

    # A changed window is breaking: v2, while v1 keeps serving.
    _edit(
        deployment,
        "{name: spend_1h, function: sum, field: amount, window: 1h}",
        "{name: spend_1h, function: sum, field: amount, window: 3h}",
    )
    report = apply_definitions(settings, deployment.defs_dir)
    (fs_item,) = [i for i in report.plan.items if i.kind == "feature_set"]
    assert (fs_item.action, fs_item.version) == ("new_version", 2)
    assert "feature 'spend_1h': sum(amount) over 1h -> sum(amount) over 3h" in fs_item.changes

    # The running worker notices, restarts itself (same pid), and computes v2 from the
    # start of the topic even though no new event arrives.
    v2 = Catalog(settings.catalog_url).definitions().feature_set(name, 2)
    offline = DeltaOfflineStore(settings.offline_root)
    approved_first = sum(1 for s in first.column("status").to_pylist() if s == "approved")
    _wait_for(lambda: offline.history(v2).num_rows == approved_first, "v2 to catch up")
    assert worker.alive()
    assert "definitions changed" in worker.log_file.read_text()

    # New events flow into both versions.
    ingest_files(settings, deployment.source, [tmp_path / "second.parquet"], show_progress=False)
    deployment.wait_caught_up(worker)
    v1 = Catalog(settings.catalog_url).definitions().feature_set(name, 1)
    for version in (v1, v2):
        history = offline.history(version)
        assert history.num_rows == sum(
            1 for s in data.column("status").to_pylist() if s == "approved"
        )
        positions = list(
            zip(
                history.column("_partition").to_pylist(),
                history.column("_offset").to_pylist(),
                strict=True,
            )
        )
        assert len(set(positions)) == len(positions), version.qualified_name

    url = deployment.start_api()
    users = sorted(set(data.column("user_id").to_pylist()))
    events = _events_by_user(data)
    types = deployment.history_types()
    for ref_set, version in ((f"{name}@v1", v1), (f"{name}@v2", v2), (name, v2)):
        refs = [f"{ref_set}:{f.name}" for f in version.features]
        body = httpx.post(
            f"{url}/v1/online-features",
            json={"features": refs, "entities": {"user_id": users}},
            timeout=30,
        ).json()
        t = round(
            __import__("datetime")
            .datetime.fromisoformat(body["served_at"].replace("Z", "+00:00"))
            .timestamp()
            * 1000
        )
        for result in body["results"]:
            want, _ = brute_force(version, types, events.get(result["entity"]["user_id"], []), t)
            assert result["values"] == want, (ref_set, result["entity"])

    # Retiring v1: it is no longer served; v2 is.
    Catalog(settings.catalog_url).retire(name, 1)
    # The API re-reads definitions at most every serving.definitions_max_age_seconds (1 s).
    deadline = time.monotonic() + 10
    while True:
        gone = httpx.post(
            f"{url}/v1/online-features",
            json={"features": [f"{name}@v1:spend_1h"], "entities": {"user_id": users[:1]}},
            timeout=30,
        )
        if gone.status_code != 200 or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert gone.status_code == 404
    assert "no active version 1" in gone.json()["detail"]
    shown = httpx.get(f"{url}/v1/feature-sets/{name}", timeout=30).json()
    assert shown["version"] == 2
    assert shown["versions"] == [
        {"version": 1, "status": "retired"},
        {"version": 2, "status": "active"},
    ]
    actions = [(a.action, a.target) for a in Catalog(settings.catalog_url).audit()]
    assert actions[-1] == ("retire", f"{name}@v1")
