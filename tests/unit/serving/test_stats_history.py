"""History statistics from per-file partials on a real Delta table: the merged result equals
exact numpy computations over the rows of the days asked for, a second call reads no data
file, new files and compactions are followed, and dead partials are rewritten away."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from deltalake import DeltaTable, write_deltalake

from headwater.connectors.offline_delta import open_delta, read_delta
from headwater.schemas.offline_location import OfflineLocation
from headwater.serving.errors import BadRequestError, NotFoundError
from headwater.serving.stats_history import history_stats, stats_uri
from tests.unit.schemas.test_tiles import FS

DAYS = ["2026-11-29", "2026-11-30", "2026-12-01"]


def _batch(rng: np.random.Generator, day: str, n: int) -> pa.Table:
    amounts = rng.normal(50, 12, n)
    return pa.table(
        {
            "user": pa.array([f"u{i}" for i in rng.integers(0, 40, n)]),
            "amount": pa.array(amounts, mask=rng.random(n) < 0.05),
            "event_time_ms": pa.array(np.full(n, 1_790_000_000_000), pa.int64()),
            "_event_date": pa.array([day] * n),
            "_partition": pa.array(np.zeros(n, np.int32)),
            "_offset": pa.array(np.arange(n), pa.int64()),
            "_arrival_ms": pa.array(np.zeros(n, np.int64)),
        }
    )


def _append(location: OfflineLocation, table: pa.Table) -> None:
    uri = location.uri(f"{FS.name}__v{FS.version}")
    write_deltalake(uri, table, mode="append", partition_by=["_event_date"])


def _exact(tables: list[pa.Table], days: list[str]) -> tuple[int, np.ndarray]:
    rows = pa.concat_tables(tables).filter(
        pa.compute.is_in(pa.compute.field("_event_date"), pa.array(days))
    )
    amounts = rows.column("amount").drop_null().to_numpy()
    return rows.num_rows, amounts


def test_partials_merge_to_the_exact_statistics_and_follow_the_table(tmp_path: Path) -> None:
    location = OfflineLocation.of(tmp_path)
    with pytest.raises(NotFoundError, match="no offline table yet"):
        history_stats(location, FS)
    rng = np.random.default_rng(11)
    written = [_batch(rng, day, 3_000 + 500 * i) for i, day in enumerate(DAYS)]
    written.append(_batch(rng, DAYS[0], 700))
    for table in written:
        _append(location, table)

    first = history_stats(location, FS)
    assert (first.files_profiled, first.files_reused) == (4, 0)
    rows, amounts = _exact(written, DAYS)
    amount = first.profiles["amount"]
    assert first.rows == rows and first.days == DAYS
    assert amount.count == amounts.size and amount.nulls == rows - amounts.size
    assert amount.mean == pytest.approx(amounts.mean(), rel=1e-12)
    assert amount.stddev == pytest.approx(amounts.std(), rel=1e-9)
    assert (amount.minimum, amount.maximum) == (amounts.min(), amounts.max())
    assert first.profiles["user"].summary("user")["distinct"] == pytest.approx(40, abs=1)
    assert "_offset" not in first.profiles and "event_time_ms" not in first.profiles

    again = history_stats(location, FS)  # nothing new: every partial is reused
    assert (again.files_profiled, again.files_reused) == (0, 4)
    assert again.profiles["amount"].mean == amount.mean and again.rows == rows

    one_day = history_stats(location, FS, start=DAYS[0], end=DAYS[0])
    rows0, amounts0 = _exact(written, DAYS[:1])
    assert one_day.rows == rows0 and one_day.days == DAYS[:1]
    assert one_day.profiles["amount"].mean == pytest.approx(amounts0.mean(), rel=1e-12)
    assert history_stats(location, FS, start=DAYS[1]).days == DAYS[1:]

    late = _batch(rng, DAYS[1], 250)  # a backfill of an old day: a new file
    _append(location, late)
    written.append(late)
    after = history_stats(location, FS)
    assert (after.files_profiled, after.files_reused) == (1, 4)
    rows, amounts = _exact(written, DAYS)
    assert after.rows == rows
    assert after.profiles["amount"].mean == pytest.approx(amounts.mean(), rel=1e-12)

    DeltaTable(location.uri(f"{FS.name}__v{FS.version}")).optimize.compact()
    compacted = history_stats(location, FS)
    # Two days had two files each and got one new file; the third kept its only file.
    assert (compacted.files_profiled, compacted.files_reused) == (2, 1)
    assert compacted.rows == rows
    assert compacted.profiles["amount"].stddev == pytest.approx(amounts.std(), rel=1e-9)


def test_partials_of_files_compacted_away_are_rewritten_out(tmp_path: Path) -> None:
    location = OfflineLocation.of(tmp_path)
    rng = np.random.default_rng(5)
    for _ in range(20):
        _append(location, _batch(rng, DAYS[0], 50))
    assert history_stats(location, FS).files_profiled == 20
    history = DeltaTable(location.uri(f"{FS.name}__v{FS.version}"))
    history.optimize.compact()
    live = set(DeltaTable(location.uri(f"{FS.name}__v{FS.version}")).file_uris())
    assert len(live) == 1
    assert history_stats(location, FS).rows == 1_000
    table = open_delta(location, stats_uri(location, FS))
    assert table is not None
    files = set(read_delta(table).column("file").to_pylist())
    assert len(files) == 1 and any(uri.endswith(next(iter(files))) for uri in live)


def test_a_malformed_date_names_the_parameter(tmp_path: Path) -> None:
    location = OfflineLocation.of(tmp_path)
    with pytest.raises(BadRequestError, match="start '12/01/2026' is not a date: write YYYY-MM-DD"):
        history_stats(location, FS, start="12/01/2026")


def test_a_reader_that_cannot_keep_partials_still_answers(tmp_path: Path) -> None:
    location = OfflineLocation.of(tmp_path)
    rng = np.random.default_rng(8)
    table = _batch(rng, DAYS[0], 400)
    _append(location, table)
    (tmp_path / "_stats").write_text("not a directory")  # every write below it fails
    first = history_stats(location, FS)
    again = history_stats(location, FS)
    assert first.rows == again.rows == 400
    assert (first.files_profiled, again.files_profiled) == (1, 1)  # nothing was kept
    amounts = table.column("amount").drop_null().to_numpy()
    assert again.profiles["amount"].mean == pytest.approx(amounts.mean(), rel=1e-12)
