"""Point-in-time retrieval in entity partitions, for histories larger than memory.

The in-memory path (``historical.plan_features``) holds a feature set's whole history, sorted,
with copies for the sort: fine to tens of millions of rows on a laptop, not to hundreds.
Here the history is read once, batch by batch, and every row is written to one of ``parts``
spill files by where its entity key falls among split points taken from the label rows' own
entities (so each part gets about as many label entities). Then each part, with the label rows
of its entities, goes through ``plan_features``. All events of an entity land in one part, so
each part's windows are whole and the values are the in-memory path's, bit for bit. Memory
holds one part's history at a time, plus the output columns.

Ranges of key strings, not hashes: Arrow compares strings in vectorised kernels, while it
exposes no hash function, and ``index_in`` against millions of label entities rebuilds its
hash table on every batch.
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from headwater.connectors.base import BaseOfflineStore
from headwater.schemas.tiles import FeatureSetPlan
from headwater.serving.windows import entity_keys

__all__ = ["PARTITION_ROWS", "partition_of", "partitioned_features", "parts_for", "split_points"]

PARTITION_ROWS = 10_000_000
"""History rows one part may hold: about 3 GB at its peak in the in-memory path."""

_BATCH_ROWS = 1_000_000


def parts_for(history_rows: int, partition_rows: int = PARTITION_ROWS) -> int:
    """How many parts a history of ``history_rows`` is retrieved in (1: all in memory)."""
    if partition_rows < 1:
        msg = f"partition_rows must be at least 1, got {partition_rows}"
        raise ValueError(msg)
    return max(1, -(-history_rows // partition_rows))


def split_points(label_entities: pa.Array, parts: int) -> pa.Array:
    """``parts - 1`` ascending keys cutting the labels' distinct entities into equal ranges."""
    distinct = pc.unique(label_entities).drop_null()
    ordered = distinct.take(pc.sort_indices(distinct))
    if len(ordered) == 0 or parts < 2:
        return ordered.slice(0, 0)
    at = [len(ordered) * k // parts for k in range(1, parts)]
    return pc.unique(ordered.take(pa.array(at, pa.int64())))


def partition_of(keys: pa.Array, splits: pa.Array) -> np.ndarray:
    """The part of each key: how many split points are at or below it (nulls: part 0)."""
    part = np.zeros(len(keys), dtype=np.int32)
    for split in splits:
        above = pc.fill_null(pc.greater_equal(keys, split), False)
        part += above.to_numpy(zero_copy_only=False)
    return part


def partitioned_features(
    offline: BaseOfflineStore,
    plan: FeatureSetPlan,
    key_names: tuple[str, ...],
    labels: pa.Table,
    times: np.ndarray,
    *,
    version: int | None,
    columns: Sequence[str],
    parts: int,
) -> list[pa.Array]:
    """Every feature of ``plan`` for every label row, in the labels' order, reading the
    history (``columns`` of it, at Delta ``version``) in ``parts`` entity parts."""
    # Imported here: historical imports this module to choose between the two paths.
    from headwater.serving.historical import plan_features

    label_keys = entity_keys(labels, key_names)
    splits = split_points(label_keys, parts)
    label_part = partition_of(label_keys, splits)
    n_parts = len(splits) + 1
    with tempfile.TemporaryDirectory(prefix="headwater-pit-") as spill:
        files = _spill(
            offline, plan, key_names, splits, Path(spill), version=version, columns=columns
        )
        rows: list[np.ndarray] = []
        values: list[list[pa.Array]] = []
        empty: pa.Table | None = None
        for p in range(n_parts):
            mine = np.flatnonzero(label_part == p)
            if len(mine) == 0:
                continue
            if p in files:
                history = _read(files[p])
            else:
                # No event of these entities: the (empty) columns in their stored types.
                if empty is None:
                    empty = offline.history(plan.feature_set, version, columns=columns).slice(0, 0)
                history = empty
            rows.append(mine)
            values.append(
                plan_features(plan, history, key_names, labels.take(pa.array(mine)), times[mine])
            )
            del history
    order = np.concatenate(rows) if rows else np.zeros(0, dtype=np.int64)
    inverse = np.empty_like(order)
    inverse[order] = np.arange(len(order))
    out = []
    for f in range(len(plan.feature_set.features)):
        chunks = [v[f] for v in values]
        out.append(pa.concat_arrays(chunks).take(pa.array(inverse)))
    return out


def _spill(
    offline: BaseOfflineStore,
    plan: FeatureSetPlan,
    key_names: tuple[str, ...],
    splits: pa.Array,
    directory: Path,
    *,
    version: int | None,
    columns: Sequence[str],
) -> dict[int, Path]:
    """Write each history row to its part's Arrow IPC file; returns the files written."""
    writers: dict[int, pa.ipc.RecordBatchFileWriter] = {}
    paths: dict[int, Path] = {}
    try:
        for batch in offline.history_batches(
            plan.feature_set, version, columns=columns, batch_rows=_BATCH_ROWS
        ):
            if batch.num_rows == 0:
                continue
            part = partition_of(entity_keys(pa.Table.from_batches([batch]), key_names), splits)
            order = np.argsort(part, kind="stable")
            ordered = batch.take(pa.array(order))
            bounds = np.searchsorted(part[order], np.arange(len(splits) + 2))
            for p in range(len(splits) + 1):
                lo, hi = int(bounds[p]), int(bounds[p + 1])
                if hi == lo:
                    continue
                if p not in writers:
                    paths[p] = directory / f"part-{p}.arrow"
                    writers[p] = pa.ipc.new_file(str(paths[p]), batch.schema)
                writers[p].write_batch(ordered.slice(lo, hi - lo))
    finally:
        for writer in writers.values():
            writer.close()
    return paths


def _read(path: Path) -> pa.Table:
    """One part's history, read into memory (the spill file is deleted afterwards)."""
    with pa.OSFile(str(path), "rb") as source:
        return pa.ipc.open_file(source).read_all()
