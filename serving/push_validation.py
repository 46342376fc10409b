"""What a push request must hold, and its events turned into Kafka messages (pure, no I/O).

Every event is checked against the source's Avro schema and event-time rules; every problem
is reported (``ErrorItem`` with the event's index, the field and the reason) so one answer
tells the client all it must fix. The records that pass are ready to encode: values in their
physical Avro form, the event time in the schema's unit. ``PushPlan.messages`` encodes them
(``schemas.avro.WireEncoder``) and keys them by entity (``Entity.message_key``), exactly as
``headwater ingest`` does.

The common types (int, long, double, string, boolean, nullable unions of one of those) have
hand-written checks: fastavro's generic validation costs several times more per event, and
the endpoint's throughput is mostly this loop. Other types fall back to fastavro's.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import fastavro
import fastavro.validation
import orjson

from headwater.schemas.avro import WireEncoder, event_time_ms
from headwater.schemas.avro_inputs import physicaliser
from headwater.schemas.avro_types import AvroValueError, physical_schema
from headwater.schemas.definitions import Entity, Source
from headwater.schemas.errors import EventError
from headwater.schemas.native import extension
from headwater.serving.errors import (
    BadRequestError,
    ErrorItem,
    InvalidEventsError,
    PayloadTooLargeError,
)
from headwater.serving.limits import EVENT_TIME_MAX_MS, EVENT_TIME_MIN_MS, event_time_problem

__all__ = ["PushPlan", "check_events", "events_of_body", "plan_push", "validate_events"]

_INT32 = (-(2**31), 2**31 - 1)
_INT64 = (-(2**63), 2**63 - 1)
_MISSING = object()

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
class PushPlan:
    """What pushing to one source needs, computed once per catalog version (``plan_push``)."""

    source: Source
    rules: tuple[_FieldRule, ...]
    names: frozenset[str]
    timestamp: str
    timestamp_scale: int | None
    """ms -> stored unit (1, 1000); ``None``: keep the value as given (a string field)."""
    entity: Entity | None
    """Keys the messages (``Definitions.entity_of_source``); ``None``: no key."""
    encoder: WireEncoder
    naive_is_utc: bool = False
    """The event time is a local-timestamp: a time without a zone is read as UTC."""
    native: Any = None
    """The native check-and-encode of this source (``headwater_native.PushEncoder``), when
    its fields are plain primitives; ``None``: the Python path only."""

    def native_messages(
        self, events: list[Any], now_ms: int, max_future_skew_ms: int
    ) -> list[tuple[bytes, bytes]] | None:
        """``messages(check_events(...))`` of events that pass unchanged, natively in one
        pass; ``None`` when some event needs the Python path (which names its problems)."""
        if self.native is None:
            return None
        messages: list[tuple[bytes, bytes]] | None = self.native.encode(
            events, now_ms + max_future_skew_ms
        )
        return messages

    def messages(self, records: Sequence[dict[str, Any]]) -> list[tuple[bytes, bytes]]:
        """``(key, value)`` Kafka messages of records that ``check_events`` passed, in order
        (an empty key when the source has no entity yet).

        Raises:
            InvalidEventsError: a record cannot be encoded or its entity key is refused;
                nothing of the request may then be produced.
        """
        entity = self.entity
        encode = self.encoder.encode_physical
        out = []
        for i, record in enumerate(records):
            try:
                value = encode(record)
            except EventError as exc:
                problem = ErrorItem(exc.field or f"events[{i}]", str(exc), i)
                raise InvalidEventsError([problem], len(records)) from None
            try:
                key = entity.message_key(record) if entity else b""
            except EventError as exc:
                problem = ErrorItem(exc.field or f"events[{i}]", str(exc), i)
                raise InvalidEventsError([problem], len(records)) from None
            out.append((key, value))
        return out


def plan_push(source: Source, entity: Entity | None, schema_id: int) -> PushPlan:
    """The checks and the encoder of pushes to ``source``, whose schema has ``schema_id``."""
    rules = []
    forms = source.schema.forms
    for f in source.schema.definition["fields"]:
        check, nullable = _field_check(physical_schema(f["type"]))
        convert = physicaliser(forms[f["name"]])
        rules.append(_FieldRule(f["name"], check, nullable, f.get("default", _MISSING), convert))
    ts_form = forms[source.timestamp]
    scale = None if ts_form.kind == "string" else ts_form.unit
    return PushPlan(
        source=source,
        rules=tuple(rules),
        names=frozenset(r.name for r in rules),
        timestamp=source.timestamp,
        timestamp_scale=scale,
        entity=entity,
        encoder=WireEncoder(source.schema, schema_id),
        naive_is_utc=ts_form.local,
        native=_native_encoder(source, entity, schema_id, rules, scale),
    )


def _native_encoder(
    source: Source,
    entity: Entity | None,
    schema_id: int,
    rules: Sequence[_FieldRule],
    scale: int | None,
) -> Any:
    """The native encoder of a source whose fields are all plain primitives (nullable or
    not) and whose event time is a long of epoch ms (or micros); else ``None``."""
    if extension is None or scale is None or not 0 <= schema_id < 2**32:
        return None
    fields: list[tuple[str, str, int]] = []
    for f, rule in zip(source.schema.definition["fields"], rules, strict=True):
        avro = physical_schema(f["type"])
        null_index = -1
        if isinstance(avro, list):
            if len(avro) != 2 or avro.count("null") != 1:
                return None
            null_index = avro.index("null")
            avro = avro[1 - null_index]
        if isinstance(avro, dict) and set(avro) == {"type"}:
            avro = avro["type"]
        if not isinstance(avro, str) or avro not in _FAST:
            return None
        if rule.convert is not None and f["name"] != source.timestamp:
            return None
        fields.append((str(f["name"]), str(avro), null_index))
    names = [name for name, _, _ in fields]
    keys = [names.index(k) for k in entity.keys] if entity is not None else []
    if source.timestamp not in names or any(k < 0 for k in keys):
        return None
    return extension.PushEncoder(
        fields,
        schema_id,
        names.index(source.timestamp),
        scale,
        keys,
        EVENT_TIME_MIN_MS,
        EVENT_TIME_MAX_MS,
    )


def events_of_body(raw: bytes, *, max_events: int) -> list[Any]:
    """The ``events`` list of a push request's body ``{"events": [...]}``.

    Raises:
        BadRequestError: the body is not JSON, or not an object holding only ``events``.
        PayloadTooLargeError: more than ``max_events`` events.
    """
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        msg = f"body is not valid JSON: {exc}"
        raise BadRequestError(msg, field="body") from None
    shape = 'body must be a JSON object {"events": [{...}, ...]} and nothing else'
    if type(body) is not dict:
        raise BadRequestError(shape, errors=[ErrorItem("body", f"got {_describe(body)}")])
    events = body.get("events")
    problems = [
        ErrorItem(k, "unknown field; the body holds only 'events'") for k in body if k != "events"
    ]
    if not isinstance(events, list):
        got = "nothing" if "events" not in body else _describe(events)
        problems.insert(0, ErrorItem("events", f"expected a list of event objects, got {got}"))
        raise BadRequestError(shape, errors=problems)
    if problems:
        raise BadRequestError(shape, errors=problems)
    if len(events) > max_events:
        msg = f"{len(events)} events is over the limit of {max_events} per request (max_events)"
        raise PayloadTooLargeError(msg)
    return events


def validate_events(
    source: Source, events: Sequence[Any], *, now_ms: int, max_future_skew_ms: int
) -> tuple[list[dict[str, Any]], list[ErrorItem]]:
    """``check_events`` for a source without a plan at hand (tests, one-off checks)."""
    return check_events(plan_push(source, None, 0), events, now_ms, max_future_skew_ms)


def check_events(
    plan: PushPlan, events: Sequence[Any], now_ms: int, max_future_skew_ms: int
) -> tuple[list[dict[str, Any]], list[ErrorItem]]:
    """Check every event against the source's schema and time rules.

    Returns ``(records, problems)``: the records ready to encode, in request order (the event
    time converted to the schema's unit), and every problem found, by event index then field
    order. A caller produces the records only when ``problems`` is empty. An element of
    ``events`` that is not a JSON object is named as ``events[i]``.
    """
    records: list[dict[str, Any]] = []
    errors: list[ErrorItem] = []
    latest = now_ms + max_future_skew_ms
    ts_name = plan.timestamp
    for i, event in enumerate(events):
        if type(event) is not dict:
            reason = f"an event must be a JSON object, got {_describe(event)}"
            errors.append(ErrorItem(f"events[{i}]", reason, i))
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
                    errors.append(ErrorItem(name, str(exc), i))
                    continue
                out_of_range = event_time_problem(ms)
                if out_of_range is not None:
                    errors.append(ErrorItem(name, out_of_range, i))
                    continue
                if ms > latest:
                    reason = (
                        f"event time {ms} is {ms - now_ms} ms after now; at most "
                        f"{max_future_skew_ms} ms in the future is accepted (max_future_skew_ms)"
                    )
                    errors.append(ErrorItem(name, reason, i))
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
                    errors.append(ErrorItem(name, "required field is missing", i))
                continue
            if value is None:
                if rule.nullable:
                    record[name] = None
                else:
                    reason = "null is not allowed: the field is not nullable"
                    errors.append(ErrorItem(name, reason, i))
                continue
            if rule.convert is not None:
                try:
                    value = rule.convert(value)
                except AvroValueError as exc:
                    path = f"{name}.{exc.path}" if exc.path else name
                    errors.append(ErrorItem(path, exc.reason, i))
                    continue
            problem = rule.check(value)
            if problem is not None:
                errors.append(ErrorItem(name, problem, i))
                continue
            record[name] = value
        if not plan.names.issuperset(event):
            for name in event:
                if name not in plan.names:
                    reason = f"unknown field; schema {plan.source.schema.name!r} has {sorted(plan.names)}"
                    errors.append(ErrorItem(name, reason, i))
        if len(errors) == before:
            records.append(record)
    return records, errors
