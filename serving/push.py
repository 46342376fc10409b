"""``POST /v1/push/{source}``: events over HTTP into a source's topic, all or nothing.

Every event of a request is validated against the source's Avro schema and event-time rules
before anything is produced; one bad event refuses the whole request (422, one entry per
problem). A valid request is produced in request order (keyed by entity like
``headwater ingest``, Confluent wire format) and answered 202 only once Kafka acknowledged
every event (acks=all, idempotent producer).

Delivery is awaited without blocking the event loop: each message's delivery callback runs
on a background thread that polls the one shared producer, and resolves the request's
asyncio future through ``loop.call_soon_threadsafe`` once its last message is acknowledged.
"""

from __future__ import annotations

import asyncio
import io
import struct
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import fastavro
import fastavro.validation
import orjson
from confluent_kafka import KafkaError, KafkaException, Message, Producer
from fastapi import APIRouter, Request
from fastapi.responses import Response

from headwater.connectors.kafka import producer_config
from headwater.schemas.avro import WIRE_MAGIC, event_time_ms
from headwater.schemas.avro_inputs import physicaliser
from headwater.schemas.avro_types import AvroValueError, physical_schema
from headwater.schemas.catalog import Catalog, CatalogError
from headwater.schemas.definitions import Definitions, Entity, Source
from headwater.schemas.errors import EventError
from headwater.schemas.settings import KafkaSettings

__all__ = ["PushError", "push_router", "validate_events"]

_HEADER = struct.Struct(">bI")
_INT32 = (-(2**31), 2**31 - 1)
_INT64 = (-(2**63), 2**63 - 1)
_MISSING = object()


@dataclass(frozen=True, slots=True)
class PushError:
    """One problem of one event: its index in the request, the field (None: the whole event)."""

    index: int
    field: str | None
    reason: str

    def as_dict(self) -> dict[str, Any]:
        return {"index": self.index, "field": self.field, "reason": self.reason}


# --- validation (pure) ---------------------------------------------------------------------

_Check = Callable[[Any], str | None]


def _int_check(bounds: tuple[int, int], avro: str) -> _Check:
    low, high = bounds

    def check(v: Any) -> str | None:
        if type(v) is not int:  # bool is an int subclass: refused
            return f"expected an integer ({avro}), got {_describe(v)}"
        if not low <= v <= high:
            return f"{v} does not fit Avro {avro} ({low}..{high})"
        return None

    return check


def _float_check(v: Any) -> str | None:
    if type(v) is float or type(v) is int:
        return None
    return f"expected a number, got {_describe(v)}"


def _str_check(v: Any) -> str | None:
    return None if type(v) is str else f"expected a string, got {_describe(v)}"


def _bool_check(v: Any) -> str | None:
    return None if type(v) is bool else f"expected a boolean (true/false), got {_describe(v)}"


def _describe(v: Any) -> str:
    if v is None:
        return "null"
    kind = {
        bool: "boolean",
        int: "integer",
        float: "number",
        str: "string",
        list: "array",
        dict: "object",
    }
    text = repr(v)
    return f"{kind.get(type(v), type(v).__name__)} {text if len(text) <= 40 else text[:37] + '...'}"


def _generic_check(avro_type: Any) -> _Check:
    """fastavro's validation for the types without a fast path (records, arrays, enums...)."""
    try:
        parsed = fastavro.parse_schema(avro_type)
    except Exception:  # noqa: BLE001 - a named reference we cannot resolve alone: let encoding judge
        return lambda v: None

    def check(v: Any) -> str | None:
        try:
            ok = fastavro.validation.validate(v, parsed, raise_errors=False)
        except Exception as exc:  # noqa: BLE001 - any failure is a refusal of this value
            return f"does not match Avro type {avro_type}: {exc}"
        return (
            None
            if ok
            else f"{_describe(v)} does not match Avro type {orjson.dumps(avro_type).decode()}"
        )

    return check


_FAST: dict[str, _Check] = {
    "int": _int_check(_INT32, "int"),
    "long": _int_check(_INT64, "long"),
    "double": _float_check,
    "float": _float_check,
    "string": _str_check,
    "boolean": _bool_check,
}


def _field_check(avro_type: Any) -> tuple[_Check, bool]:
    """(check of a non-null value, whether null is allowed)."""
    nullable = False
    inner = avro_type
    if isinstance(avro_type, list):
        nullable = "null" in avro_type
        rest = [t for t in avro_type if t != "null"]
        if len(rest) != 1:
            return _generic_check(avro_type), nullable
        inner = rest[0]
    if isinstance(inner, str) and inner in _FAST:
        return _FAST[inner], nullable
    if isinstance(inner, dict) and inner.get("type") in _FAST and "logicalType" not in inner:
        return _FAST[inner["type"]], nullable
    if inner == "null":
        return (lambda v: f"expected null, got {_describe(v)}"), True
    return _generic_check(inner), nullable


