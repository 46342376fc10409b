"""Every Avro form a real producer writes, and the one value Headwater keeps for each.

Kafka Connect, Debezium and Confluent producers write logical types (timestamps, dates,
times, decimals, uuids), enums, fixed, nested records, arrays, maps and unions with null on
either side. fastavro would decode them into ``datetime``, ``date``, ``Decimal``, ``UUID`` and
``bytes`` objects, which neither Arrow's integer columns, nor Redis' JSON, nor a feature's
online = offline promise can take. So Headwater never lets fastavro apply logical types: it
reads and writes the *physical* schema (``physical_schema``: the same bytes on the wire), and
this module turns physical values into one *normalised* value per form, the value that every
later stage sees (the worker's Arrow batch, the Delta history, the Redis states, point-in-time
retrieval, the online API):

==========================================  ================================  =================
Avro form                                   normalised value                  Arrow (history)
==========================================  ================================  =================
timestamp-millis / -micros,                 epoch milliseconds (int; micros   int64
local-timestamp-millis / -micros            floored; local = read as UTC)
date                                        ``"YYYY-MM-DD"``                  string
time-millis / time-micros                   milliseconds since midnight       int64
decimal (bytes or fixed)                    the nearest double                float64
uuid, enum, string                          text                              string
bytes, fixed                                base64 text (RFC 4648, padded)    string
record                                      dict (fields addressable as       struct
                                            ``address.city``)
array / map                                 list / dict of normalised items   list / map
``["null", T]`` or ``[T, "null"]``          ``None`` or T's value             T's, nullable
==========================================  ================================  =================

Every time-like value is in milliseconds, the unit of event time (DESIGN §4), so
``event_time`` of any of these forms, ``year(signup_time)`` and ``now - last_login`` mean
the same thing. JSON-native values are what make online and offline agree exactly: a state
goes to Redis as JSON and comes back equal. Decimals become doubles (sums are then exact
float sums, as for any double); a decimal with more than 15 significant digits loses the
rest.

The other direction (natural values people push and ingest -> physical values) is
``schemas.avro_inputs``.
"""

from __future__ import annotations

import base64
import copy
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any, Final

import pyarrow as pa
import pyarrow.compute as pc

__all__ = [
    "ARROW_TYPES",
    "AvroForm",
    "AvroValueError",
    "Convert",
    "column",
    "leaf_types",
    "normaliser",
    "parse_forms",
    "physical_schema",
    "top_field",
]

ARROW_TYPES: Final[Mapping[str, pa.DataType]] = {
    "string": pa.string(),
    "enum": pa.string(),
    "date": pa.string(),
    "bytes": pa.string(),
    "long": pa.int64(),
    "timestamp": pa.int64(),
    "time": pa.int64(),
    "int": pa.int32(),
    "double": pa.float64(),
    "decimal": pa.float64(),
    "float": pa.float32(),
    "boolean": pa.bool_(),
    "null": pa.null(),
}
"""Arrow type of the normalised values of each scalar type name."""

_PRIMITIVES: Final = frozenset(
    {"null", "boolean", "int", "long", "float", "double", "bytes", "string"}
)
_TIMESTAMPS: Final[Mapping[str, tuple[int, bool]]] = {
    # logicalType -> (physical units per millisecond, zone-less)
    "timestamp-millis": (1, False),
    "timestamp-micros": (1000, False),
    "local-timestamp-millis": (1, True),
    "local-timestamp-micros": (1000, True),
}
_TIMES: Final[Mapping[str, int]] = {"time-millis": 1, "time-micros": 1000}
_EPOCH_DAY: Final = date(1970, 1, 1)


class AvroValueError(ValueError):
    """A value does not fit its Avro form; ``path`` is the field (``address.zip``), if known."""

    def __init__(self, reason: str, path: str = "") -> None:
        super().__init__(f"field {path!r}: {reason}" if path else reason)
        self.reason = reason
        self.path = path

    def under(self, name: str) -> AvroValueError:
        """The same problem, one record level up."""
        return AvroValueError(self.reason, f"{name}.{self.path}" if self.path else name)


