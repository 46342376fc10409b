"""Statistics of a feature set's history, merged from partials kept per data file and day.

A history table is partitioned by event date, and Delta data files never change once
written: a profile of one file's rows is valid for as long as the file is in the table.
So the partials are keyed by file (each file holds one day), kept in a Delta table of
their own (``<offline>/_stats/<set>__v<version>``), and statistics over any range of days
merge the partials of the files of those days. New data (new files), compaction and
erasure (files replaced) are followed exactly: files not profiled yet are profiled and
their partials appended, partials of files the table no longer has are ignored, and
rewritten away once they outnumber the live ones. Two processes profiling at once may
both append a file's partial; the first one read counts, so nothing counts twice.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date

import pyarrow as pa
import pyarrow.dataset as pds
from deltalake import write_deltalake
from deltalake.exceptions import DeltaError

from headwater.connectors.offline_delta import META_COLUMNS, open_delta, read_delta
from headwater.schemas.definitions import FeatureSet
from headwater.schemas.offline_location import OfflineLocation
from headwater.serving.errors import BadRequestError, NotFoundError
from headwater.serving.stats_profile import PROFILE_FIELDS, ColumnProfile, profile_table

__all__ = ["STATS_SCHEMA", "HistoryStats", "check_day", "history_stats", "stats_uri"]

STATS_SCHEMA = pa.schema(
    [
        pa.field("file", pa.string(), nullable=False),
        pa.field("day", pa.string(), nullable=False),
        pa.field("column", pa.string(), nullable=False),
        *PROFILE_FIELDS,
    ]
)
_SKIP = frozenset(META_COLUMNS)
log = logging.getLogger(__name__)


@dataclass
class HistoryStats:
    """Merged statistics of the days asked for, and what it took to get them."""

    rows: int = 0
    profiles: dict[str, ColumnProfile] = field(default_factory=dict)
    days: list[str] = field(default_factory=list)
    files_profiled: int = 0
    """Files read this time (new since the last call)."""
    files_reused: int = 0
    """Files whose stored partials were merged without reading them."""


def stats_uri(location: OfflineLocation, feature_set: FeatureSet) -> str:
    return location.uri("_stats", f"{feature_set.name}__v{feature_set.version}")


def check_day(text: str | None, name: str) -> str | None:
    """``text`` as an ISO date, ``None`` kept; a malformed one is refused naming ``name``."""
    if text is None:
        return None
    try:
        return date.fromisoformat(text).isoformat()
    except ValueError:
        msg = f"{name} {text!r} is not a date: write YYYY-MM-DD, e.g. 2026-12-01"
        raise BadRequestError(msg, field=name) from None


def _stored(location: OfflineLocation, uri: str) -> dict[str, list[dict[str, object]]]:
    """Stored partial rows by file; the first partial of a (file, column) wins."""
    table = open_delta(location, uri)
    if table is None:
        return {}
    by_file: dict[str, list[dict[str, object]]] = {}
    seen: set[tuple[str, str]] = set()
    for row in read_delta(table).to_pylist():
        key = (str(row["file"]), str(row["column"]))
        if key in seen:
            continue
        seen.add(key)
        by_file.setdefault(key[0], []).append(row)
    return by_file


def _partial_rows(
    file: str, day: str, profiles: dict[str, ColumnProfile], rows: int
) -> list[dict[str, object]]:
    # The row count rides along as a profile of no column (""), so empty tables count too.
    out = [{"file": file, "day": day, "column": "", **ColumnProfile("number", count=rows).to_row()}]
    out += [{"file": file, "day": day, "column": c, **p.to_row()} for c, p in profiles.items()]
    return out


def history_stats(
    location: OfflineLocation,
    feature_set: FeatureSet,
    *,
    start: str | None = None,
    end: str | None = None,
    persist: bool = True,
) -> HistoryStats:
    """Statistics of the history rows whose event day is in ``[start, end]`` (ISO dates,
    inclusive; open when ``None``).

    Raises:
        NotFoundError: the feature set has no offline table yet, or a date is malformed.
    """
    first, last = check_day(start, "start"), check_day(end, "end")
    history = open_delta(location, location.uri(f"{feature_set.name}__v{feature_set.version}"))
    if history is None:
        msg = (
            f"feature set {feature_set.qualified_name} has no offline table yet: run "
            "`headwater apply` and `headwater worker`"
        )
        raise NotFoundError(msg)
    uri = stats_uri(location, feature_set)
    stored = _stored(location, uri)
    dataset = history.to_pyarrow_dataset()
    result = HistoryStats()
    new_rows: list[dict[str, object]] = []
    live: set[str] = set()
    days: set[str] = set()
    for fragment in dataset.get_fragments():
        day = str(pds.get_partition_keys(fragment.partition_expression).get("_event_date", ""))
        live.add(fragment.path)
        if (first is not None and day < first) or (last is not None and day > last):
            continue
        days.add(day)
        rows = stored.get(fragment.path)
        if rows is None:
            table = fragment.to_table(schema=dataset.schema, use_threads=False)
            profiles = profile_table(table, skip=_SKIP)
            rows = _partial_rows(fragment.path, day, profiles, table.num_rows)
            new_rows += rows
            result.files_profiled += 1
        else:
            result.files_reused += 1
        _merge_rows(result, rows)
    result.days = sorted(days)
    if persist and new_rows:
        try:
            _save(location, uri, new_rows, stored, live)
        except (DeltaError, OSError) as exc:
            # A reader without write access (an API with read-only storage credentials)
            # still answers; the partials are computed again next time.
            log.warning("statistics partials not kept at %s: %s", uri, exc)
    return result


def _merge_rows(result: HistoryStats, rows: Iterable[dict[str, object]]) -> None:
    for row in rows:
        profile = ColumnProfile.from_row(row)
        column = str(row["column"])
        if not column:
            result.rows += profile.count
        elif column in result.profiles:
            result.profiles[column].merge(profile)
        else:
            result.profiles[column] = profile


def _save(
    location: OfflineLocation,
    uri: str,
    new_rows: list[dict[str, object]],
    stored: dict[str, list[dict[str, object]]],
    live: set[str],
) -> None:
    """Append the new partials; rewrite the table without dead files' partials once those
    outnumber the live ones (after compactions and erasures)."""
    dead = [f for f in stored if f not in live]
    options = location.options()
    if len(dead) > max(len(stored) - len(dead), 16):
        kept = [row for f, rows in stored.items() if f in live for row in rows]
        table = pa.Table.from_pylist(kept + new_rows, schema=STATS_SCHEMA)
        write_deltalake(uri, table, mode="overwrite", storage_options=options)
    else:
        table = pa.Table.from_pylist(new_rows, schema=STATS_SCHEMA)
        write_deltalake(uri, table, mode="append", storage_options=options)
