"""Reproducible training sets: a retrieval pinned to Delta versions, rebuilt bit for bit.

A retrieval reads each feature-set table at one Delta version (the current one, or the one
``as_of`` picks). Saving it under a name records those versions, the references pinned to
feature-set versions, and a fingerprint of the entity input, and keeps a copy of that input
beside the offline tables. ``rebuild`` reads the same versions (Delta time travel) with the
same code, so the result is byte-identical however much data arrived since, as long as the
old table files were not vacuumed.
"""

from __future__ import annotations

import hashlib
import re
import time
from collections.abc import Mapping, Sequence
from datetime import datetime

import pyarrow as pa

from headwater.connectors.catalog import Catalog, TrainingSetRecord
from headwater.connectors.offline_delta import DeltaOfflineStore
from headwater.connectors.offline_files import read_parquet, write_parquet
from headwater.serving.errors import BadRequestError
from headwater.serving.features import ResolvedFeatures, resolve_features
from headwater.serving.historical import get_historical_features

__all__ = [
    "AsOf",
    "TrainingSetError",
    "entities_path",
    "fingerprint",
    "parse_as_of",
    "rebuild",
    "retrieve",
]

AsOf = datetime | int | Mapping[str, int] | None
"""A time (every table as of then), a version (one feature set only), or versions by
``set`` / ``set@vN``."""

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")


class TrainingSetError(BadRequestError):
    """A training set cannot be saved or rebuilt as asked; the message says why and the fix."""


def fingerprint(table: pa.Table) -> str:
    """sha256 of the table's data, column names and types (not its chunking or metadata)."""
    canonical = table.combine_chunks().replace_schema_metadata(None)
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, canonical.schema) as writer:
        for batch in canonical.to_batches():
            writer.write_batch(batch)
    return hashlib.sha256(sink.getvalue().to_pybytes()).hexdigest()


def parse_as_of(values: Sequence[str]) -> AsOf:
    """``--as-of`` values: one ISO-8601 time with a zone, one version number, or
    ``SET[@vN]=VERSION`` pairs."""
    if not values:
        return None
    if len(values) == 1 and "=" not in values[0]:
        text = values[0].strip()
        if text.isdigit():
            return int(text)
        try:
            moment = datetime.fromisoformat(text)
        except ValueError:
            moment = None
        if moment is None or moment.tzinfo is None:
            msg = f"--as-of {text!r}: give an ISO-8601 time with a zone (2026-11-26T10:00:00Z), a version number, or SET=VERSION"
            raise TrainingSetError(msg)
        return moment
    pins: dict[str, int] = {}
    for value in values:
        name, _, version = value.partition("=")
        if not name or not version.strip().isdigit():
            msg = f"--as-of {value!r}: expected SET=VERSION or SET@vN=VERSION, e.g. user_spend=12"
            raise TrainingSetError(msg)
        pins[name.strip()] = int(version)
    return pins


def _pin_versions(
    offline: DeltaOfflineStore, resolved: ResolvedFeatures, as_of: AsOf
) -> dict[str, int]:
    sets = [plan.feature_set for plan in resolved.plans]
    if isinstance(as_of, int) and len(sets) > 1:
        names = ", ".join(fs.qualified_name for fs in sets)
        msg = (
            f"as_of={as_of}: a bare version is ambiguous across {names}; give SET=VERSION for each"
        )
        raise TrainingSetError(msg)
    if isinstance(as_of, Mapping):
        known = {fs.name for fs in sets} | {fs.qualified_name for fs in sets}
        unknown = sorted(set(as_of) - known)
        if unknown:
            msg = f"as_of names {unknown}, which this retrieval does not read; it reads {sorted(known)}"
            raise TrainingSetError(msg)
    pinned = {}
    for fs in sets:
        at: datetime | int | None
        if isinstance(as_of, Mapping):
            at = as_of.get(fs.qualified_name, as_of.get(fs.name))
        else:
            at = as_of
        pinned[fs.qualified_name] = offline.version_at(fs, at)
    return pinned


def entities_path(name: str) -> str:
    """Where a saved training set's entity input is kept, below the offline location."""
    return f"_training_sets/{name}/entities.parquet"


def retrieve(
    offline: DeltaOfflineStore,
    catalog: Catalog,
    resolved: ResolvedFeatures,
    entity_table: pa.Table,
    *,
    timestamp_column: str = "event_timestamp",
    as_of: AsOf = None,
    save_as: str | None = None,
) -> pa.Table:
    """A point-in-time training set read at pinned table versions; saved if ``save_as``."""
    if save_as is not None:
        if not _NAME.match(save_as):
            msg = f"training set name {save_as!r}: use letters, digits, '_', '.', '-' (at most 128)"
            raise TrainingSetError(msg)
        if catalog.has_training_set(save_as):
            msg = f"a training set named {save_as!r} exists; choose another name (names are never reused)"
            raise TrainingSetError(msg)
    versions = _pin_versions(offline, resolved, as_of)
    result = get_historical_features(
        offline, resolved, entity_table, timestamp_column=timestamp_column, table_versions=versions
    )
    if save_as is not None:
        write_parquet(offline.location, entities_path(save_as), entity_table)
        catalog.save_training_set(
            TrainingSetRecord(
                name=save_as,
                features=resolved.pinned_refs,
                table_versions=versions,
                entity_fingerprint=fingerprint(entity_table),
                timestamp_column=timestamp_column,
                rows=result.num_rows,
                created_at_ms=time.time_ns() // 1_000_000,
                as_of=None
                if as_of is None
                else str(as_of if not isinstance(as_of, datetime) else as_of.isoformat()),
            )
        )
    return result


def rebuild(offline: DeltaOfflineStore, catalog: Catalog, name: str) -> pa.Table:
    """The saved training set ``name`` again, identical to the first retrieval.

    Raises:
        TrainingSetError: the kept entity input is gone or changed.
    """
    record = catalog.training_set(name)
    path = offline.location.uri(*entities_path(name).split("/"))
    entities = read_parquet(offline.location, entities_path(name))
    if entities is None:
        msg = f"training set {name!r}: its entity input {path} is missing; it cannot be rebuilt"
        raise TrainingSetError(msg)
    if fingerprint(entities) != record.entity_fingerprint:
        msg = (
            f"training set {name!r}: {path} no longer matches the fingerprint recorded at save time"
        )
        raise TrainingSetError(msg)
    resolved = resolve_features(catalog.definitions(include_retired=True), record.features)
    return get_historical_features(
        offline,
        resolved,
        entities,
        timestamp_column=record.timestamp_column,
        table_versions=record.table_versions,
    )
