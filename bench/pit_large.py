"""Point-in-time retrieval larger than memory: 50M history rows x 5M labels from Delta.

Issue 16's bounded-memory retrieval: the history is read once and spilled in entity parts
(``serving.historical_partitions``); each measure runs in a child process of its own so
its peak resident memory (``ru_maxrss``) is its own. Beside it, in the same run:

1. DuckDB's ASOF LEFT JOIN of the same Delta table (the raw baseline), same label rows;
2. Headwater ``last(amount)`` (checked equal to DuckDB's amount on every row) and four
   windowed features, both in parts;
3. the in-memory path on a sample of the labels (the whole history still read), checked
   equal to the parted result's rows for the same labels.

No Kafka, Redis or catalog: the definitions are loaded from YAML and the Delta tables are
written directly, as the worker would. ``--history 2000000 --labels 200000`` runs in a minute.

    .venv/bin/python bench/pit_large.py [--history 50000000 --labels 5000000]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import platform
import resource
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from pit_join import DEFINITIONS, SCHEMA
from rich.console import Console
from rich.table import Table

from headwater.serving.historical_partitions import PARTITION_ROWS, parts_for

DAY_MS = 86_400_000
END_MS = 1_793_491_200_000  # 2026-11-01 UTC
CHUNK = 2_500_000


def _definitions(work: Path) -> Path:
    defs = work / "defs"
    defs.mkdir()
    (defs / "payments.avsc").write_text(json.dumps(SCHEMA))
    (defs / "features.yaml").write_text(
        DEFINITIONS.format(source="payments", last_set="pay_last", window_set="pay_windows")
    )
    return defs


def _ids(entities: int) -> pa.Array:
    return pa.array([f"u{i:08d}" for i in range(entities)], pa.string())


def _write_history(work: Path, rows: int, entities: int, days: int, seed: int) -> None:
    """``rows`` events in arrival order, chunk by chunk; event times unique over the table
    (a random permutation of evenly spaced instants), so ASOF and ``last`` are unambiguous."""
    from headwater.connectors.offline_delta import DeltaOfflineStore, history_schema
    from headwater.schemas.loader import load_definitions
    from headwater.schemas.tiles import FeatureSetPlan

    defs = load_definitions(_definitions(work))
    offline = DeltaOfflineStore(work / "offline")
    rng = np.random.default_rng(seed)
    step = days * DAY_MS // rows
    times = END_MS - days * DAY_MS + rng.permutation(rows).astype(np.int64) * step
    ids = _ids(entities)
    with_history = entities - entities // 20  # the last 5 % never occur
    for fs in defs.feature_sets:
        plan = FeatureSetPlan(fs, defs.source(fs.source))
        offline.create(fs, plan.history_columns)
    for start in range(0, rows, CHUNK):
        n = min(CHUNK, rows - start)
        event = times[start : start + n]
        entity = rng.integers(0, with_history, n)
        dates = pc.strftime(pa.array(event.astype("datetime64[ms]")), format="%Y-%m-%d")
        chunk = pa.table(
            {
                "user_id": ids.take(pa.array(entity)),
                "amount": pa.array(np.round(rng.gamma(2.0, 30.0, n), 2)),
                "event_time": pa.array(event),
                "event_time_ms": pa.array(event),
                "_event_date": dates,
                "_partition": pa.array(np.zeros(n, np.int32)),
                "_offset": pa.array(np.arange(start, start + n, dtype=np.int64)),
                "_arrival_ms": pa.array(event + rng.integers(100, 2_000, n)),
            }
        )
        for fs in defs.feature_sets:
            schema = history_schema(FeatureSetPlan(fs, defs.source(fs.source)).history_columns)
            offline.append(fs, chunk.select(schema.names).cast(schema), "bench", {0: start + n - 1})


def _write_labels(work: Path, rows: int, entities: int, days: int, seed: int) -> None:
    rng = np.random.default_rng(seed + 1)
    entity = rng.integers(0, entities, rows)
    labels = pa.table(
        {
            "row_id": pa.array(np.arange(rows, dtype=np.int64)),
            "user_id": _ids(entities).take(pa.array(entity)),
            "event_timestamp": pa.array(rng.integers(END_MS - days * DAY_MS, END_MS + 1, rows)),
        }
    )
    pq.write_table(labels, work / "labels.parquet")


def _measure(work: str, what: str, partition_rows: int, out: Any) -> None:
    """One measure in this (child) process: seconds, peak RSS, and a result file."""
    from headwater.connectors.offline_delta import DeltaOfflineStore
    from headwater.schemas.loader import load_definitions
    from headwater.serving.features import resolve_features
    from headwater.serving.historical import get_historical_features

    root = Path(work)
    labels = pq.read_table(root / "labels.parquet")
    defs = load_definitions(root / "defs")
    offline = DeltaOfflineStore(root / "offline")
    t0 = time.perf_counter()
    if what == "duckdb":
        import duckdb
        from deltalake import DeltaTable

        con = duckdb.connect()
        con.register(
            "history", DeltaTable(str(root / "offline" / "pay_last__v1")).to_pyarrow_dataset()
        )
        con.register("labels", labels)
        result = con.sql(
            "SELECT l.row_id, h.amount FROM labels l ASOF LEFT JOIN history h "
            "ON l.user_id = h.user_id AND l.event_timestamp >= h.event_time_ms ORDER BY l.row_id"
        ).to_arrow_table()
        con.close()
    else:
        fs = "pay_last" if what in ("last", "sample_memory", "sample_parts") else "pay_windows"
        refs = [f"{fs}:{f.name}" for f in defs.feature_set(fs).features]
        if what.startswith("sample"):
            labels = labels.slice(0, 50_000)
        rows = 10**15 if what == "sample_memory" else partition_rows
        result = get_historical_features(
            offline, resolve_features(defs, refs), labels, partition_rows=rows
        )
    seconds = time.perf_counter() - t0
    pq.write_table(result, root / f"result-{what}.parquet")
    out.put((seconds, _peak_gib()))


def _peak_gib() -> float:
    """This process's peak resident memory. ``ru_maxrss`` would not do: it keeps the
    parent's peak across fork and exec; VmHWM belongs to this address space alone."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024**2  # KiB -> GiB
    return float(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) / 1024**2


