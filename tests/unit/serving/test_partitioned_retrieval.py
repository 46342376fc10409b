"""Retrieval in entity parts (``serving.historical_partitions``) gives the in-memory path's
values, bit for bit, and brute force's, from a real Delta table on local disk."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from headwater.connectors.offline_delta import DeltaOfflineStore, history_schema
from headwater.schemas.definitions import Entity
from headwater.schemas.tiles import arrival_seq
from headwater.serving.features import ResolvedFeatures
from headwater.serving.historical import get_historical_features
from headwater.serving.historical_partitions import partition_of, parts_for, split_points
from tests.reference import brute_force
from tests.unit.schemas.test_tiles import FS, PLAN, SCHEMA, _same

R = 60_000
USERS = [f"u{i:03d}" for i in range(60)]


def _history(rng: random.Random, rows: int) -> pa.Table:
    users = [rng.choice(USERS) for _ in range(rows)]
    times = [rng.randrange(0, 6 * 3_600_000) for _ in range(rows)]
    merchants = [rng.choice([None, "a", "b", "c", "d"]) for _ in range(rows)]
    amounts = [
        None if rng.random() < 0.1 else rng.choice([0.1, 0.2, 1e16, -3.5, 7.25])
        for _ in range(rows)
    ]
    table = pa.table(
        {
            "user_id": users,
            "ts": pa.array(times, pa.int64()),
            "amount": pa.array(amounts, pa.float64()),
            "qty": pa.array([rng.randrange(-5, 6) for _ in range(rows)], pa.int64()),
            "merchant": pa.array(merchants, pa.string()),
            "event_time_ms": pa.array(times, pa.int64()),
            "_event_date": pa.array(["2026-12-05"] * rows),
            "_partition": pa.array([i % 3 for i in range(rows)], pa.int32()),
            "_offset": pa.array(range(rows), pa.int64()),
            "_arrival_ms": pa.array(times, pa.int64()),
        }
    )
    return table


@pytest.fixture(scope="module")
def stored(tmp_path_factory: pytest.TempPathFactory) -> tuple[DeltaOfflineStore, pa.Table]:
    offline = DeltaOfflineStore(Path(tmp_path_factory.mktemp("offline")))
    offline.create(FS, PLAN.history_columns)
    schema = history_schema(PLAN.history_columns)
    history = _history(random.Random(11), 3_000)
    # Several commits, so the history arrives in several files and batches.
    for start in range(0, history.num_rows, 700):
        chunk = history.slice(start, 700).select(schema.names).cast(schema)
        offline.append(FS, chunk, "test", {0: start})
    return offline, history


def _labels(rng: random.Random, rows: int) -> pa.Table:
    users = [rng.choice([*USERS, "nobody", "zzz"]) for _ in range(rows)]
    times = [rng.randrange(-R, 7 * 3_600_000) for _ in range(rows)]
    return pa.table({"user_id": users, "event_timestamp": pa.array(times, pa.int64())})


@pytest.mark.parametrize("partition_rows", [400, 1_000, 2_999])
def test_parts_give_the_in_memory_values_and_brute_force(
    stored: tuple[DeltaOfflineStore, pa.Table], partition_rows: int
) -> None:
    offline, history = stored
    assert offline.history_rows(FS) == history.num_rows
    assert parts_for(history.num_rows, partition_rows) > 1
    resolved = ResolvedFeatures(
        refs=tuple(f"fs:{f.name}" for f in FS.features),
        plans=(PLAN,),
        entities=(Entity(name="user", keys=("user_id",)),),
        columns=tuple((0, i) for i in range(len(FS.features))),
    )
    labels = _labels(random.Random(partition_rows), 400)
    whole = get_historical_features(offline, resolved, labels)
    parted = get_historical_features(offline, resolved, labels, partition_rows=partition_rows)
    assert parted.equals(whole)
    # And both equal brute force, row by row.
    events: dict[str, list[tuple[dict[str, object], int, int]]] = {}
    for row in history.to_pylist():
        fields = {"amount": row["amount"], "qty": row["qty"], "merchant": row["merchant"]}
        seq = arrival_seq(row["_partition"], row["_offset"])
        events.setdefault(row["user_id"], []).append((fields, row["event_time_ms"], seq))
    names = [f.name for f in FS.features]
    for row in parted.to_pylist():
        want, _ = brute_force(
            FS, SCHEMA.field_types, events.get(row["user_id"], []), row["event_timestamp"]
        )
        assert _same([row[n] for n in names], want), row["user_id"]


def test_split_points_cut_the_label_entities_into_ranges() -> None:
    keys = pa.array(["b", "a", "d", "c", "a", None, "e", "f"])
    splits = split_points(keys, 3)
    assert splits.to_pylist() == ["c", "e"]
    assert partition_of(keys, splits).tolist() == [0, 0, 1, 1, 0, 0, 2, 2]
    assert len(split_points(pa.array(["x"]), 4)) <= 1
    assert partition_of(
        pa.array(["x", "y"]), split_points(pa.array([], pa.string()), 3)
    ).tolist() == [0, 0]
    with pytest.raises(ValueError, match="partition_rows"):
        parts_for(10, 0)
    assert parts_for(10_000_001, 10_000_000) == 2
    assert parts_for(0) == 1
    assert np.array_equal(partition_of(pa.array([], pa.string()), splits), np.zeros(0))
