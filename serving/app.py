"""The HTTP API (FastAPI): online lookup and health. OpenAPI at ``/docs``."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import Depends, FastAPI, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field

from headwater.connectors.catalog import Catalog
from headwater.connectors.idempotency_redis import RedisIdempotency
from headwater.connectors.offline_delta import DeltaOfflineStore
from headwater.connectors.online_redis import RedisOnlineStore
from headwater.connectors.online_redis_async import AsyncRedisReader
from headwater.connectors.redis_timeouts import RedisTimeouts
from headwater.schemas.settings import Settings
from headwater.serving.audit_api import audit_router
from headwater.serving.auth import Guard, Principal, authorize_features
from headwater.serving.catalog_views import feature_set_summary, lineage, search_features
from headwater.serving.console_api import console_router
from headwater.serving.error_handlers import install_error_handlers
from headwater.serving.error_schema import ERROR_RESPONSES
from headwater.serving.errors import NotFoundError
from headwater.serving.fresh_definitions import FreshDefinitions
from headwater.serving.health import readiness
from headwater.serving.historical_api import historical_router
from headwater.serving.limits import BodyLimit
from headwater.serving.lookup_route import PATH, LeanLookups, OnlineLookups
from headwater.serving.metrics import instrument, watch_measures
from headwater.serving.monitoring_api import monitoring_router
from headwater.serving.push import push_router
from headwater.serving.registry import registry_router
from headwater.serving.request_guards import RequestGuards, trusted_hosts
from headwater.serving.response_log import ResponseLog

__all__ = ["create_app"]


class OnlineFeaturesRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    features: list[str] | None = Field(
        default=None, description="References like 'user_spend:spend_1h'"
    )
    feature_service: str | None = None
    entities: dict[str, list[Any]] = Field(description="Key column -> one value per entity")
    request: dict[str, Any] | None = Field(
        default=None,
        description="Request field -> one value per entity row, read by request-time features",
    )


def create_app(settings: Settings) -> FastAPI:
    """The FastAPI app; it reads the definitions the last ``headwater apply`` stored."""
    catalog = Catalog(settings.catalog_url)
    serving = settings.serving
    timeouts = RedisTimeouts(
        serving.redis_connect_timeout_seconds, serving.redis_read_timeout_seconds
    )
    store = RedisOnlineStore.from_settings(
        settings.redis, cache_entities=serving.online_cache_entities, timeouts=timeouts
    )
    reader = AsyncRedisReader(store, timeouts)
    definitions = FreshDefinitions(catalog, serving.definitions_max_age_seconds)
    response_log = (
        ResponseLog(
            settings.offline_location,
            sample_rate=settings.serving.log_sample_rate,
            flush_seconds=settings.serving.log_flush_seconds,
        )
        if settings.serving.log_sample_rate > 0
        else None
    )

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        guard.close()
        await reader.close()
        if response_log is not None:
            response_log.close()  # commit the responses still buffered

    guard = Guard(catalog, settings, definitions)
    app = FastAPI(
        title="Headwater",
        version="0.1.0",
        lifespan=lifespan,
        responses=ERROR_RESPONSES,
        dependencies=[Depends(guard)],
    )
    app.add_middleware(RequestGuards, hosts=trusted_hosts(settings))

    install_error_handlers(app, retry_after_s=serving.retry_after_seconds)
    app.add_middleware(
        BodyLimit,
        limit_of=lambda path: (
            serving.push_max_body_bytes if path.startswith("/v1/push/") else serving.max_body_bytes
        ),
    )

    lookups = OnlineLookups(
        definitions=definitions,
        reader=reader,
        guard=guard,
        max_entities=serving.online_max_entities,
        response_log=response_log,
    )

    @app.post(PATH)
    async def online_features(body: OnlineFeaturesRequest, request: Request) -> Response:
        # Reached by the lookups the lean path (serving.lookup_route) hands on: the same
        # handler, after FastAPI's own checks.
        principal: Principal | None = getattr(request.state, "principal", None)
        answer = await lookups.answer(
            principal, body.features, body.feature_service, body.entities, body.request
        )
        return Response(answer, media_type="application/json")

    offline = DeltaOfflineStore(settings.offline_location)
    # The subset of the Confluent Schema Registry API that standard Avro producers use.
    app.include_router(registry_router(catalog))
    app.include_router(
        push_router(
            catalog,
            settings.kafka,
            max_future_skew_ms=settings.max_future_skew_ms,
            max_events=settings.serving.push_max_events,
            max_body_bytes=settings.serving.push_max_body_bytes,
            idempotency=RedisIdempotency(
                reader, settings.redis.key_prefix, serving.idempotency_ttl_seconds
            ),
        )
    )
    app.include_router(
        historical_router(
            catalog,
            offline,
            max_rows=settings.serving.historical_max_rows,
            authorize=lambda request, resolved: authorize_features(guard, request, resolved),
        )
    )
    app.include_router(audit_router(catalog))
    app.include_router(
        monitoring_router(
            catalog,
            offline,
            settings,
            authorize=lambda request, resolved: authorize_features(guard, request, resolved),
        )
    )
    # The web console at /ui and the endpoints only it needs (serving.console_api).
    app.include_router(console_router(catalog, settings.kafka))
    instrument(app)
    watch_measures(settings.offline_location)
    # Outermost: the lookups it takes skip the stack above (serving.lookup_route).
    app.add_middleware(
        LeanLookups,
        lookups=lookups,
        guard=guard,
        hosts=trusted_hosts(settings),
        max_body_bytes=serving.max_body_bytes,
        retry_after_s=serving.retry_after_seconds,
    )

    @app.get("/v1/feature-sets")
    def feature_sets() -> list[dict[str, Any]]:
        return [feature_set_summary(fs) for fs in catalog.definitions().feature_sets]

    @app.get("/v1/feature-sets/{name}")
    def feature_set(name: str) -> dict[str, Any]:
        versions = catalog.feature_set_versions(name)
        if not versions:
            known = sorted({fs.name for fs in catalog.definitions().feature_sets})
            raise NotFoundError(f"unknown feature set {name!r}; known: {known}")
        latest_active = [fs for fs, status in versions if status == "active"]
        current = latest_active[-1] if latest_active else versions[-1][0]
        return {
            **feature_set_summary(current),
            "versions": [{"version": fs.version, "status": status} for fs, status in versions],
        }

    @app.get("/v1/features")
    def features(q: str = "") -> list[dict[str, Any]]:
        return search_features(catalog.definitions(), q)

    @app.get("/v1/lineage/{name}")
    def feature_lineage(name: str) -> dict[str, Any]:
        return lineage(catalog, offline, name, key_prefix=settings.redis.key_prefix)

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz")
    async def readyz() -> JSONResponse:
        checks = await readiness(reader, settings.kafka, catalog)
        ready = all(v == "ok" for v in checks.values())
        return JSONResponse(
            status_code=200 if ready else 503, content={"ready": ready, "checks": checks}
        )

    return app