@dataclass(frozen=True)
class _FieldRule:
    name: str
    check: _Check
    nullable: bool
    default: Any  # _MISSING when the schema gives none
    convert: Callable[[Any], Any] | None = None
    """Natural JSON value -> physical Avro value (logical types, bytes, records...); its
    ``AvroValueError`` names the problem. ``check`` then judges the physical value."""


@dataclass(frozen=True)
class _Plan:
    """What pushing to one source needs, computed once per catalog version."""

    source: Source
    rules: tuple[_FieldRule, ...]
    names: frozenset[str]
    timestamp: str
    timestamp_scale: (
        int | None
    )  # ms -> stored unit (1, 1000); None: keep the value as given (string field)
    entity: Entity | None
    """Keys the messages (``Definitions.entity_of_source``); ``None``: no key."""
    schema_id: int
    header: bytes
    naive_is_utc: bool = False
    """The event time is a local-timestamp: a time without a zone is read as UTC."""


def _plan(source: Source, entity: Entity | None, schema_id: int) -> _Plan:
    rules = []
    forms = source.schema.forms
    for f in source.schema.definition["fields"]:
        check, nullable = _field_check(physical_schema(f["type"]))
        convert = physicaliser(forms[f["name"]])
        rules.append(_FieldRule(f["name"], check, nullable, f.get("default", _MISSING), convert))
    ts_form = forms[source.timestamp]
    # ms -> the stored unit; a string event time is kept as given.
    scale = None if ts_form.kind == "string" else ts_form.unit
    return _Plan(
        source=source,
        rules=tuple(rules),
        names=frozenset(r.name for r in rules),
        timestamp=source.timestamp,
        timestamp_scale=scale,
        entity=entity,
        schema_id=schema_id,
        header=_HEADER.pack(WIRE_MAGIC, schema_id),
        naive_is_utc=ts_form.local,
    )


def validate_events(
    source: Source,
    events: Sequence[Any],
    *,
    now_ms: int,
    max_future_skew_ms: int,
    _plan_cache: _Plan | None = None,
) -> tuple[list[dict[str, Any]], list[PushError]]:
    """Check every event against the source's schema and time rules.

    Returns ``(records, errors)``: the records ready to encode, in request order (the event
    time converted to the schema's unit), and every problem found, by event index then field
    order. A caller produces the records only when ``errors`` is empty.
    """
    plan = _plan_cache or _plan(source, None, 0)
    return _validate(plan, events, now_ms, max_future_skew_ms)


def _validate(
    plan: _Plan, events: Sequence[Any], now_ms: int, max_future_skew_ms: int
) -> tuple[list[dict[str, Any]], list[PushError]]:
    records: list[dict[str, Any]] = []
    errors: list[PushError] = []
    latest = now_ms + max_future_skew_ms
    ts_name = plan.timestamp
    for i, event in enumerate(events):
        if type(event) is not dict:
            errors.append(
                PushError(i, None, f"an event must be a JSON object, got {_describe(event)}")
            )
            continue
        record: dict[str, Any] = {}
        before = len(errors)
        for rule in plan.rules:
            name = rule.name
            value = event.get(name, _MISSING)
            if name == ts_name:
                try:
                    ms = event_time_ms(
                        None if value is _MISSING else value, name, naive_is_utc=plan.naive_is_utc
                    )
                except EventError as exc:
                    errors.append(PushError(i, name, str(exc)))
                    continue
                if ms > latest:
                    errors.append(
                        PushError(
                            i,
                            name,
                            f"event time {ms} is {ms - now_ms} ms after now; at most "
                            f"{max_future_skew_ms} ms in the future is accepted (max_future_skew_ms)",
                        )
                    )
                    continue
                scale = plan.timestamp_scale
                record[name] = value if scale is None else ms * scale
                continue
            if value is _MISSING:
                if rule.default is not _MISSING:
                    record[name] = rule.default
                elif rule.nullable:
                    record[name] = None
                else:
                    errors.append(PushError(i, name, "required field is missing"))
                continue
            if value is None:
                if rule.nullable:
                    record[name] = None
                else:
                    errors.append(
                        PushError(i, name, "null is not allowed: the field is not nullable")
                    )
                continue
            if rule.convert is not None:
                try:
                    value = rule.convert(value)
                except AvroValueError as exc:
                    path = f"{name}.{exc.path}" if exc.path else name
                    errors.append(PushError(i, path, exc.reason))
                    continue
            problem = rule.check(value)
            if problem is not None:
                errors.append(PushError(i, name, problem))
                continue
            record[name] = value
        if not plan.names.issuperset(event):
            for name in event:
                if name not in plan.names:
                    errors.append(
                        PushError(
                            i,
                            name,
                            f"unknown field; schema {plan.source.schema.name!r} has {sorted(plan.names)}",
                        )
                    )
        if len(errors) == before:
            records.append(record)
    return records, errors


