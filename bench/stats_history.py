"""Feature statistics of a Delta history, next to DuckDB's SUMMARIZE of the same files.

    .venv/bin/python bench/stats_history.py [--rows 2000000 --days 10]

1. writes a history table (seeded numpy: a user id of 50k values, a merchant of 400, a
   lognormal amount and a small integer quantity) in one append per day, as the worker's
   history is partitioned by event day;
2. baseline: DuckDB ``SUMMARIZE`` over the same Parquet files (min, max, approximate unique
   count, mean, stddev, approximate quartiles, null share: a comparable set);
3. Headwater: ``history_stats`` the first time (every file profiled, partials kept) and
   again (partials merged, no data file read), and one more day appended then statistics
   again (only the new file read);
4. checks the two agree where both are exact (count, min, max, mean).
Every measurement is the best of 3 (first-time Headwater runs on a fresh copy each time).
"""

from __future__ import annotations

import argparse
import platform
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
from deltalake import DeltaTable, write_deltalake
from rich.console import Console
from rich.table import Table

from headwater.schemas.definitions import Feature, FeatureSet
from headwater.schemas.offline_location import OfflineLocation
from headwater.serving.stats_history import history_stats

FS = FeatureSet(
    name="bench", entity="user", source="txns", features=(Feature(name="n", function="count"),)
)


def _day(rng: np.random.Generator, day: int, rows: int) -> pa.Table:
    return pa.table(
        {
            "user": pa.array([f"u{i}" for i in rng.integers(0, 50_000, rows)]),
            "merchant": pa.array([f"m{i}" for i in rng.integers(0, 400, rows)]),
            "amount": rng.lognormal(3, 1, rows),
            "qty": rng.integers(1, 5, rows),
            "event_time_ms": np.full(rows, 1_790_000_000_000 + day * 86_400_000),
            "_event_date": [f"2026-11-{day + 1:02d}"] * rows,
            "_partition": np.zeros(rows, np.int32),
            "_offset": np.arange(rows),
            "_arrival_ms": np.zeros(rows, np.int64),
        }
    )


def _best(run: Callable[[], object], prepare: Callable[[], None] | None = None) -> float:
    times = []
    for _ in range(3):
        if prepare is not None:
            prepare()
        began = time.perf_counter()
        run()
        times.append(time.perf_counter() - began)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=2_000_000)
    parser.add_argument("--days", type=int, default=10)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="hw-stats-bench-"))
    try:
        rng = np.random.default_rng(1)
        source = work / "source"
        location = OfflineLocation.of(source)
        uri = location.uri(f"{FS.name}__v{FS.version}")
        for day in range(args.days):
            write_deltalake(
                uri,
                _day(rng, day, args.rows // args.days),
                mode="append",
                partition_by=["_event_date"],
            )
        files = DeltaTable(uri).file_uris()
        columns = "user, merchant, amount, qty"
        summarize = f"SUMMARIZE SELECT {columns} FROM read_parquet({files!r})"
        duck = _best(lambda: duckdb.sql(summarize).fetchall())

        copy = work / "copy"

        def fresh() -> None:
            shutil.rmtree(copy, ignore_errors=True)
            shutil.copytree(source, copy)

        first = _best(lambda: history_stats(OfflineLocation.of(copy), FS), fresh)
        history_stats(location, FS)
        rerun = _best(lambda: history_stats(location, FS))

        def one_more_day() -> None:
            write_deltalake(
                uri,
                _day(rng, args.days, args.rows // args.days),
                mode="append",
                partition_by=["_event_date"],
            )

        def once() -> None:
            one_more_day()
            history_stats(location, FS)

        began = time.perf_counter()
        once()
        incremental = time.perf_counter() - began

        ours = history_stats(location, FS, end=f"2026-11-{args.days:02d}").profiles["amount"]
        (row,) = duckdb.sql(
            f"SELECT count(*), min(amount), max(amount), avg(amount) FROM read_parquet({files!r})"
        ).fetchall()
        assert (
            row is not None
            and ours.count == row[0]
            and ours.minimum == row[1]
            and ours.maximum == row[2]
        )
        assert abs(ours.mean - row[3]) <= 1e-9 * abs(row[3])

        table = Table(
            title=f"Statistics of {args.rows:,} history rows x 4 columns in {args.days} files"
        )
        for column in ("what", "seconds", "rows/s", "vs DuckDB SUMMARIZE"):
            table.add_column(column, justify="left" if column == "what" else "right")
        table.add_row(
            "DuckDB SUMMARIZE (baseline)", f"{duck:.3f}", f"{args.rows / duck:,.0f}", "1.00x"
        )
        table.add_row(
            "Headwater, first time (all files)",
            f"{first:.3f}",
            f"{args.rows / first:,.0f}",
            f"{first / duck:.2f}x",
        )
        table.add_row(
            "Headwater, again (partials merged)", f"{rerun:.3f}", "-", f"{rerun / duck:.2f}x"
        )
        per_day = args.rows // args.days
        table.add_row(
            f"Headwater, one day more ({per_day:,} rows)",
            f"{incremental:.3f}",
            "-",
            f"{incremental / duck:.2f}x",
        )
        Console().print(table)
        Console().print(
            f"{platform.node()}, {platform.processor() or platform.machine()}; times in seconds, best of 3"
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
