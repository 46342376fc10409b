"""``HistoryWriter`` commits in the background on real Delta tables: batches go on while a
commit runs, a failed commit's rows go back in front of the buffer and its error reaches the
next call, and every row lands once, with the right positions."""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from pathlib import Path

import pyarrow as pa
import pytest

from headwater.connectors.errors import StoreFaultError
from headwater.connectors.offline_delta import DeltaOfflineStore, history_schema
from headwater.schemas.definitions import FeatureSet
from headwater.schemas.loader import load_definitions
from headwater.schemas.tiles import FeatureSetPlan
from headwater.stream_workers.history_writer import HistoryWriter
from tests.integration.test_offline_delta import _example, _rows

pytestmark = pytest.mark.integration

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


class _GatedStore(DeltaOfflineStore):
    """The real Delta store, whose appends wait for a gate and can be told to fail once."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.gate = threading.Event()
        self.gate.set()
        self.fail_next = False
        self.failed = threading.Event()
        self.appends = 0

    def append(
        self,
        feature_set: FeatureSet,
        rows: pa.Table,
        app_id_prefix: str,
        offsets: Mapping[int, int],
    ) -> None:
        assert self.gate.wait(30)
        if self.fail_next:
            self.fail_next = False
            self.failed.set()
            raise OSError("disk went away")
        self.appends += 1
        super().append(feature_set, rows, app_id_prefix, offsets)


def _writer(tmp_path: Path) -> tuple[HistoryWriter, _GatedStore, FeatureSetPlan, pa.Schema]:
    fs, types = _example()
    store = _GatedStore(tmp_path)
    store.create(fs, types)
    schema = history_schema(types)
    plan = FeatureSetPlan(fs, load_definitions(EXAMPLES).source("transactions"))
    writer = HistoryWriter(
        store,
        "group-a",
        {fs.qualified_name: schema},
        lambda: None,
        flush_rows=20,
        flush_seconds=3600,
        idle_flush_seconds=3600,
    )
    return writer, store, plan, schema


def _batch(writer: HistoryWriter, plan: FeatureSetPlan, schema: pa.Schema, start: int) -> None:
    rows = writer.rows(plan, _rows(schema, start, 10, 0), {0: start + 9})
    assert rows is not None
    writer.buffer(plan, rows)
    writer.commit_due([plan])


def test_batches_go_on_while_a_commit_runs(tmp_path: Path) -> None:
    writer, store, plan, schema = _writer(tmp_path)
    fs = plan.feature_set
    store.gate.clear()  # the first commit hangs until the gate opens
    _batch(writer, plan, schema, 0)
    _batch(writer, plan, schema, 10)  # 20 rows: a commit is due, and runs in the background
    _batch(writer, plan, schema, 20)  # returns although the commit is still running
    assert store.appends == 0
    assert writer.position(plan, 0) == 29  # the in-memory position moved with the buffer
    store.gate.set()
    assert writer.flush() == 10  # waits for the commit in flight, then commits the rest
    assert store.appends == 2
    history = store.history(fs).sort_by("_offset")
    assert history.column("_offset").to_pylist() == list(range(30))
    assert store.committed_offsets(fs, "group-a", [0]) == {0: 29}


def test_a_failed_commit_puts_its_rows_back_and_its_error_reaches_the_next_call(
    tmp_path: Path,
) -> None:
    writer, store, plan, schema = _writer(tmp_path)
    fs = plan.feature_set
    store.fail_next = True
    _batch(writer, plan, schema, 0)
    _batch(writer, plan, schema, 10)  # due: the background commit fails
    assert store.failed.wait(30)
    deadline = time.monotonic() + 30
    while writer._inflight is not None and not writer._inflight[1].done():  # finishes raising
        assert time.monotonic() < deadline
        time.sleep(0.01)
    with pytest.raises(StoreFaultError, match="disk went away"):
        _batch(writer, plan, schema, 20)  # the next batch's commit_due reports it
    # Nothing was lost or doubled: the failed rows went back in front of the buffer.
    assert writer.flush() == 30
    history = store.history(fs).sort_by("_offset")
    assert history.column("_offset").to_pylist() == list(range(30))
    assert store.committed_offsets(fs, "group-a", [0]) == {0: 29}