# --- producing -----------------------------------------------------------------------------


class _Delivery:
    """The messages of one request; resolves ``future`` when all are acknowledged or one failed."""

    __slots__ = ("error", "fatal", "future", "loop", "remaining")

    def __init__(self, loop: asyncio.AbstractEventLoop, count: int) -> None:
        self.loop = loop
        self.future: asyncio.Future[None] = loop.create_future()
        self.remaining = count
        self.error: str | None = None
        self.fatal = False

    def on_delivery(self, err: KafkaError | None, msg: Message) -> None:  # on the poll thread
        if err is not None:
            if err.fatal():
                self.fatal = True
            if self.error is None:
                self.error = err.str()
                self.loop.call_soon_threadsafe(self._done)
            return
        self.remaining -= 1
        if self.remaining == 0 and self.error is None:
            self.loop.call_soon_threadsafe(self._done)

    def _done(self) -> None:
        if not self.future.done():
            self.future.set_result(None)


class _AsyncProducer:
    """One idempotent acks=all producer per app, polled by a daemon thread."""

    def __init__(
        self, kafka: KafkaSettings, *, delivery_timeout_s: float, linger_ms: float
    ) -> None:
        self._config = producer_config(
            kafka, delivery_timeout_s=delivery_timeout_s, linger_ms=linger_ms
        )
        self.delivery_timeout_s = delivery_timeout_s
        self._producer: Producer | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def get(self) -> Producer:
        producer = self._producer
        if producer is None:
            with self._lock:
                if self._producer is None:
                    self._producer = Producer(self._config)
                    self._thread = threading.Thread(
                        target=self._poll,
                        args=(self._producer, self._stop),
                        name="push-producer-poll",
                        daemon=True,
                    )
                    self._thread.start()
                producer = self._producer
        return producer

    def reset(self, broken: Producer) -> None:
        """Drop a producer that hit a fatal error (idempotence state lost); the next request makes a new one."""
        with self._lock:
            if self._producer is broken:
                self._producer = None
                self._stop.set()
                self._stop = threading.Event()

    @staticmethod
    def _poll(producer: Producer, stop: threading.Event) -> None:
        # The only thread that serves delivery callbacks, so a request's counter needs no lock.
        while not stop.is_set():
            producer.poll(0.05)

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        if self._producer is not None:
            self._producer.flush(5)


# --- HTTP ----------------------------------------------------------------------------------


class _HTTPError(Exception):
    def __init__(
        self, status: int, body: dict[str, Any], headers: Mapping[str, str] | None = None
    ) -> None:
        super().__init__(body.get("detail"))
        self.status = status
        self.body = body
        self.headers = dict(headers or {})


