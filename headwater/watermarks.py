"""SQL watermarks that lose no row and repeat none.

A strict ``column > last maximum`` misses every row committed after a run with exactly that
maximum (a batch stamped with one timestamp, two transactions in one millisecond). So a run
reads ``column >= last maximum`` and skips the rows at exactly that value that earlier runs
already produced, which it knows by their fingerprints: the state kept per query is the
maximum and a count per fingerprint of the rows at it (a multiset, so two identical rows
committed at different times are each ingested once).

The state is recorded with the ingest bookkeeping (``headwater.schedule.Ledger``) only after
Kafka acknowledged the run, like the maximum alone was before. Rows committed later with a
value *below* the last maximum are still not read: a watermark column must not go back in
commit order (a sequence, or a commit timestamp, works).
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

__all__ = ["WatermarkState", "WatermarkTracker", "row_fingerprint"]


def _default(value: Any) -> str:
    # Values JSON has no type for (Decimal, UUID, bytes, times orjson does not take): the repr
    # names the type and the value, and the same driver gives the same one on every run.
    return repr(value)


def row_fingerprint(row: Mapping[str, Any]) -> str:
    """sha256 of the row's columns and values, independent of column order."""
    text = orjson.dumps(
        dict(row), default=_default, option=orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS
    )
    return hashlib.sha256(text).hexdigest()


@dataclass(frozen=True)
class WatermarkState:
    """The highest watermark value ingested and the rows ingested at exactly that value.

    ``at_value`` is ``None`` for state written before rows at the maximum were recorded: the
    next run then reads strictly above it, as the run that wrote it did.
    """

    value: Any
    at_value: Mapping[str, int] | None = field(default=None)


class WatermarkTracker:
    """Filters one run's rows against the previous state and computes the next state.

    Args:
        previous: the state after the last run, or ``None`` before the first run.
    """

    def __init__(self, previous: WatermarkState | None) -> None:
        self._previous = previous
        self._after = previous.value if previous is not None else None
        seen = previous.at_value if previous is not None else None
        self.inclusive = seen is not None
        """Whether the query reads ``>=`` the previous maximum (else ``>``)."""
        self._already: Counter[str] = Counter(seen or {})
        self._highest = self._after
        self._at_highest: Counter[str] = Counter(seen or {})

    @property
    def after(self) -> Any:
        """The previous maximum (``None``: read everything)."""
        return self._after

    def admit(self, value: Any, row: Mapping[str, Any]) -> bool:
        """Whether ``row`` (watermark ``value``) is new; call once per row, in query order."""
        fingerprint: str | None = None
        if self.inclusive and value == self._after:
            fingerprint = row_fingerprint(row)
            if self._already[fingerprint] > 0:
                self._already[fingerprint] -= 1
                return False
        if value is not None:
            if self._highest is None or value > self._highest:
                self._highest, self._at_highest = value, Counter()
            if value == self._highest:
                self._at_highest[fingerprint or row_fingerprint(row)] += 1
        return True

    def state(self) -> WatermarkState | None:
        """The state to record once this run's rows are acknowledged (``None``: no value seen)."""
        if self._highest is None:
            return None
        if not self.inclusive and self._highest == self._after:
            # Older state and nothing above it: which rows sit at the maximum is still unknown.
            return self._previous
        return WatermarkState(self._highest, dict(self._at_highest))
