"""``POST /v1/push/{source}``: events over HTTP into a source's topic, all or nothing.

Every event of a request is validated against the source's Avro schema and event-time rules
before anything is produced (``serving.push_validation``); one bad event refuses the whole
request (422, one entry per problem). A valid request is produced in request order (keyed by
entity like ``headwater ingest``, Confluent wire format) inside a Kafka transaction
(``connectors.kafka_transactions``), and answered 202 once that transaction is committed. A
503 means the transaction was aborted: none of the request's events will ever be processed
(workers read committed messages only), so a retry never counts an event twice.

An ``Idempotency-Key`` header makes a retry of an answered request return the first answer
instead of producing again (``connectors.idempotency_redis``): per caller and source, for
``serving.idempotency_ttl_seconds``. Errors are answered by the app's one handler
(``serving.errors``).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Header, Request
from fastapi.responses import Response

from headwater.connectors.catalog import Catalog, CatalogError
from headwater.connectors.errors import OnlineStoreError, ProduceError, store_faults
from headwater.connectors.idempotency_redis import RedisIdempotency
from headwater.connectors.kafka_transactions import (
    ProduceOutcomeUnknownError,
    TransactionalProducer,
)
from headwater.schemas.definitions import Definitions
from headwater.schemas.settings import KafkaSettings
from headwater.serving.errors import (
    BadRequestError,
    ConflictError,
    InvalidEventsError,
    NotFoundError,
    OutcomeUnknownError,
    PayloadTooLargeError,
    UnavailableError,
)
from headwater.serving.push_validation import PushPlan, check_events, events_of_body, plan_push

__all__ = ["caller_of", "push_router"]

log = logging.getLogger(__name__)


def caller_of(request: Request) -> str:
    """Who sent ``request``, as far as idempotency keys are concerned: a hash of the
    credential it carried (``Authorization`` or ``X-API-Key``), empty without one. Two
    callers using the same Idempotency-Key never get each other's answers."""
    credential = request.headers.get("authorization") or request.headers.get("x-api-key") or ""
    return hashlib.sha256(credential.encode()).hexdigest() if credential else ""


def _json(status: int, payload: dict[str, Any]) -> Response:
    return Response(orjson.dumps(payload), status_code=status, media_type="application/json")


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
    idempotency: RedisIdempotency | None = None,
) -> APIRouter:
    """The push endpoint. ``delivery_timeout_s``: how long Kafka may take to acknowledge
    before the request is answered 503 (``Retry-After: retry_after_s``). Without
    ``idempotency``, an ``Idempotency-Key`` header is refused (422).

    Its errors are ``ServingError``s: the app answers them with ``install_error_handlers``.
    """
    router = APIRouter()
    producer = TransactionalProducer(
        kafka_settings, delivery_timeout_s=delivery_timeout_s, linger_ms=linger_ms, name="push"
    )
    plan_for = _Plans(catalog, catalog_check_s)
    retry = {"Retry-After": str(retry_after_s)}

    async def produce(topic: str, messages: list[tuple[bytes, bytes]]) -> Response:
        try:
            await producer.produce_all(topic, messages)
        except ProduceOutcomeUnknownError as exc:
            # The cause (with the broker's address) goes to the log, not to the client.
            log.warning("push to %s: outcome unknown: %s", topic, exc)
            msg = (
                "Kafka did not confirm the events' transaction: they may or may not be "
                "written; retry with the same Idempotency-Key"
            )
            raise OutcomeUnknownError(msg, headers=retry) from None
        except ProduceError as exc:
            log.warning("push to %s: refused, nothing written: %s", topic, exc)
            msg = "Kafka did not take the events; none of them was written, retry later"
            raise UnavailableError(msg, headers=retry) from None
        return _json(202, {"accepted": len(messages)})

    @router.post(
        "/v1/push/{source}",
        status_code=202,
        responses={
            202: {"description": '{"accepted": n}: every event is acknowledged by Kafka'},
            404: {"description": "unknown source"},
            413: {"description": "too many events or body too large"},
            422: {"description": "some event is invalid; nothing was produced"},
            409: {"description": "a request with this Idempotency-Key is still in flight"},
            503: {"description": "Kafka unavailable, nothing was written; see Retry-After"},
            504: {"description": "Kafka did not confirm the transaction; outcome unknown"},
        },
    )
    async def push(
        source: str,
        request: Request,
        idempotency_key: Annotated[
            str | None,
            Header(
                max_length=255,
                pattern=r"^[\x21-\x7e]+$",
                description="Retries with the same key get the first answer",
            ),
        ] = None,
    ) -> Response:
        """Validate every event, produce them all in order in one Kafka transaction, answer
        once it is committed.

        Body: ``{"events": [{...}, ...]}``.
        """
        plan = await plan_for.get(source)
        raw = await _read_body(request, max_body_bytes)
        events = events_of_body(raw, max_events=max_events)
        now_ms = time.time_ns() // 1_000_000
        messages = plan.native_messages(events, now_ms, max_future_skew_ms)
        if messages is None:
            records, problems = check_events(plan, events, now_ms, max_future_skew_ms)
            if problems:
                raise InvalidEventsError(problems, len(events))
            messages = plan.messages(records)
        if idempotency_key is None:
            return await produce(plan.source.topic, messages)
        if idempotency is None:
            msg = "Idempotency-Key is not supported by this server"
            raise BadRequestError(msg, field="Idempotency-Key")
        key = idempotency.key(source, caller_of(request), idempotency_key)
        fingerprint = hashlib.sha256(raw).hexdigest()
        claim = await idempotency.claim(key, fingerprint)
        if claim.state == "replay":
            return Response(
                claim.body,
                status_code=claim.status,
                media_type="application/json",
                headers={"Idempotent-Replayed": "true"},
            )
        if claim.state == "in_flight":
            msg = "a request with this Idempotency-Key is still being processed; retry shortly"
            raise ConflictError(msg, field="Idempotency-Key", headers={"Retry-After": "1"})
        if claim.state == "mismatch":
            msg = "this Idempotency-Key was used with another request body; use a new key"
            raise BadRequestError(msg, field="Idempotency-Key")
        try:
            response = await produce(plan.source.topic, messages)
        except UnavailableError:
            await idempotency.release(key)  # nothing was written: the retry must run
            raise
        except OutcomeUnknownError:
            raise  # the key stays in flight until it expires: a retry cannot duplicate
        try:
            await idempotency.complete(key, fingerprint, response.status_code, bytes(response.body))
        except OnlineStoreError as exc:  # the events are written: the answer is still 202
            log.warning(
                "push to %s: the answer of an Idempotency-Key was not kept: %s", source, exc
            )
        return response

    router.add_event_handler("shutdown", producer.close)
    return router