def _json(status: int, body: Any, headers: Mapping[str, str] | None = None) -> Response:
    return Response(
        orjson.dumps(body), status_code=status, media_type="application/json", headers=headers
    )


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
    before the request is answered 503 (``Retry-After: retry_after_s``)."""
    router = APIRouter()
    producer = _AsyncProducer(
        kafka_settings, delivery_timeout_s=delivery_timeout_s, linger_ms=linger_ms
    )
    state: dict[str, Any] = {"defs": None, "checked": 0.0, "plans": {}}

    def plan_for(name: str) -> _Plan:
        now = time.monotonic()
        if (
            state["defs"] is None
            or now - state["checked"] > catalog_check_s
            or name not in state["plans"]
        ):
            try:
                defs: Definitions = catalog.definitions()
            except CatalogError as exc:
                raise _HTTPError(404, {"detail": f"unknown source {name!r}: {exc}"}) from None
            state["checked"] = now
            if defs is not state["defs"]:
                state["defs"], state["plans"] = defs, {}
        plans: dict[str, _Plan] = state["plans"]
        plan = plans.get(name)
        if plan is None:
            defs = state["defs"]
            try:
                source = defs.source(name)
            except KeyError:
                known = sorted(s.name for s in defs.sources)
                raise _HTTPError(
                    404, {"detail": f"unknown source {name!r}; known sources: {known}"}
                ) from None
            schema_id = catalog.register_schema(source.subject, source.schema)
            plan = plans[name] = _plan(source, defs.entity_of_source(name), schema_id)
        return plan

    async def read_body(request: Request) -> bytes:
        length = request.headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > max_body_bytes:
            raise _HTTPError(
                413,
                {
                    "detail": f"request body of {int(length)} bytes is over the limit of {max_body_bytes} bytes (max_body_bytes)"
                },
            )
        chunks: list[bytes] = []
        size = 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > max_body_bytes:
                raise _HTTPError(
                    413,
                    {
                        "detail": f"request body is over the limit of {max_body_bytes} bytes (max_body_bytes)"
                    },
                )
            chunks.append(chunk)
        return b"".join(chunks)

    def unavailable(reason: str) -> _HTTPError:
        return _HTTPError(
            503,
            {
                "detail": f"Kafka did not acknowledge the events: {reason}; nothing may be assumed written, retry later"
            },
            {"Retry-After": str(retry_after_s)},
        )

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
        try:
            plan = plan_for(source)
            raw = await read_body(request)
            try:
                body = orjson.loads(raw)
            except orjson.JSONDecodeError as exc:
                raise _HTTPError(
                    422, {"detail": f"body is not valid JSON: {exc}", "errors": []}
                ) from None
            events = body.get("events") if type(body) is dict else None
            if type(events) is not list or (type(body) is dict and len(body) != 1):
                raise _HTTPError(
                    422,
                    {
                        "detail": 'body must be a JSON object {"events": [{...}, ...]} and nothing else',
                        "errors": [],
                    },
                )
            if len(events) > max_events:
                raise _HTTPError(
                    413,
                    {
                        "detail": f"{len(events)} events is over the limit of {max_events} per request (max_events)"
                    },
                )
            now_ms = time.time_ns() // 1_000_000
            records, errors = _validate(plan, events, now_ms, max_future_skew_ms)
            if errors:
                bad = len({e.index for e in errors})
                raise _HTTPError(
                    422,
                    {
                        "detail": f"{bad} of {len(events)} event(s) are invalid; nothing was accepted",
                        "errors": [e.as_dict() for e in errors],
                    },
                )
            encoded = _encode(plan, records)
            if not encoded:
                return _json(202, {"accepted": 0})
            await _produce(plan.source.topic, encoded)
            return _json(202, {"accepted": len(encoded)})
        except _HTTPError as exc:
            return _json(exc.status, exc.body, exc.headers)

    def _encode(plan: _Plan, records: list[dict[str, Any]]) -> list[tuple[bytes, bytes]]:
        parsed = plan.source.schema.parsed
        entity = plan.entity
        out = []
        buf = io.BytesIO()
        for i, record in enumerate(records):
            buf.seek(0)
            buf.truncate()
            buf.write(plan.header)
            try:
                fastavro.schemaless_writer(buf, parsed, record)
            except (ValueError, TypeError, AttributeError, KeyError) as exc:
                raise _HTTPError(
                    422,
                    {
                        "detail": "an event does not match the schema; nothing was accepted",
                        "errors": [
                            PushError(
                                i,
                                None,
                                f"cannot encode with schema {plan.source.schema.name!r}: {exc}",
                            ).as_dict()
                        ],
                    },
                ) from None
            try:
                key = entity.message_key(record) if entity else b""
            except EventError as exc:
                raise _HTTPError(
                    422,
                    {
                        "detail": "an event's entity key is invalid; nothing was accepted",
                        "errors": [PushError(i, exc.field, str(exc)).as_dict()],
                    },
                ) from None
            out.append((key, buf.getvalue()))
        return out

    async def _produce(topic: str, messages: list[tuple[bytes, bytes]]) -> None:
        loop = asyncio.get_running_loop()
        try:
            kafka = producer.get()
        except Exception as exc:  # noqa: BLE001 - client creation failure is an unavailable Kafka
            raise unavailable(str(exc)) from None
        delivery = _Delivery(loop, len(messages))
        callback = delivery.on_delivery
        deadline = loop.time() + producer.delivery_timeout_s
        for key, value in messages:
            while True:
                try:
                    kafka.produce(topic, value, key or None, on_delivery=callback)
                    break
                except BufferError:
                    if loop.time() > deadline:
                        raise unavailable("the producer's local queue stayed full") from None
                    await asyncio.sleep(0.01)
                except KafkaException as exc:  # unknown topic, fatal producer error
                    error = (
                        exc.args[0] if exc.args and isinstance(exc.args[0], KafkaError) else None
                    )
                    if error is not None and error.fatal():
                        producer.reset(kafka)
                    raise unavailable(str(exc)) from None
        try:
            await asyncio.wait_for(asyncio.shield(delivery.future), producer.delivery_timeout_s + 2)
        except TimeoutError:
            raise unavailable(
                f"no acknowledgement within {producer.delivery_timeout_s + 2:g} s"
            ) from None
        if delivery.error is not None:
            if delivery.fatal:
                producer.reset(kafka)
            raise unavailable(delivery.error)

    router.add_event_handler("shutdown", producer.close)
    return router
