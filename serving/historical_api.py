"""``POST /v1/historical-features``: point-in-time values for a few label rows over HTTP.

For small retrievals (a notebook without the SDK, a service checking a label); training sets
go through the SDK or ``headwater retrieve``, which have no row limit.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pyarrow as pa
from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field

from headwater.connectors.catalog import Catalog
from headwater.connectors.offline_delta import DeltaOfflineStore
from headwater.schemas.avro import event_time_ms
from headwater.schemas.errors import EventError
from headwater.serving.errors import BadRequestError, PayloadTooLargeError
from headwater.serving.features import ResolvedFeatures, resolve_features
from headwater.serving.historical import column_names, get_historical_features
from headwater.serving.limits import event_time_problem
from headwater.serving.request_values import typed_request

__all__ = ["historical_router"]


class HistoricalFeaturesRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    features: list[str] | None = Field(
        default=None, description="References like 'user_spend:spend_1h'"
    )
    feature_service: str | None = None
    entities: dict[str, list[Any]] = Field(
        description="Key columns, the label time column and the request fields of request-time features, one value per row; times as epoch ms or ISO-8601 with a zone"
    )
    timestamp_column: str = "event_timestamp"


def _epoch_ms(values: list[Any], column: str) -> list[int]:
    out = []
    for i, v in enumerate(values):
        field = f"entities.{column}[{i}]"
        try:
            ms = event_time_ms(v, field)
        except EventError as exc:
            raise BadRequestError(str(exc), field=exc.field) from exc
        problem = event_time_problem(ms)
        if problem is not None:
            raise BadRequestError(f"{field}: {problem}", field=field)
        out.append(ms)
    return out


def historical_router(
    catalog: Catalog,
    offline: DeltaOfflineStore,
    *,
    max_rows: int,
    authorize: Callable[[Request, ResolvedFeatures], None],
) -> APIRouter:
    """``authorize`` refuses features the caller may not read (``serving.auth``)."""
    router = APIRouter()

    @router.post("/v1/historical-features", response_model=None)
    def historical_features(body: HistoricalFeaturesRequest, request: Request) -> dict[str, Any]:
        column = body.timestamp_column
        if column not in body.entities:
            raise BadRequestError(
                f"entities: no label time column {column!r}; add it or set 'timestamp_column'",
                field=f"entities.{column}",
            )
        lengths = {len(v) for v in body.entities.values()}
        if len(lengths) > 1:
            raise BadRequestError(
                f"entities: columns have different lengths {sorted(lengths)}; give one value per row in each",
                field="entities",
            )
        rows = lengths.pop() if lengths else 0
        if rows > max_rows:
            detail = (
                f"{rows} label rows exceed serving.historical_max_rows={max_rows}; use the SDK "
                "(store.get_historical_features) or `headwater retrieve` for training sets"
            )
            raise PayloadTooLargeError(detail, field="entities")
        resolved = resolve_features(catalog.definitions(), body.features, body.feature_service)
        authorize(request, resolved)
        # Request fields of request-time features keep their JSON types (checked against
        # request_schema); every other column is a key, compared as text.
        fields = resolved.request_fields
        keys = {
            k: [str(v) for v in values]
            for k, values in body.entities.items()
            if k != column and k not in fields
        }
        typed = typed_request(
            resolved,
            {f: v for f, v in body.entities.items() if f in fields},
            rows,
            member="entities",
        )
        table = pa.table(
            {
                **keys,
                **typed,
                column: pa.array(_epoch_ms(body.entities[column], column), pa.int64()),
            }
        )
        result = get_historical_features(offline, resolved, table, timestamp_column=column)
        names = column_names(resolved)
        values = [result.column(n).to_pylist() for n in names]
        return {
            "features": list(resolved.refs),
            "results": [
                {
                    "entity": {k: body.entities[k][i] for k in keys},
                    **({"request": {f: body.entities[f][i] for f in typed}} if typed else {}),
                    column: body.entities[column][i],
                    "values": [v[i] for v in values],
                }
                for i in range(rows)
            ],
        }

    return router
