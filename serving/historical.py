"""Point-in-time retrieval: each label row gets its features as of its own timestamp.

Built from the Delta history with the same ``FeatureSetPlan`` code the online path uses: per
entity, label rows are visited in time order while the entity's events are folded into its
state up to each label time, then the state is evaluated at that time. Rows come back in the
caller's order and none is dropped: an entity with no history gets the empty-window values.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from connectors.base import BaseOfflineStore
from schemas.tiles import EntityState, FeatureSetPlan, arrival_seq
from serving.errors import BadRequestError
from serving.features import ResolvedFeatures

__all__ = ["get_historical_features", "label_times_ms"]


def label_times_ms(table: pa.Table, column: str) -> list[int]:
    """Label times as epoch ms from an int column (ms) or a tz-aware timestamp column."""
    if column not in table.column_names:
        msg = f"entity frame has no column {column!r}; add the label time there or pass timestamp_column="
        raise BadRequestError(msg)
    col = table.column(column)
    if pa.types.is_integer(col.type):
        values = col.to_pylist()
    elif pa.types.is_timestamp(col.type):
        if col.type.tz is None:
            msg = f"column {column!r} holds timestamps without a time zone; make them tz-aware (UTC)"
            raise BadRequestError(msg)
        values = pc.cast(col.cast(pa.timestamp("ms", tz="UTC")), pa.int64()).to_pylist()
    else:
        msg = f"column {column!r} has type {col.type}; expected epoch milliseconds or tz-aware timestamps"
        raise BadRequestError(msg)
    values = [int(v) if v is not None else None for v in values]
    if any(v is None for v in values):
        msg = f"column {column!r} has null label times; every row needs one"
        raise BadRequestError(msg)
    return [v for v in values if v is not None]


def _column_names(resolved: ResolvedFeatures) -> list[str]:
    names = [resolved.plans[p].feature_set.features[f].name for p, f in resolved.columns]
    return [
        name if names.count(name) == 1 else f"{resolved.plans[p].feature_set.name}_v{resolved.plans[p].feature_set.version}__{name}"
        for name, (p, _) in zip(names, resolved.columns, strict=True)
    ]


def _values_for_plan(
    plan: FeatureSetPlan,
    history: pa.Table,
    key_names: Sequence[str],
    keys: Sequence[tuple[str, ...]],
    times: Sequence[int],
) -> list[list[Any]]:
    wanted = set(keys)
    by_entity: dict[tuple[str, ...], list[tuple[dict[str, Any], int, int]]] = defaultdict(list)
    key_columns = [history.column(k).to_pylist() for k in key_names]
    rows = history.select(list(plan.fields)).to_pylist() if plan.fields else [{}] * history.num_rows
    partitions = history.column("_partition").to_pylist()
    for i, (e, offset) in enumerate(
        zip(history.column("event_time_ms").to_pylist(), history.column("_offset").to_pylist(), strict=True)
    ):
        key = tuple(str(col[i]) for col in key_columns)
        if key in wanted:
            by_entity[key].append((rows[i], e, arrival_seq(partitions[i], offset)))
    order = sorted(range(len(keys)), key=lambda i: (keys[i], times[i]))
    out: list[list[Any]] = [[] for _ in keys]
    current: tuple[str, ...] | None = None
    state = EntityState()
    events: list[tuple[dict[str, Any], int, int]] = []
    position = 0
    for i in order:
        if keys[i] != current:
            current = keys[i]
            state = EntityState()
            events = sorted(by_entity.get(current, []), key=lambda ev: (ev[1], ev[2]))
            position = 0
        while position < len(events) and events[position][1] <= times[i]:
            row, e, seq = events[position]
            plan.fold(state, row, e, seq, keep_from=None)
            position += 1
        values, _ = plan.evaluate(state if state.newest is not None else None, times[i])
        out[i] = values
    return out


def get_historical_features(
    offline: BaseOfflineStore,
    resolved: ResolvedFeatures,
    entity_table: pa.Table,
    *,
    timestamp_column: str = "event_timestamp",
    table_versions: dict[str, int] | None = None,
) -> pa.Table:
    """``entity_table`` with one column per requested feature, rows in the same order."""
    times = label_times_ms(entity_table, timestamp_column)
    per_plan: list[list[list[Any]]] = []
    for plan, key_names in zip(resolved.plans, resolved.entity_keys, strict=True):
        missing = [k for k in key_names if k not in entity_table.column_names]
        if missing:
            msg = f"entity frame lacks key column(s) {missing} of feature set {plan.feature_set.name!r}"
            raise BadRequestError(msg)
        key_values = [entity_table.column(k).to_pylist() for k in key_names]
        keys = [tuple(str(col[i]) for col in key_values) for i in range(entity_table.num_rows)]
        version = (table_versions or {}).get(plan.feature_set.name)
        history = offline.history(plan.feature_set, version)
        per_plan.append(_values_for_plan(plan, history, key_names, keys, times))
    result = entity_table
    for name, (p, f) in zip(_column_names(resolved), resolved.columns, strict=True):
        column = [row[f] for row in per_plan[p]]
        result = result.append_column(name, pa.array(column))
    return result
