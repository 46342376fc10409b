"""``POST /v1/push/{source}``: events over HTTP into a source's topic, all or nothing.

Every event of a request is validated against the source's Avro schema and event-time rules
before anything is produced (``serving.push_validation``); one bad event refuses the whole
request (422, one entry per problem). A valid request is produced in request order (keyed by
entity like ``headwater ingest``, Confluent wire format) and answered 202 only once Kafka
acknowledged every event (``connectors.kafka_async.AsyncProducer``: acks=all, idempotent).
Errors are answered by the app's one handler (``serving.errors``).
"""

from __future__ import annotations

import asyncio
import time

import orjson
from fastapi import APIRouter, Request
from fastapi.responses import Response

from headwater.connectors.catalog import Catalog, CatalogError
from headwater.connectors.errors import ProduceError, store_faults
from headwater.connectors.kafka_async import AsyncProducer
from headwater.schemas.definitions import Definitions
from headwater.schemas.settings import KafkaSettings
from headwater.serving.errors import (
    InvalidEventsError,
    NotFoundError,
    PayloadTooLargeError,
    UnavailableError,
)
from headwater.serving.push_validation import PushPlan, check_events, events_of_body, plan_push

__all__ = ["push_router"]


class _Plans:
    """The push plan of each source, rebuilt when the catalog's definitions change (checked
    at most every ``check_s``, not with a database query per request)."""

    def __init__(self, catalog: Catalog, check_s: float) -> None:
        self._catalog = catalog
        self._check_s = check_s
        self._defs: Definitions | None = None
        self._checked = 0.0
        self._plans: dict[str, PushPlan] = {}

    async def get(self, name: str) -> PushPlan:
        """The plan of ``name``: from memory while fresh, else read in a thread (the catalog
        is a synchronous database, which must not hold the event loop)."""
        plan = self._plans.get(name)
        if plan is not None and time.monotonic() - self._checked <= self._check_s:
            return plan
        return await asyncio.to_thread(self, name)

    def __call__(self, name: str) -> PushPlan:
        """Raises ``NotFoundError`` or ``UnknownNameError`` (404) for an unknown source."""
        now = time.monotonic()
        defs = self._defs
        if defs is None or now - self._checked > self._check_s or name not in self._plans:
            try:
                with store_faults("catalog", "reading the definitions", CatalogError):
                    defs = self._catalog.definitions()
            except CatalogError as exc:
                msg = f"unknown source {name!r}: {exc}"
                raise NotFoundError(msg) from None
            self._checked = now
            if defs is not self._defs:
                self._defs, self._plans = defs, {}
        plan = self._plans.get(name)
        if plan is None:
            source = defs.source(name)
            with store_faults("catalog", f"registering the schema of {name!r}"):
                schema_id = self._catalog.register_schema(source.subject, source.schema)
            plan = self._plans[name] = plan_push(source, defs.entity_of_source(name), schema_id)
        return plan


async def _read_body(request: Request, max_body_bytes: int) -> bytes:
    """The body, refused (413) as soon as it is known to exceed ``max_body_bytes``."""
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > max_body_bytes:
        msg = f"request body of {int(length)} bytes is over the limit of {max_body_bytes} bytes (max_body_bytes)"
        raise PayloadTooLargeError(msg)
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > max_body_bytes:
            msg = f"request body is over the limit of {max_body_bytes} bytes (max_body_bytes)"
            raise PayloadTooLargeError(msg)
        chunks.append(chunk)
    return b"".join(chunks)


def push_router(
    catalog: Catalog,
    kafka_settings: KafkaSettings,
    *,
    max_future_skew_ms: int,
    max_events: int = 10_000,
    max_body_bytes: int = 10 * 1024 * 1024,
    delivery_timeout_s: float = 5.0,
    retry_after_s: int = 5,
    linger_ms: float = 1.0,
    catalog_check_s: float = 1.0,
) -> APIRouter:
    """The push endpoint. ``delivery_timeout_s``: how long Kafka may take to acknowledge
    before the request is answered 503 (``Retry-After: retry_after_s``).

    Its errors are ``ServingError``s: the app answers them with ``install_error_handlers``.
    """
    router = APIRouter()
    producer = AsyncProducer(
        kafka_settings,
        delivery_timeout_s=delivery_timeout_s,
        linger_ms=linger_ms,
        name="push-producer",
    )
    plan_for = _Plans(catalog, catalog_check_s)

    @router.post(
        "/v1/push/{source}",
        status_code=202,
        responses={
            202: {"description": '{"accepted": n}: every event is acknowledged by Kafka'},
            404: {"description": "unknown source"},
            413: {"description": "too many events or body too large"},
            422: {"description": "some event is invalid; nothing was produced"},
            503: {"description": "Kafka unavailable; see Retry-After"},
        },
    )
    async def push(source: str, request: Request) -> Response:
        """Validate every event, produce them all in order, answer once Kafka acknowledged them.

        Body: ``{"events": [{...}, ...]}``.
        """
        plan = await plan_for.get(source)
        events = events_of_body(await _read_body(request, max_body_bytes), max_events=max_events)
        now_ms = time.time_ns() // 1_000_000
        records, problems = check_events(plan, events, now_ms, max_future_skew_ms)
        if problems:
            raise InvalidEventsError(problems, len(events))
        messages = plan.messages(records)
        try:
            await producer.produce_all(plan.source.topic, messages)
        except ProduceError as exc:
            msg = f"Kafka did not acknowledge the events: {exc}; nothing may be assumed written, retry later"
            raise UnavailableError(msg, headers={"Retry-After": str(retry_after_s)}) from None
        return Response(
            orjson.dumps({"accepted": len(messages)}),
            status_code=202,
            media_type="application/json",
        )

    router.add_event_handler("shutdown", producer.close)
    return router
