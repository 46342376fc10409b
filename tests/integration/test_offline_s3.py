"""The offline store on S3-compatible object storage (issue 16), against a real S3 API
server (moto's, ``tests/integration/s3.py``): the worker's history, point-in-time
retrieval, saved training sets rebuilt by time travel, compaction, the response log, and
two writers racing on one table. Credentials travel as secrets and are never shown.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pyarrow as pa
import pytest

from headwater.connectors.offline_delta import DeltaOfflineStore, history_schema, open_delta
from headwater.sample_data import generate_transactions
from headwater.schemas.errors import ConfigError
from headwater.schemas.settings import load_settings
from headwater.schemas.tiles import FeatureSetPlan
from headwater.serving.response_log import ResponseLog, read_response_log
from tests.integration import test_exactly_once as exactly_once
from tests.integration.pipeline import Deployment, make_deployment
from tests.integration.s3 import SECRET_ACCESS_KEY, S3Bucket
from tests.integration.test_training_sets import test_saved_training_set_rebuilds_byte_identical

pytestmark = [pytest.mark.integration, pytest.mark.distributed]

MINUTE = 60_000


@pytest.fixture
def s3_deployment(
    tmp_path: Path, kafka_bootstrap: str, redis_url: str, s3_bucket: S3Bucket
) -> Deployment:
    with make_deployment(tmp_path, kafka_bootstrap, redis_url, offline=s3_bucket.offline()) as dep:
        yield dep  # type: ignore[misc]


def test_worker_history_and_point_in_time_on_s3(
    s3_deployment: Deployment, s3_bucket: S3Bucket, tmp_path: Path
) -> None:
    dep = s3_deployment
    location = dep.settings.offline_location
    assert location.root == f"s3://{s3_bucket.name}/offline"
    assert SECRET_ACCESS_KEY not in repr(dep.settings) + repr(location)
    end = time.time_ns() // 1_000_000 // MINUTE * MINUTE
    data = generate_transactions(end_ms=end, users=20, days=2, events_per_user_day=15, seed=3)
    worker = dep.start_worker()
    third = data.num_rows // 3
    for start in (0, third, 2 * third):  # several commits: small files for compaction
        dep.ingest(data.slice(start, third if start < 2 * third else None), worker)
    # The tables are in the bucket, and nothing went to the local home.
    fs = dep.definitions().feature_set(dep.feature_set)
    table_prefix = f"offline/{fs.name}__v{fs.version}/"
    keys = s3_bucket.object_keys(table_prefix)
    assert any(k.startswith(table_prefix + "_delta_log/") for k in keys), keys[:5]
    assert any(k.endswith(".parquet") for k in keys)
    assert not (dep.settings.home / "offline").exists()
    url = dep.start_api()
    served_at = exactly_once.assert_online_equals_brute_force(dep, url, data)
    exactly_once.assert_offline_exactly_once(dep, data)
    exactly_once.assert_point_in_time_equals_brute_force(dep, data, [end - MINUTE, served_at])
    # Compaction rewrites the many micro-batch files; the rows stay the same.
    offline = DeltaOfflineStore(location)
    before = offline.history(fs).sort_by([("_partition", "ascending"), ("_offset", "ascending")])
    report = offline.compact(fs)
    assert report["files_after"] < report["files_before"], report
    after = offline.history(fs).sort_by([("_partition", "ascending"), ("_offset", "ascending")])
    assert after.equals(before)
    exactly_once.assert_point_in_time_equals_brute_force(dep, data, [served_at])
    # A CLI command in the same deployment reads the same tables.
    status = dep.cli("retrieve", "--help")
    assert status.returncode == 0


def test_saved_training_sets_rebuild_from_s3(
    s3_deployment: Deployment, s3_bucket: S3Bucket, tmp_path: Path
) -> None:
    """The training-set test of the local store, run on S3: saved, more data, rebuilt byte
    for byte by time travel, `--as-of` by version and by time."""
    test_saved_training_set_rebuilds_byte_identical(s3_deployment, tmp_path)
    kept = s3_bucket.object_keys("offline/_training_sets/fraud_train_1/")
    assert kept == ["offline/_training_sets/fraud_train_1/entities.parquet"]


def test_response_log_on_s3(s3_bucket: S3Bucket, tmp_path: Path) -> None:
    settings = load_settings(home=tmp_path / "home", offline=s3_bucket.offline("log"))
    log = ResponseLog(settings.offline_location, sample_rate=1.0, flush_seconds=3600)
    try:
        assert log.record(1_000, ("s:f",), [{"user_id": "u1"}], [[1.5]], [["PRESENT"]])
        assert log.flush() == 1
    finally:
        log.close()
    rows = read_response_log(settings.offline_location)
    assert rows.column("entity").to_pylist() == [json.dumps({"user_id": "u1"})]
    assert any(k.startswith("log/_served_responses/_delta_log/") for k in s3_bucket.object_keys())


def test_two_writers_racing_on_one_table_lose_and_double_nothing(
    s3_bucket: S3Bucket, tmp_path: Path
) -> None:
    """Two workers' appends to one table at once: S3 has no atomic rename, so each commit
    is a conditional put of the next log entry; the loser retries on the new version."""
    from headwater.schemas.avro import AvroSchema
    from headwater.schemas.definitions import Feature, FeatureSet, Source

    schema = AvroSchema.from_dict(
        {
            "type": "record",
            "name": "E",
            "fields": [{"name": "user_id", "type": "string"}, {"name": "ts", "type": "long"}],
        }
    )
    fs = FeatureSet(
        name="race", entity="user", source="s", features=(Feature(name="n", function="count"),)
    )
    plan = FeatureSetPlan(fs, Source(name="s", schema=schema, timestamp="ts"))
    location = load_settings(home=tmp_path, offline=s3_bucket.offline("race")).offline_location
    offline = DeltaOfflineStore(location)
    assert offline.create(fs, plan.history_columns)
    columns = history_schema(plan.history_columns)
    batches, per_batch = 12, 5
    errors: list[BaseException] = []

    def writer(partition: int) -> None:
        try:
            for b in range(batches):
                offsets = list(range(b * per_batch, (b + 1) * per_batch))
                rows = (
                    pa.table(
                        {
                            "user_id": [f"u{partition}"] * per_batch,
                            "ts": offsets,
                            "event_time_ms": offsets,
                            "_event_date": ["2026-12-05"] * per_batch,
                            "_partition": [partition] * per_batch,
                            "_offset": offsets,
                            "_arrival_ms": offsets,
                        }
                    )
                    .select(columns.names)
                    .cast(columns)
                )
                offline.append(fs, rows, "race-group", {partition: offsets[-1]})
        except BaseException as exc:  # noqa: BLE001 - handed to the test thread
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(p,)) for p in (0, 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors
    history = offline.history(fs)
    positions = list(
        zip(
            history.column("_partition").to_pylist(),
            history.column("_offset").to_pylist(),
            strict=True,
        )
    )
    assert sorted(positions) == [(p, o) for p in (0, 1) for o in range(batches * per_batch)]
    assert offline.committed_offsets(fs, "race-group", [0, 1]) == {
        0: batches * per_batch - 1,
        1: batches * per_batch - 1,
    }
    table = open_delta(location, offline.table_uri(fs))
    assert table is not None
    versions = sorted(c["version"] for c in table.history())
    assert versions == list(range(2 * batches + 1))  # the create, then one commit per append


def test_bad_offline_settings_name_the_setting_and_hide_the_secret(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"offline.*ftp.*s3://"):
        load_settings(home=tmp_path, offline={"url": "ftp://somewhere/x"})
    with pytest.raises(ConfigError, match="secret_options") as refused:
        load_settings(
            home=tmp_path,
            offline={"url": "s3://b/p", "storage_options": {"AWS_SECRET_ACCESS_KEY": "xyz-123"}},
        )
    assert "xyz-123" not in str(refused.value)
    with pytest.raises(ConfigError, match="names no bucket"):
        load_settings(home=tmp_path, offline={"url": "s3://"})