def _child(work: Path, what: str, partition_rows: int) -> tuple[float, float]:
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_measure, args=(str(work), what, partition_rows, queue))
    proc.start()
    seconds, peak = queue.get()
    proc.join()
    return seconds, peak


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--history", type=int, default=50_000_000)
    parser.add_argument("--labels", type=int, default=5_000_000)
    parser.add_argument("--entities", type=int, default=None, help="default: history / 10")
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--seed", type=int, default=16)
    parser.add_argument(
        "--partition-rows",
        type=int,
        default=PARTITION_ROWS,
        help="history rows per part (the product's default)",
    )
    parser.add_argument("--keep", action="store_true")
    args = parser.parse_args()
    entities = args.entities or max(20, args.history // 10)
    console = Console(width=120)
    work = Path(tempfile.mkdtemp(prefix="hw-bench-pit-large-"))
    try:
        t0 = time.perf_counter()
        _write_history(work, args.history, entities, args.days, args.seed)
        _write_labels(work, args.labels, entities, args.days, args.seed)
        console.print(
            f"wrote {args.history:,} history rows x2 tables, {args.labels:,} labels "
            f"in {time.perf_counter() - t0:.0f} s ({work})"
        )
        measured = {}
        for what in ("duckdb", "last", "windows", "sample_memory", "sample_parts"):
            measured[what] = _child(work, what, args.partition_rows)
            console.print(f"{what}: {measured[what][0]:.1f} s, peak {measured[what][1]:.2f} GiB")
        duck = pq.read_table(work / "result-duckdb.parquet")
        last = pq.read_table(work / "result-last.parquet")
        assert last.column("row_id").equals(duck.column("row_id")), "rows not in label order"
        ours, theirs = last.column("last_amount"), duck.column("amount")
        differ = pc.sum(pc.cast(pc.not_equal(ours, theirs), pa.int64())).as_py() or 0
        nulls = pc.all(pc.equal(pc.is_null(ours), pc.is_null(theirs))).as_py()
        assert differ == 0 and nulls, f"last != ASOF on {differ} rows (nulls agree: {nulls})"
        sample_memory = pq.read_table(work / "result-sample_memory.parquet")
        sample_parts = pq.read_table(work / "result-sample_parts.parquet")
        assert sample_parts.equals(sample_memory), "parts differ from the in-memory path"
        windows = pq.read_table(work / "result-windows.parquet")
        assert windows.num_rows == args.labels
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)

    duck_s = measured["duckdb"][0]
    parts = parts_for(args.history, args.partition_rows)
    table = Table(
        title=(
            f"point-in-time, {args.history:,} history rows x {args.labels:,} labels, from Delta "
            f"({platform.node()}, {os.cpu_count()} cores, {os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 1024**3:.0f} GiB; "
            "one run each, each in its own process)"
        )
    )
    for column in ("measure", "seconds", "vs DuckDB", "peak RSS, GiB"):
        table.add_column(column, justify="left" if column == "measure" else "right")
    rows = [
        ("DuckDB ASOF LEFT JOIN, amount", "duckdb"),
        (f"Headwater last(amount), {parts} parts (== DuckDB on every row)", "last"),
        (f"Headwater 4 windowed features, {parts} parts", "windows"),
        ("in-memory path, 50k-label sample (whole history read)", "sample_memory"),
        ("in parts, same sample (== in-memory)", "sample_parts"),
    ]
    for label, key in rows:
        seconds, peak = measured[key]
        table.add_row(label, f"{seconds:.1f}", f"{seconds / duck_s:.2f}", f"{peak:.2f}")
    console.print(table)


if __name__ == "__main__":
    main()