@dataclass(frozen=True)
class AvroForm:
    """One Avro type as Headwater reads it.

    ``kind`` is the type name the rest of Headwater checks (expressions, aggregations, the
    loader): an Avro primitive, or ``timestamp``, ``date``, ``time``, ``decimal``, ``enum``,
    ``record``, ``array``, ``map`` or ``union`` (several non-null branches). ``fixed`` and
    ``bytes`` are both ``bytes``; ``uuid`` is ``string``.
    """

    kind: str
    physical: str
    """The Avro type on the wire (``long``, ``bytes``, ``fixed``, ``record``, ...)."""
    logical: str | None = None
    nullable: bool = False
    unit: int = 1
    """Physical units per millisecond (1000 for the ``-micros`` logical types)."""
    local: bool = False
    precision: int = 0
    scale: int = 0
    size: int = 0
    symbols: tuple[str, ...] = ()
    fields: tuple[tuple[str, AvroForm], ...] = ()
    items: AvroForm | None = None
    """Array items or map values."""
    branches: tuple[AvroForm, ...] = field(default=(), repr=False)

    @property
    def arrow(self) -> pa.DataType | None:
        """Arrow type of the normalised values (``None``: a union the history cannot hold)."""
        if self.kind == "record":
            children = [(n, f.arrow) for n, f in self.fields]
            if any(t is None for _, t in children):
                return None
            return pa.struct([pa.field(n, t, nullable=True) for n, t in children])
        if self.kind in ("array", "map"):
            assert self.items is not None
            inner = self.items.arrow
            if inner is None:
                return None
            return pa.list_(inner) if self.kind == "array" else pa.map_(pa.string(), inner)
        return ARROW_TYPES.get(self.kind)


# --- parsing -------------------------------------------------------------------------------


def physical_schema(definition: Any) -> Any:
    """``definition`` without its logical types: what fastavro reads and writes for us.

    The bytes on the wire are the same; fastavro just hands over the physical values (epoch
    ms as a long, days as an int, a decimal's two's-complement bytes) for ``normaliser`` to
    turn into Headwater's values, instead of Python objects that must be undone again.
    """
    stripped = copy.deepcopy(definition)

    def strip(node: Any) -> None:
        if isinstance(node, list):
            for item in node:
                strip(item)
        elif isinstance(node, dict):
            node.pop("logicalType", None)
            for key in ("type", "items", "values"):
                if key in node:
                    strip(node[key])
            for f in node.get("fields", ()) if node.get("type") == "record" else ():
                if isinstance(f, dict):
                    strip(f.get("type"))

    strip(stripped)
    return stripped


def _fullname(name: str, namespace: str | None) -> str:
    return name if "." in name or not namespace else f"{namespace}.{name}"


def parse_forms(record: Mapping[str, Any]) -> dict[str, AvroForm]:
    """The form of every top-level field of an Avro record schema, in order.

    Raises:
        ValueError: a field has no name or type, or refers to an unknown or recursive type.
    """
    named: dict[str, AvroForm | None] = {}
    form = _parse(record, named, None)
    return dict(form.fields)


def _parse(avro: Any, named: dict[str, AvroForm | None], namespace: str | None) -> AvroForm:
    if isinstance(avro, str):
        if avro in _PRIMITIVES:
            return AvroForm(avro, avro)
        key = avro if avro in named else _fullname(avro, namespace)
        if key not in named:
            msg = f"unknown Avro type {avro!r}; define it before it is used"
            raise ValueError(msg)
        found = named[key]
        if found is None:
            msg = f"recursive Avro type {avro!r} is not supported in event schemas"
            raise ValueError(msg)
        return found
    if isinstance(avro, list):
        branches = [_parse(b, named, namespace) for b in avro]
        non_null = [b for b in branches if b.kind != "null"]
        has_null = len(non_null) < len(branches)
        if len(non_null) == 1:
            return _nullable(non_null[0], has_null)
        return AvroForm("union", "union", nullable=has_null, branches=tuple(non_null))
    if not isinstance(avro, Mapping):
        msg = f"not an Avro type: {avro!r}"
        raise TypeError(msg)
    kind = avro["type"]
    logical = str(avro.get("logicalType", ""))
    if kind == "record" or kind == "error":
        ns = avro.get("namespace", namespace)
        full = _fullname(str(avro["name"]), ns)
        ns = full.rpartition(".")[0] or None
        named[full] = named[str(avro["name"]).rpartition(".")[2]] = None  # in progress
        fields = tuple((str(f["name"]), _parse(f["type"], named, ns)) for f in avro["fields"])
        form = AvroForm("record", "record", fields=fields)
        named[full] = named[str(avro["name"]).rpartition(".")[2]] = form
        return form
    if kind in ("enum", "fixed"):
        full = _fullname(str(avro["name"]), avro.get("namespace", namespace))
        if kind == "enum":
            form = AvroForm("enum", "enum", symbols=tuple(avro["symbols"]))
        elif logical == "decimal":
            form = _decimal(avro, "fixed")
        else:
            form = AvroForm("bytes", "fixed", size=int(avro["size"]))
        named[full] = named[str(avro["name"]).rpartition(".")[2]] = form
        return form
    if kind == "array":
        return AvroForm("array", "array", items=_parse(avro["items"], named, namespace))
    if kind == "map":
        return AvroForm("map", "map", items=_parse(avro["values"], named, namespace))
    if not isinstance(kind, str) or kind not in _PRIMITIVES:
        return _parse(kind, named, namespace)  # {"type": {...}} or a named reference
    # A primitive, possibly with a logical type; unknown logical types are the primitive.
    if logical in _TIMESTAMPS and kind == "long":
        unit, local = _TIMESTAMPS[logical]
        return AvroForm("timestamp", "long", logical, unit=unit, local=local)
    if logical in _TIMES and kind == ("int" if logical == "time-millis" else "long"):
        return AvroForm("time", kind, logical, unit=_TIMES[logical])
    if logical == "date" and kind == "int":
        return AvroForm("date", "int", logical)
    if logical == "decimal" and kind == "bytes":
        return _decimal(avro, "bytes")
    if logical == "uuid" and kind == "string":
        return AvroForm("string", "string", logical)
    return AvroForm(kind, kind)


