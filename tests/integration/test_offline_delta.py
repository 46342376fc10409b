"""The Delta offline store on real tables on disk: exactly-once positions and compaction."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pytest

from headwater.connectors.offline_delta import DeltaOfflineStore, history_schema
from headwater.schemas.definitions import FeatureSet
from headwater.schemas.loader import load_definitions

pytestmark = pytest.mark.integration

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def _example() -> tuple[FeatureSet, dict[str, str]]:
    """The example feature set and its history's field types (source fields + transforms)."""
    defs = load_definitions(EXAMPLES)
    types = {
        **defs.source("transactions").schema.field_types,
        "amount_cents": "long",
        "is_large": "long",
    }
    return defs.feature_set("user_spend"), types


def _rows(schema: pa.Schema, start: int, count: int, partition: int) -> pa.Table:
    rows = [
        {
            "transaction_id": f"t{i}",
            "user_id": f"u{i % 7}",
            "merchant_id": "m1",
            "amount": float(i),
            "currency": "EUR",
            "status": "approved",
            "event_time": 1_795_000_000_000 + i * 60_000,
            "amount_cents": i * 100,
            "is_large": 0,
            "event_time_ms": 1_795_000_000_000 + i * 60_000,
            "_event_date": "2026-11-17",
            "_partition": partition,
            "_offset": i,
            "_arrival_ms": 1_795_000_000_000 + i * 60_000,
        }
        for i in range(start, start + count)
    ]
    return pa.Table.from_pylist(rows, schema=schema)


def test_positions_survive_and_compaction_keeps_rows(tmp_path: Path) -> None:
    fs, types = _example()
    store = DeltaOfflineStore(tmp_path)
    assert store.create(fs, types)
    assert not store.create(fs, types)  # idempotent
    schema = history_schema(types)
    for batch in range(12):
        store.append(
            fs, _rows(schema, batch * 10, 10, batch % 2), "group-a", {batch % 2: batch * 10 + 9}
        )
    # An empty commit still moves a position (a batch whose rows the filter dropped).
    store.append(fs, schema.empty_table(), "group-a", {3: 41})
    assert store.committed_offsets(fs, "group-a", [0, 1, 2, 3]) == {0: 109, 1: 119, 3: 41}
    assert store.committed_offsets(fs, "group-b", [0, 1]) == {}
    before = store.history(fs).sort_by("_offset")

    result = store.compact(fs)
    assert result["files_before"] == 12
    assert result["files_after"] == 1
    after = store.history(fs).sort_by("_offset")
    assert after.equals(before)
    assert store.committed_offsets(fs, "group-a", [0, 1, 3]) == {0: 109, 1: 119, 3: 41}
    # Time travel to before the compaction still reads the same rows.
    assert store.history(fs, version=5).num_rows == 50


def test_a_source_field_added_compatibly_reaches_the_table(tmp_path: Path) -> None:
    """A compatible schema change (a new field with a default) keeps the feature-set version,
    so its table must take the new column: before, every append failed from then on."""
    fs, types = _example()
    store = DeltaOfflineStore(tmp_path)
    store.create(fs, types)
    old = history_schema(types)
    store.append(fs, _rows(old, 0, 5, 0), "group-a", {0: 4})
    wider = history_schema({**types, "channel": "string"})
    rows = _rows(old, 5, 5, 0)
    rows = rows.append_column("channel", pa.array(["web"] * 5)).select(wider.names).cast(wider)
    store.append(fs, rows, "group-a", {0: 9})
    history = store.history(fs).sort_by("_offset")
    assert history.num_rows == 10
    assert history.column("channel").to_pylist() == [None] * 5 + ["web"] * 5
    assert store.committed_offsets(fs, "group-a", [0]) == {0: 9}


def test_reading_an_old_version_lets_the_process_exit_cleanly(tmp_path: Path) -> None:
    """deltalake 1.6 with a threaded scan aborted most short processes at exit ("terminate
    called without an active exception"): `headwater retrieve --as-of` failed in CI."""
    import subprocess
    import sys

    fs, types = _example()
    store = DeltaOfflineStore(tmp_path)
    store.create(fs, types)
    schema = history_schema(types)
    for batch in range(3):
        store.append(fs, _rows(schema, batch * 10, 10, 0), "g", {0: batch * 10 + 9})
    script = (
        "import sys; from pathlib import Path; from headwater.connectors.offline_delta import DeltaOfflineStore; "
        "from headwater.schemas.loader import load_definitions; "
        f"fs = load_definitions(Path({str(EXAMPLES)!r})).feature_set('user_spend'); "
        f"print(DeltaOfflineStore(Path({str(tmp_path)!r})).history(fs, version=2).num_rows)"
    )
    for _ in range(5):
        done = subprocess.run(
            [sys.executable, "-c", script], capture_output=True, text=True, check=False
        )
        assert (done.returncode, done.stdout.strip()) == (0, "20"), done.stderr
