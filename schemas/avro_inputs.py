"""Natural values -> the physical Avro values fastavro writes, for push and file ingest.

People push JSON and ingest CSV, Parquet, JSON lines, Avro files and SQL rows, so a value
arrives as epoch ms, ISO-8601 text or a ``datetime`` for a time; ``"YYYY-MM-DD"`` or a
``date``; ``"HH:MM:SS.fff"`` or a ``time``; decimal text, a number or a ``Decimal``; base64
text or raw bytes; an object or its JSON text (CSV) for a record, array or map. Each
``physicaliser`` takes those (and the normalised values of ``schemas.avro_types``, so a
decoded event encodes back to the same bytes) and gives what fastavro writes for the
physical schema, or an ``AvroValueError`` naming the field (``address.zip``) and the fix.
An integer for a time is always epoch milliseconds, as everywhere in Headwater.
"""

from __future__ import annotations

import base64
import binascii
import decimal
import json
import uuid
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, Final

from headwater.schemas.avro_types import AvroForm, AvroValueError, Convert

__all__ = ["physicaliser", "time_ms"]

_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_EPOCH_NAIVE: Final = datetime(1970, 1, 1)
_EPOCH_DAY: Final = date(1970, 1, 1)
_MS: Final = timedelta(milliseconds=1)
_US: Final = timedelta(microseconds=1)


def physicaliser(form: AvroForm) -> Convert | None:
    """Natural value -> the physical value fastavro writes; ``None`` when fastavro's own
    checks suffice (plain primitives, enums).

    Raises (from the returned function):
        AvroValueError: the value does not fit, with what was expected.
    """
    inner = _physicaliser(form)
    if inner is None or not form.nullable:
        return inner
    return lambda v: None if v is None else inner(v)


def _describe(v: Any) -> str:
    text = repr(v)
    return f"{type(v).__name__} {text if len(text) <= 40 else text[:37] + '...'}"


def time_ms(value: Any, *, naive_is_utc: bool = False) -> int:
    """Epoch ms from epoch ms (int or digits), a ``datetime`` or ISO-8601 text.

    Raises:
        AvroValueError: not a time, or no zone where one is needed.
    """
    if isinstance(value, bool):
        raise AvroValueError(f"expected a time, got {_describe(value)}")
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str):
        text = value.strip()
        if text.lstrip("-").isdigit():
            return int(text)
        try:
            value = datetime.fromisoformat(text)
        except ValueError:
            msg = f"{value!r} is not a time; give epoch ms or ISO-8601, e.g. '2026-11-26T15:04:05.123Z'"
            raise AvroValueError(msg) from None
    if isinstance(value, datetime):
        return _datetime_units(value, _MS, naive_is_utc)
    msg = f"expected a time (epoch ms or ISO-8601), got {_describe(value)}"
    raise AvroValueError(msg)


def _datetime_units(value: datetime, unit: timedelta, naive_is_utc: bool) -> int:
    if value.tzinfo is None:
        if not naive_is_utc:
            msg = f"{value.isoformat()} has no time zone; add one, e.g. 'Z' or '+00:00'"
            raise AvroValueError(msg)
        return (value - _EPOCH_NAIVE) // unit
    return (value - _EPOCH) // unit  # integer arithmetic: floats lose precision far out


def _timestamp(form: AvroForm) -> Convert:
    unit, local = form.unit, form.local
    fine = _US if unit == 1000 else _MS

    def convert(v: Any) -> int:
        if isinstance(v, datetime):  # keeps the microseconds a micros field can hold
            return _datetime_units(v, fine, local)
        return time_ms(v, naive_is_utc=local) * unit

    return convert


def _date(v: Any) -> int:
    if isinstance(v, datetime):
        msg = f"expected a date, got a date and time {v.isoformat()}; give 'YYYY-MM-DD'"
        raise AvroValueError(msg)
    if isinstance(v, date):
        return (v - _EPOCH_DAY).days
    if isinstance(v, int) and not isinstance(v, bool):
        return v  # days since 1970-01-01, Avro's and Kafka Connect's own form
    if isinstance(v, str):
        try:
            return (date.fromisoformat(v.strip()) - _EPOCH_DAY).days
        except ValueError:
            pass
    msg = f"expected a date 'YYYY-MM-DD', got {_describe(v)}"
    raise AvroValueError(msg)


def _time_of_day(form: AvroForm) -> Convert:
    unit = form.unit

    def convert(v: Any) -> int:
        if isinstance(v, str):
            try:
                v = time.fromisoformat(v.strip())
            except ValueError:
                pass
        if isinstance(v, time):
            micros = ((v.hour * 60 + v.minute) * 60 + v.second) * 1_000_000 + v.microsecond
            return micros if unit == 1000 else micros // 1000
        if isinstance(v, int) and not isinstance(v, bool) and 0 <= v < 86_400_000:
            return v * unit  # milliseconds since midnight
        msg = f"expected a time of day 'HH:MM:SS.fff' or milliseconds since midnight, got {_describe(v)}"
        raise AvroValueError(msg)

    return convert


