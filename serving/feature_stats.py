"""Statistics of what a feature set holds, what a model saw and what was served.

Three populations, one shape (:class:`Population`):

- ``history``: the offline history's fields (the source's raw and transformed fields), over
  a range of event days, merged from per-file partials (``serving.stats_history``);
- ``training_set``: the feature values of a saved training set (rebuilt bit for bit from
  its record), the columns of this feature set's features;
- ``served``: the feature values the API answered, from the sampled response log, over a
  range of serving days.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from headwater.connectors.catalog import Catalog, CatalogError
from headwater.connectors.offline_delta import DeltaOfflineStore
from headwater.schemas.definitions import FeatureSet
from headwater.serving.errors import BadRequestError, NotFoundError
from headwater.serving.response_log import read_response_log
from headwater.serving.stats_history import check_day, history_stats
from headwater.serving.stats_profile import (
    DISTINCT_RELATIVE_ERROR,
    QUANTILE_RANK_ERROR,
    ColumnProfile,
    profile_table,
)
from headwater.serving.training_sets import rebuild

__all__ = ["Population", "population", "stats_body"]


@dataclass
class Population:
    """The rows a statistic is about, profiled per column."""

    of: str
    """``history``, ``training_set`` or ``served``."""
    rows: int
    profiles: dict[str, ColumnProfile]
    describe: dict[str, Any] = field(default_factory=dict)
    """Which rows: ``{"of": ..., "start": ..., "end": ...}`` or ``{"of": ..., "name": ...}``."""


def population(
    catalog: Catalog,
    offline: DeltaOfflineStore,
    fs: FeatureSet,
    *,
    start: str | None = None,
    end: str | None = None,
    training_set: str | None = None,
    served: bool = False,
) -> Population:
    """The population asked for: a training set, the served values, or (default) history.

    Raises:
        NotFoundError: unknown training set, or no offline table yet.
        BadRequestError: a malformed date, or both a training set and ``served``.
    """
    if training_set is not None and served:
        msg = "ask for one population: training_set or served, not both"
        raise BadRequestError(msg, field="served")
    if training_set is not None:
        return _of_training_set(catalog, offline, fs, training_set)
    first, last = check_day(start, "start"), check_day(end, "end")
    if served:
        return _of_served(offline, fs, first, last)
    stats = history_stats(offline.location, fs, start=first, end=last)
    describe = {"of": "history", "start": first, "end": last}
    return Population("history", stats.rows, stats.profiles, describe)


def _of_training_set(
    catalog: Catalog, offline: DeltaOfflineStore, fs: FeatureSet, name: str
) -> Population:
    try:
        record = catalog.training_set(name)
    except CatalogError as exc:
        raise NotFoundError(str(exc), field="training_set") from None
    mine = [i for i, ref in enumerate(record.features) if ref.startswith(f"{fs.name}@v")]
    if not mine:
        msg = f"training set {name!r} has no feature of {fs.name!r}; it has {list(record.features)}"
        raise NotFoundError(msg, field="training_set")
    table = rebuild(offline, catalog, name)
    first_feature = table.num_columns - len(record.features)
    columns = [table.column_names[first_feature + i] for i in mine]
    profiles = profile_table(table.select(columns))
    return Population(
        "training_set", table.num_rows, profiles, {"of": "training_set", "name": name}
    )


def _of_served(
    offline: DeltaOfflineStore, fs: FeatureSet, first: str | None, last: str | None
) -> Population:
    rows = read_response_log(offline.location)
    days = rows.column("_served_date")
    if first is not None:
        rows = rows.filter(pc.greater_equal(days, first))
        days = rows.column("_served_date")
    if last is not None:
        rows = rows.filter(pc.less_equal(days, last))
    prefix = f"{fs.name}@v{fs.version}:"
    values: dict[str, list[Any]] = {}
    count = 0
    for features, served in zip(
        rows.column("features").to_pylist(), rows.column("values").to_pylist(), strict=True
    ):
        names, answer = json.loads(features), json.loads(served)
        hits = [
            (n.removeprefix(prefix), v)
            for n, v in zip(names, answer, strict=False)
            if n.startswith(prefix)
        ]
        if not hits:
            continue
        count += 1
        for name, value in hits:
            values.setdefault(name, []).append(value)
    columns = {name: _array(v) for name, v in values.items()}
    profiles = profile_table(pa.table(columns)) if columns else {}
    describe = {"of": "served", "start": first, "end": last}
    return Population("served", count, profiles, describe)


def _array(values: list[Any]) -> pa.Array:
    """Served values as one typed column; mixed values (``last`` of a union) as text."""
    try:
        return pa.array(values)
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        return pa.array([None if v is None else json.dumps(v) for v in values])


def stats_body(fs: FeatureSet, pop: Population) -> dict[str, Any]:
    """The JSON of ``/v1/stats/{feature_set}``."""
    return {
        "feature_set": fs.name,
        "version": fs.version,
        "of": pop.of,
        "start": pop.describe.get("start"),
        "end": pop.describe.get("end"),
        "name": pop.describe.get("name"),
        "rows": pop.rows,
        "accuracy": {
            "quantile_rank_error": QUANTILE_RANK_ERROR,
            "distinct_relative_error": DISTINCT_RELATIVE_ERROR,
        },
        "columns": [p.summary(name) for name, p in sorted(pop.profiles.items())],
    }
