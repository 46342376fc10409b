"""The SQL watermark state: rows at the last maximum told apart by content, as a multiset."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from headwater.schedule import Ledger
from headwater.watermarks import WatermarkState, WatermarkTracker, row_fingerprint


def _run(
    previous: WatermarkState | None, rows: list[dict[str, Any]]
) -> tuple[list[dict[str, Any]], WatermarkState | None]:
    tracker = WatermarkTracker(previous)
    admitted = [
        r
        for r in rows
        if (tracker.inclusive or previous is None or r["w"] > previous.value)
        and tracker.admit(r["w"], r)
    ]
    return admitted, tracker.state()


def test_rows_at_the_maximum_are_skipped_once_each_as_a_multiset() -> None:
    a, b = {"w": 5, "x": "a"}, {"w": 5, "x": "b"}
    got, state = _run(None, [{"w": 1, "x": "z"}, a, b])
    assert (
        len(got) == 3
        and state is not None
        and state.value == 5
        and sum(state.at_value.values()) == 2
    )  # type: ignore[union-attr]
    # Later: an identical copy of a (a second row with equal content), and a newer row.
    got, state = _run(state, [a, a, b, {"w": 6, "x": "c"}])
    assert got == [a, {"w": 6, "x": "c"}]
    assert state == WatermarkState(6, {row_fingerprint({"w": 6, "x": "c"}): 1})
    got, same = _run(state, [{"w": 6, "x": "c"}])
    assert got == [] and same == state


def test_state_written_before_fingerprints_reads_strictly_above_until_the_maximum_moves() -> None:
    legacy = WatermarkState(5, None)
    tracker = WatermarkTracker(legacy)
    assert not tracker.inclusive and tracker.state() is legacy  # nothing above: still unknown
    got, state = _run(legacy, [{"w": 7, "x": "n"}])
    assert got == [{"w": 7, "x": "n"}] and state is not None and state.at_value is not None


def test_ledger_keeps_value_types_and_fingerprints(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / "l.json")
    when = datetime(2026, 1, 2, 3, 4, 5, 678000, tzinfo=UTC)
    ledger.set_watermark("q1", WatermarkState(when, {"f1": 2}))
    ledger.set_watermark("q2", WatermarkState(Decimal("1.50"), {}))
    ledger.save()
    again = Ledger(tmp_path / "l.json")
    assert again.watermark("q1") == WatermarkState(when, {"f1": 2})
    assert again.watermark("q2") == WatermarkState(Decimal("1.50"), {})
    assert again.watermark("q3") is None


def test_fingerprint_ignores_column_order_and_tells_types_apart() -> None:
    assert row_fingerprint({"a": 1, "b": "x"}) == row_fingerprint({"b": "x", "a": 1})
    assert row_fingerprint({"a": Decimal("1.5")}) != row_fingerprint({"a": "1.5"})
