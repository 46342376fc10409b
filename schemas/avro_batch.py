"""Whole batches of Confluent-framed Avro messages decoded natively into Arrow columns.

The stream worker's first step was one ``fastavro`` call per message, then one Python dict
per event, then Arrow columns built from those dicts: three passes of per-event Python. The
native extension (``native/``, Rust with PyO3, built by ``make setup``) decodes a batch of
one writer schema straight into Arrow buffers, with the same normalised values as
``schemas.avro_types`` (epoch milliseconds, ISO dates, base64 text, structs for nested
records). It knows the forms most producers write: primitives, the logical types of time,
dates and uuids, enums, fixed, nested records and ``["null", T]`` unions. A schema with
another form (decimal, array, map, a union of several types) gets no plan, and a batch the
native decoder refuses (another schema id, a tombstone, a body that does not decode, a NaN)
gets ``None``: the caller takes the per-event path, which names the bad event and field.
Decoding a batch natively or event by event gives equal tables; the unit tests check it on
generated records of every supported form.

Without the extension (a plain ``pip install`` of the package), ``native_available`` is
false and every batch takes the per-event path.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from typing import Any, Final

import pyarrow as pa

from headwater.schemas.avro import AvroSchema
from headwater.schemas.avro_types import _TIMES, _TIMESTAMPS, _fullname
from headwater.schemas.native import extension, native_available

__all__ = ["NativeBatchDecoder", "native_available", "native_plan"]

_PRIMITIVES: Final = frozenset(
    {"null", "boolean", "int", "long", "float", "double", "bytes", "string"}
)
_SCALED: Final[Mapping[tuple[str, str], int]] = {
    # (logicalType, physical type) -> physical units per millisecond, as parse_forms reads them
    **{(logical, "long"): unit for logical, (unit, _) in _TIMESTAMPS.items()},
    **{(logical, "int" if unit == 1 else "long"): unit for logical, unit in _TIMES.items()},
}

PlanField = tuple[str, str, int, int, list[str], int, bool, list[Any]]
"""``(name, kind, null_index, unit, symbols, size, finite, children)``: one field as the
native decoder takes it (``null_index``: the union branch of null, -1 for none)."""


class _Unsupported(Exception):
    """A form the native decoder does not know; the schema keeps the Python path."""


def native_plan(
    definition: Mapping[str, Any], finite: Collection[str] = ()
) -> list[PlanField] | None:
    """The native decoder's plan of a record schema's fields, or ``None`` if some form is
    not supported. ``finite`` names top-level fields whose NaN and infinities are refused.

    Mirrors ``schemas.avro_types.parse_forms`` (names, namespaces, logical types).
    """
    named: dict[str, tuple[Mapping[str, Any], str | None]] = {}
    namespace = definition.get("namespace")
    try:
        return [
            _field(str(f["name"]), f["type"], named, namespace, finite=f["name"] in finite)
            for f in definition["fields"]
        ]
    except (_Unsupported, KeyError, TypeError, ValueError):
        return None


def _field(
    name: str,
    avro: Any,
    named: dict[str, tuple[Mapping[str, Any], str | None]],
    namespace: str | None,
    *,
    finite: bool = False,
    null_index: int = -1,
) -> PlanField:
    if isinstance(avro, list):
        if null_index >= 0 or len(avro) != 2 or avro.count("null") != 1:
            raise _Unsupported(name)
        index = avro.index("null")
        return _field(name, avro[1 - index], named, namespace, finite=finite, null_index=index)
    if isinstance(avro, str):
        if avro in _PRIMITIVES:
            finite = finite and avro in ("float", "double")
            return (name, avro, null_index, 1, [], 0, finite, [])
        key = avro if avro in named else _fullname(avro, namespace)
        if key not in named:
            raise _Unsupported(name)
        found, found_namespace = named[key]
        return _field(name, found, named, found_namespace, null_index=null_index)
    if not isinstance(avro, Mapping):
        raise _Unsupported(name)
    kind = avro["type"]
    logical = str(avro.get("logicalType", ""))
    if kind in ("record", "error", "enum", "fixed"):
        full = _fullname(str(avro["name"]), avro.get("namespace", namespace))
        inner = full.rpartition(".")[0] or None
        named[full] = named[str(avro["name"]).rpartition(".")[2]] = (
            {**avro, "namespace": inner} if inner else avro,
            inner,
        )
        if kind == "enum":
            return (name, "enum", null_index, 1, [str(s) for s in avro["symbols"]], 0, False, [])
        if kind == "fixed":
            if logical == "decimal":
                raise _Unsupported(name)
            return (name, "fixed", null_index, 1, [], int(avro["size"]), False, [])
        children = [_field(str(f["name"]), f["type"], named, inner) for f in avro["fields"]]
        return (name, "record", null_index, 1, [], 0, False, children)
    if not isinstance(kind, str) or kind not in _PRIMITIVES:
        return _field(name, kind, named, namespace, finite=finite, null_index=null_index)
    if (logical, kind) in _SCALED:
        return (name, "scaled", null_index, _SCALED[logical, kind], [], 0, False, [])
    if logical == "date" and kind == "int":
        return (name, "date", null_index, 1, [], 0, False, [])
    if logical == "decimal" and kind == "bytes":
        raise _Unsupported(name)
    return _field(name, kind, named, namespace, finite=finite, null_index=null_index)


def _array(arrow_type: pa.DataType, column: tuple[Any, ...]) -> pa.Array:
    """An Arrow array over the buffers of one native column (no value is copied again)."""
    length, nulls, validity, buffers, children = column
    if pa.types.is_null(arrow_type):
        return pa.nulls(length)
    kids = None
    if pa.types.is_struct(arrow_type):
        kids = [_array(arrow_type.field(i).type, child) for i, child in enumerate(children)]
    return pa.Array.from_buffers(
        arrow_type,
        length,
        [None if validity is None else pa.py_buffer(validity)] + [pa.py_buffer(b) for b in buffers],
        null_count=nulls,
        children=kids,
    )


class NativeBatchDecoder:
    """Decodes batches of messages written with one schema (one id) into Arrow arrays.

    Use ``for_schema``, which gives ``None`` when the extension is missing or the schema has
    a form it does not know.
    """

    def __init__(self, schema: AvroSchema, native: Any) -> None:
        self._types = [schema.forms[name].arrow for name in schema.forms]
        self._names = list(schema.forms)
        self._native = native

    @classmethod
    def for_schema(
        cls, schema: AvroSchema, schema_id: int, finite: Collection[str] = ()
    ) -> NativeBatchDecoder | None:
        """The decoder of ``schema`` registered as ``schema_id``, or ``None`` (Python path)."""
        if extension is None or not 0 <= schema_id < 2**32:
            return None
        plan = native_plan(schema.definition, finite)
        if plan is None or any(t is None for t in (f.arrow for f in schema.forms.values())):
            return None
        return cls(schema, extension.AvroBatchDecoder(plan, schema_id))

    @property
    def names(self) -> list[str]:
        """The top-level fields, in schema order (the order of ``decode``'s arrays)."""
        return self._names

    def decode(self, payloads: Sequence[bytes | None]) -> list[pa.Array] | None:
        """One array per top-level field, or ``None`` if some message must take the
        per-event path (see the module docstring)."""
        columns = self._native.decode(payloads if isinstance(payloads, list) else list(payloads))
        if isinstance(columns, str):
            return None
        return [_array(t, c) for t, c in zip(self._types, columns, strict=True)]
