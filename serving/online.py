"""Online lookup: read tile states from Redis and evaluate features at the moment served.

``served_at`` is taken after the Redis read returns. Every event in the states read was
applied by a worker whose clock had passed the event's time, so no event from after
``served_at`` can be counted, and the values are exactly the DESIGN §4 values at
``served_at`` for the events that had arrived.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from headwater.connectors.base import BaseOnlineStore, EntityKey
from headwater.schemas.definitions import FeatureSet
from headwater.schemas.errors import EventError
from headwater.schemas.tiles import EntityState, Status
from headwater.serving.errors import BadRequestError, ErrorItem
from headwater.serving.features import ResolvedFeatures
from headwater.serving.request_values import (
    evaluate_request_column,
    typed_request,
    worst_status,
)

__all__ = ["OnlineResult", "Requests", "lookup", "lookup_async"]


@dataclass(frozen=True)
class OnlineResult:
    served_at_ms: int
    entities: list[dict[str, Any]]
    values: list[list[Any]]
    statuses: list[list[Status]]


def _entity_columns(resolved: ResolvedFeatures, entities: Mapping[str, Sequence[Any]]) -> int:
    needed = {k for keys in resolved.entity_keys for k in keys}
    missing = sorted(needed - set(entities))
    if missing:
        msg = f"entities: missing key column(s) {missing} needed by the requested features"
        reason = "missing: a key column of the requested features' entity"
        raise BadRequestError(msg, errors=[ErrorItem(f"entities.{k}", reason) for k in missing])
    lengths = {len(entities[k]) for k in needed}
    if len(lengths) > 1:
        msg = f"entities: key columns have different lengths {sorted(lengths)}; give one value per entity in each"
        raise BadRequestError(msg, field="entities")
    return lengths.pop() if lengths else 0


Requests = list[tuple[FeatureSet, list[EntityKey]]]
"""What one lookup reads: the entity keys per feature set, in request order."""


def lookup(
    store: BaseOnlineStore,
    resolved: ResolvedFeatures,
    entities: Mapping[str, Sequence[Any]],
    request: Mapping[str, Any] | None = None,
) -> OnlineResult:
    """Feature values and statuses per entity row, in request order.

    ``request``: the fields request-time features read, one value per entity row
    (``serving.request_values``); checked before anything is read.
    """
    rows, requests, typed = _requests(resolved, entities, request)
    return _result(resolved, entities, rows, store.read_many(requests), typed)


async def lookup_async(
    read_many: Callable[[Requests], Awaitable[list[list[EntityState | None]]]],
    resolved: ResolvedFeatures,
    entities: Mapping[str, Sequence[Any]],
    request: Mapping[str, Any] | None = None,
) -> OnlineResult:
    """``lookup`` with an awaited read (``AsyncRedisReader.read_many``), so the event loop
    serves other requests while Redis answers."""
    rows, requests, typed = _requests(resolved, entities, request)
    return _result(resolved, entities, rows, await read_many(requests), typed, reuse=True)


def _requests(
    resolved: ResolvedFeatures,
    entities: Mapping[str, Sequence[Any]],
    request: Mapping[str, Any] | None,
) -> tuple[int, Requests, dict[str, pa.Array]]:
    rows = _entity_columns(resolved, entities)
    if not resolved.plans and request:  # request features reading request fields only
        rows = max((len(v) for v in request.values() if isinstance(v, list)), default=0)
    typed = typed_request(resolved, request, rows)
    requests: Requests = []
    for plan, entity in zip(resolved.plans, resolved.entities, strict=True):
        try:
            entity_keys: list[EntityKey] = entity.keys_of_columns(
                [entities[k] for k in entity.keys]
            )
        except EventError as exc:
            field = f"entities.{exc.field}" if exc.field else "entities"
            raise BadRequestError(f"entities: {exc}", field=field) from None
        requests.append((plan.feature_set, entity_keys))
    return rows, requests, typed


def _result(
    resolved: ResolvedFeatures,
    entities: Mapping[str, Sequence[Any]],
    rows: int,
    per_plan: Sequence[Sequence[EntityState | None]],
    request: Mapping[str, pa.Array],
    *,
    reuse: bool = False,
) -> OnlineResult:
    served_at = time.time_ns() // 1_000_000
    values: list[list[Any]] = []
    statuses: list[list[Status]] = []
    # ``reuse``: the states come from the API's reader (decoded, never changed in place), so
    # their values are reused while an entity and the tile of the time served stay the same.
    evaluated = [
        [plan.evaluate(state, served_at, reuse=reuse) for state in states]
        for plan, states in zip(resolved.plans, per_plan, strict=True)
    ]
    computed = [
        evaluate_request_column(
            column,
            rows,
            request,
            [_stored_values(resolved, evaluated, c, rows) for c in column.inputs],
        ).to_pylist()
        for column in resolved.request_columns
    ]
    for i in range(rows):
        row_values, row_statuses = [], []
        for kind, index in resolved.outputs:
            if kind == "stored":
                plan_index, feature_index = resolved.columns[index]
                plan_values, status = evaluated[plan_index][i]
                row_values.append(plan_values[feature_index])
                row_statuses.append(status)
                continue
            row_values.append(computed[index][i])
            row_statuses.append(
                worst_status(
                    [
                        evaluated[resolved.columns[c][0]][i][1]
                        for c in resolved.request_columns[index].inputs
                    ]
                )
            )
        values.append(row_values)
        statuses.append(row_statuses)
    keys_used = sorted({k for keys in resolved.entity_keys for k in keys})
    return OnlineResult(
        served_at_ms=served_at,
        entities=[{k: entities[k][i] for k in keys_used} for i in range(rows)],
        values=values,
        statuses=statuses,
    )


def _stored_values(
    resolved: ResolvedFeatures, evaluated: Sequence[Sequence[Any]], column: int, rows: int
) -> list[Any]:
    """The values of stored column ``column`` on every row."""
    plan_index, feature_index = resolved.columns[column]
    return [evaluated[plan_index][i][0][feature_index] for i in range(rows)]
