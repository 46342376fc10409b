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

from headwater.connectors.base import BaseOnlineStore, EntityKey
from headwater.schemas.definitions import FeatureSet
from headwater.schemas.errors import EventError
from headwater.schemas.tiles import EntityState, Status
from headwater.serving.errors import BadRequestError, ErrorItem
from headwater.serving.features import ResolvedFeatures

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
    store: BaseOnlineStore, resolved: ResolvedFeatures, entities: Mapping[str, Sequence[Any]]
) -> OnlineResult:
    """Feature values and statuses per entity row, in request order."""
    rows, requests = _requests(resolved, entities)
    return _result(resolved, entities, rows, store.read_many(requests))


async def lookup_async(
    read_many: Callable[[Requests], Awaitable[list[list[EntityState | None]]]],
    resolved: ResolvedFeatures,
    entities: Mapping[str, Sequence[Any]],
) -> OnlineResult:
    """``lookup`` with an awaited read (``AsyncRedisReader.read_many``), so the event loop
    serves other requests while Redis answers."""
    rows, requests = _requests(resolved, entities)
    return _result(resolved, entities, rows, await read_many(requests), reuse=True)


def _requests(
    resolved: ResolvedFeatures, entities: Mapping[str, Sequence[Any]]
) -> tuple[int, Requests]:
    rows = _entity_columns(resolved, entities)
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
    return rows, requests


def _result(
    resolved: ResolvedFeatures,
    entities: Mapping[str, Sequence[Any]],
    rows: int,
    per_plan: Sequence[Sequence[EntityState | None]],
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
    for i in range(rows):
        row_values, row_statuses = [], []
        for plan_index, feature_index in resolved.columns:
            plan_values, status = evaluated[plan_index][i]
            row_values.append(plan_values[feature_index])
            row_statuses.append(status)
        values.append(row_values)
        statuses.append(row_statuses)
    keys_used = sorted({k for keys in resolved.entity_keys for k in keys})
    return OnlineResult(
        served_at_ms=served_at,
        entities=[{k: entities[k][i] for k in keys_used} for i in range(rows)],
        values=values,
        statuses=statuses,
    )
