"""Point-in-time retrieval: each label row gets its features as of its own timestamp.

Vectorised over the Delta history of each feature-set version: the history is sorted by
(entity, event time, arrival order) once, every window of every label row becomes a slice of
it (``serving.windows``), and each aggregation runs over all slices at once
(``serving.range_aggregations``). Values equal the online path's to the bit. Rows come back in
the caller's order and none is dropped: an entity with no history gets the empty-window
values.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from headwater.connectors.base import BaseOfflineStore
from headwater.schemas.avro_types import column as nested_column
from headwater.schemas.avro_types import top_field
from headwater.schemas.tiles import FeatureSetPlan
from headwater.schemas.window_specs import window_spec
from headwater.serving.errors import BadRequestError
from headwater.serving.features import ResolvedFeatures
from headwater.serving.historical_partitions import (
    PARTITION_ROWS,
    partitioned_features,
    parts_for,
)
from headwater.serving.range_aggregations import RangeColumn, aggregate_ranges, output_type
from headwater.serving.request_values import evaluate_request_column, request_table_columns
from headwater.serving.windows import sort_history, window_ranges

__all__ = [
    "column_names",
    "get_historical_features",
    "label_times_ms",
    "labels_from_history",
    "plan_features",
]


def label_times_ms(table: pa.Table, column: str) -> np.ndarray:
    """Label times as epoch ms from an int column (ms) or a tz-aware timestamp column."""
    if column not in table.column_names:
        msg = f"entity frame has no column {column!r}; add the label time there or pass timestamp_column="
        raise BadRequestError(msg)
    col = table.column(column)
    if pa.types.is_integer(col.type):
        values = pc.cast(col, pa.int64())
    elif pa.types.is_timestamp(col.type):
        if col.type.tz is None:
            msg = (
                f"column {column!r} holds timestamps without a time zone; make them tz-aware (UTC)"
            )
            raise BadRequestError(msg)
        # A label at 12:00:00.000999 sees the events of 12:00:00.000 and before: times finer
        # than ms are floored (pandas' Timestamp.now() carries micro- and nanoseconds).
        unit = col.type.unit
        raw = pc.fill_null(pc.cast(col, pa.int64()), 0).to_numpy(zero_copy_only=False)
        ms = raw * 1000 if unit == "s" else raw // {"ms": 1, "us": 1_000, "ns": 1_000_000}[unit]
        values = pa.array(ms, type=pa.int64(), mask=pc.is_null(col).to_numpy(zero_copy_only=False))
    else:
        msg = f"column {column!r} has type {col.type}; expected epoch milliseconds or tz-aware timestamps"
        raise BadRequestError(msg)
    if values.null_count:
        msg = f"column {column!r} has null label times; every row needs one"
        raise BadRequestError(msg)
    times: np.ndarray = values.to_numpy().astype(np.int64)
    return times


def column_names(resolved: ResolvedFeatures) -> list[str]:
    """Output column per requested feature: its name, qualified when two sets share it."""
    names = resolved.output_names()
    return [
        name if names.count(name) == 1 else f"{fs.name}_v{fs.version}__{name}"
        for name, fs in zip(names, resolved.output_sets(), strict=True)
    ]


def plan_features(
    plan: FeatureSetPlan,
    history: pa.Table,
    key_names: tuple[str, ...],
    labels: pa.Table,
    times: np.ndarray,
) -> list[pa.Array]:
    """Every feature of ``plan`` for every label row, in the labels' order."""
    # A field of a nested record (``address.city``) is read from its struct column; the
    # features' ``where`` conditions are computed over the history as the worker computes
    # them over each batch.
    history = plan.with_conditions(history)
    stored = list(dict.fromkeys(top_field(f) for f in plan.fields))
    ordered = sort_history(history, key_names, labels, stored)
    order = np.lexsort((times, ordered.label_key))
    inverse = np.empty_like(order)
    inverse[order] = np.arange(len(order))
    ranges = window_ranges(plan, ordered, ordered.label_key[order], times[order])
    fields = {f: nested_column(ordered.table, f) for f in plan.fields}
    columns: dict[tuple[str | None, str | None], RangeColumn] = {}
    out = []
    for feature, spec in zip(plan.feature_set.features, plan.specs, strict=True):
        key = (feature.field, spec.where)
        if key not in columns and (feature.field is not None or spec.where is not None):
            columns[key] = _range_column(plan, fields, feature.field, spec.where)
        column = columns.get(key)
        out_type = output_type(
            feature.function, column.type if column else None, column.avro_type if column else None
        )
        window = window_spec(plan.feature_set, feature)
        values = aggregate_ranges(feature, column, ranges.lo[window], ranges.ends[window], out_type)
        out.append(values.take(pa.array(inverse)))
    return out