def _decimal_physical(form: AvroForm) -> Convert:
    scale, precision, size = form.scale, form.precision, form.size
    quantum = decimal.Decimal(1).scaleb(-scale)

    def convert(v: Any) -> bytes:
        if isinstance(v, bool) or not isinstance(v, decimal.Decimal | int | float | str):
            msg = f"expected a decimal number (text or number), got {_describe(v)}"
            raise AvroValueError(msg)
        try:
            # repr of a float is its shortest exact text: 12.3 stays 12.3, not 12.29999...
            d = decimal.Decimal(repr(v) if isinstance(v, float) else str(v).strip())
        except decimal.InvalidOperation:
            raise AvroValueError(f"{v!r} is not a decimal number") from None
        if not d.is_finite():
            raise AvroValueError(f"{v!r} is not a finite decimal number")
        exact = d.quantize(quantum, context=decimal.Context(prec=max(precision, 1) + 40))
        if exact != d:
            msg = f"{v!r} has more than {scale} decimal places (the schema's scale); round it first"
            raise AvroValueError(msg)
        unscaled = int(exact.scaleb(scale))
        if precision and len(str(abs(unscaled))) > precision:
            msg = f"{v!r} has more than {precision} digits (the schema's precision)"
            raise AvroValueError(msg)
        length = size or (unscaled.bit_length() + 8) // 8
        try:
            return unscaled.to_bytes(length, "big", signed=True)
        except OverflowError:
            raise AvroValueError(f"{v!r} does not fit the schema's {size} bytes") from None

    return convert


def _uuid(v: Any) -> str:
    if isinstance(v, uuid.UUID):
        return str(v)
    if isinstance(v, str):
        try:
            return str(uuid.UUID(v.strip()))
        except ValueError:
            pass
    raise AvroValueError(
        f"expected a UUID like '123e4567-e89b-12d3-a456-426614174000', got {_describe(v)}"
    )


def _bytes(form: AvroForm) -> Convert:
    size = form.size if form.physical == "fixed" else 0

    def convert(v: Any) -> bytes:
        if isinstance(v, bytes | bytearray | memoryview):
            raw = bytes(v)
        elif isinstance(v, str):
            try:
                raw = base64.b64decode(v.strip(), validate=True)
            except (binascii.Error, ValueError):
                raise AvroValueError(
                    f"{_describe(v)} is not base64 text; give bytes as base64 (RFC 4648)"
                ) from None
        else:
            raise AvroValueError(f"expected bytes as base64 text, got {_describe(v)}")
        if size and len(raw) != size:
            raise AvroValueError(f"expected exactly {size} bytes (fixed), got {len(raw)}")
        return raw

    return convert


def _json_text(v: Any, expected: type, what: str) -> Any:
    if isinstance(v, str):
        try:
            v = json.loads(v)
        except ValueError:
            raise AvroValueError(
                f"expected {what} (or its JSON text), got {_describe(v)}"
            ) from None
    if expected is list and isinstance(v, tuple):
        v = list(v)
    if not isinstance(v, expected):
        raise AvroValueError(f"expected {what}, got {_describe(v)}")
    return v


def _record(form: AvroForm) -> Convert:
    children = [(name, physicaliser(child)) for name, child in form.fields]
    converting = [(name, f) for name, f in children if f is not None]

    def convert(v: Any) -> dict[str, Any]:
        v = dict(_json_text(v, dict, "an object with the record's fields"))
        out: dict[str, Any] = v
        for name, f in converting:
            if name in v:
                try:
                    v[name] = f(v[name])
                except AvroValueError as exc:
                    raise exc.under(name) from None
        return out

    return convert


def _collection(form: AvroForm) -> Convert:
    assert form.items is not None
    item = physicaliser(form.items)
    if form.kind == "array":

        def array(v: Any) -> list[Any]:
            v = _json_text(v, list, "an array")
            if item is None:
                return list(v)
            try:
                return [item(x) for x in v]
            except AvroValueError as exc:
                raise AvroValueError(f"an item: {exc.reason}", exc.path) from None

        return array

    def mapping(v: Any) -> dict[str, Any]:
        if isinstance(v, list) and all(isinstance(p, tuple) and len(p) == 2 for p in v):
            v = dict(v)  # Arrow (Parquet) gives a map as its (key, value) pairs
        v = _json_text(v, dict, "an object (a map with text keys)")
        if item is None:
            return {str(k): x for k, x in v.items()}
        try:
            return {k: item(x) for k, x in v.items()}
        except AvroValueError as exc:
            raise AvroValueError(f"a value: {exc.reason}", exc.path) from None

    return mapping


def _physicaliser(form: AvroForm) -> Convert | None:
    kind = form.kind
    if kind == "timestamp":
        return _timestamp(form)
    if kind == "date":
        return _date
    if kind == "time":
        return _time_of_day(form)
    if kind == "decimal":
        return _decimal_physical(form)
    if kind == "string" and form.logical == "uuid":
        return _uuid
    if kind == "bytes":
        return _bytes(form)
    if kind == "record":
        return _record(form)
    if kind in ("array", "map"):
        return _collection(form)
    return None