def _decimal(avro: Mapping[str, Any], physical: str) -> AvroForm:
    return AvroForm(
        "decimal",
        physical,
        "decimal",
        precision=int(avro.get("precision", 0)),
        scale=int(avro.get("scale", 0)),
        size=int(avro.get("size", 0)),
    )


def _nullable(form: AvroForm, nullable: bool) -> AvroForm:
    if not nullable or form.nullable:
        return form
    return AvroForm(**{**form.__dict__, "nullable": True})


def leaf_types(forms: Mapping[str, AvroForm]) -> tuple[dict[str, str], set[str]]:
    """Type names of the fields and, for nested records, of their fields as ``a.b``; and
    which of them can be null (a field of a nullable record can)."""
    types: dict[str, str] = {}
    nullable: set[str] = set()

    def walk(prefix: str, form: AvroForm, parent_nullable: bool) -> None:
        types[prefix] = form.kind
        if form.nullable or parent_nullable:
            nullable.add(prefix)
        for name, child in form.fields:
            walk(f"{prefix}.{name}", child, form.nullable or parent_nullable)

    for name, form in forms.items():
        walk(name, form, False)
    return types, nullable


# --- physical -> normalised ------------------------------------------------------------------

Convert = Callable[[Any], Any]


def normaliser(form: AvroForm) -> Convert | None:
    """Physical value -> normalised value of ``form``; ``None`` when they are the same.

    Raises (from the returned function):
        ValueError, OverflowError: the value is outside what its form can mean (a date
            after year 9999).
    """
    inner = _normaliser(form)
    if inner is None or not form.nullable:
        return inner
    return lambda v: None if v is None else inner(v)


def _normaliser(form: AvroForm) -> Convert | None:
    kind = form.kind
    if kind in ("timestamp", "time"):
        unit = form.unit
        return None if unit == 1 else (lambda v: v // unit)
    if kind == "date":
        return lambda v: (_EPOCH_DAY + timedelta(days=v)).isoformat()
    if kind == "decimal":
        divisor = 10**form.scale
        return lambda v: int.from_bytes(v, "big", signed=True) / divisor
    if kind == "bytes":
        return lambda v: base64.b64encode(v).decode("ascii")
    if kind == "record":
        children = [(name, normaliser(child)) for name, child in form.fields]
        converting = [(name, f) for name, f in children if f is not None]
        if not converting:
            return None

        def record(v: dict[str, Any]) -> dict[str, Any]:
            out = dict(v)
            for name, f in converting:
                out[name] = f(out[name])
            return out

        return record
    if kind in ("array", "map"):
        assert form.items is not None
        item = normaliser(form.items)
        if item is None:
            return None
        if kind == "array":
            return lambda v: [item(x) for x in v]
        return lambda v: {k: item(x) for k, x in v.items()}
    return None


# --- nested fields in Arrow --------------------------------------------------------------------


def top_field(path: str) -> str:
    """The top-level column that holds ``path`` (``address`` for ``address.city``)."""
    return path.partition(".")[0]


def column(table: pa.Table, path: str) -> Any:
    """The column ``path`` of ``table``, following ``a.b.c`` into struct columns.

    A field of a null record is null.
    """
    if path in table.column_names or "." not in path:
        return table.column(path)
    head, *rest = path.split(".")
    values = table.column(head)
    for name in rest:
        values = pc.struct_field(values, name)
    return values