def _range_column(
    plan: FeatureSetPlan,
    fields: Mapping[str, pa.ChunkedArray | pa.Array],
    field: str | None,
    where: str | None,
) -> RangeColumn:
    """The values a feature aggregates: its field (or, for a count of events, its condition),
    null wherever its condition is not true."""
    if field is None:
        assert where is not None
        condition = fields[where]
        return RangeColumn(pc.if_else(pc.fill_null(condition, False), True, None), "boolean")
    values = fields[field]
    if where is not None:
        keep = pc.fill_null(fields[where], False)
        values = pc.if_else(keep, values, pa.scalar(None, values.type))
    return RangeColumn(values, plan.field_types[field])


def get_historical_features(
    offline: BaseOfflineStore,
    resolved: ResolvedFeatures,
    entity_table: pa.Table,
    *,
    timestamp_column: str = "event_timestamp",
    table_versions: Mapping[str, int] | None = None,
    partition_rows: int = PARTITION_ROWS,
) -> pa.Table:
    """``entity_table`` with one column per requested feature, rows in the same order.

    A request-time feature is computed per label row from the row's request fields (the
    table's columns named like them) and the point-in-time values of the stored features it
    reads, by the same expression as online (``serving.request_values``).

    ``table_versions`` pins the Delta version read per feature-set qualified name
    (``set@vN``), for reproducible training sets. A history of more than ``partition_rows``
    rows is read in entity parts of about that size (``serving.historical_partitions``), so
    memory stays bounded; the values are the same.
    """
    times = label_times_ms(entity_table, timestamp_column)
    # Request fields are checked before any history is read: a missing one is the caller's.
    request = request_table_columns(resolved, entity_table)
    per_plan: list[list[pa.Array]] = []
    for plan, key_names in zip(resolved.plans, resolved.entity_keys, strict=True):
        missing = [k for k in key_names if k not in entity_table.column_names]
        if missing:
            msg = f"entity frame lacks key column(s) {missing} of feature set {plan.feature_set.name!r}"
            raise BadRequestError(msg)
        version = (table_versions or {}).get(plan.feature_set.qualified_name)
        needed = dict.fromkeys(
            [
                *key_names,
                "event_time_ms",
                "_partition",
                "_offset",
                *map(top_field, plan.stored_fields),
            ]
        )
        parts = parts_for(offline.history_rows(plan.feature_set, version), partition_rows)
        if parts > 1:
            per_plan.append(
                partitioned_features(
                    offline,
                    plan,
                    key_names,
                    entity_table,
                    times,
                    version=version,
                    columns=list(needed),
                    parts=parts,
                )
            )
            continue
        history = offline.history(plan.feature_set, version, columns=list(needed))
        per_plan.append(plan_features(plan, history, key_names, entity_table, times))
    stored = [per_plan[p][f] for p, f in resolved.columns]
    computed = [
        evaluate_request_column(
            column, entity_table.num_rows, request, [stored[c] for c in column.inputs]
        )
        for column in resolved.request_columns
    ]
    result = entity_table
    for name, (kind, index) in zip(column_names(resolved), resolved.outputs, strict=True):
        result = result.append_column(name, stored[index] if kind == "stored" else computed[index])
    return result


def labels_from_history(
    offline: BaseOfflineStore,
    resolved: ResolvedFeatures,
    *,
    start_ms: int | None = None,
    end_ms: int | None = None,
    at_ms: int | None = None,
    timestamp_column: str = "event_timestamp",
) -> pa.Table:
    """Label rows for retrieval without an entity frame.

    ``start_ms``/``end_ms``: one row per event in ``[start, end)`` of the requested feature
    sets (each entity's feature history, as of each of its events). ``at_ms``: one row per
    entity with an event at or before ``at`` (a snapshot). Sorted by time, then keys.
    """
    key_sets = set(resolved.entity_keys)
    if len(key_sets) != 1:
        msg = f"the features use different entity keys {sorted(key_sets)}; pass an entity frame instead"
        raise BadRequestError(msg)
    keys = list(resolved.entity_keys[0])
    if (at_ms is None) == (start_ms is None and end_ms is None):
        msg = (
            "give either start=/end= (the feature history) or at= (a snapshot), or an entity frame"
        )
        raise BadRequestError(msg)
    parts = []
    for plan in resolved.plans:
        history = offline.history(plan.feature_set, columns=[*keys, "event_time_ms"])
        e = history.column("event_time_ms")
        if at_ms is not None:
            history = history.filter(pc.less_equal(e, at_ms))
        else:
            mask = pc.and_(
                pc.greater_equal(e, start_ms if start_ms is not None else -(2**62)),
                pc.less(e, end_ms if end_ms is not None else 2**62),
            )
            history = history.filter(mask)
        parts.append(history.select([*keys, "event_time_ms"]))
    rows = pa.concat_tables(parts, promote_options="permissive")
    if at_ms is not None:
        distinct = rows.group_by(keys).aggregate([])
        rows = distinct.append_column(
            "event_time_ms", pa.array([at_ms] * distinct.num_rows, pa.int64())
        )
    rows = rows.sort_by([("event_time_ms", "ascending"), *((k, "ascending") for k in keys)])
    return rows.rename_columns([*keys, timestamp_column])
