"""The pyarrow.compute kernels behind the expression language's operators and functions.

Arrow's own kernels raise on some data (a zero divisor, a string that is not a number) or
wrap silently (casts, calendar arithmetic far out); the wrappers here give null instead, so
that evaluation never fails on data. The tables name every operator and function with its
kernel and arity; the compiler only chooses among them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Final

import pyarrow as pa
import pyarrow.compute as pc

from headwater.schemas.avro_types import column as nested_column
from headwater.schemas.expressions.grammar import ExpressionError

# pyarrow ships no type information: an Arrow datum (scalar, array or chunked array) is Any.
Datum = Any

ARROW_TYPES: Final[Mapping[str, Datum]] = {
    "boolean": pa.bool_(),
    "long": pa.int64(),
    "double": pa.float64(),
    "string": pa.string(),
    "null": pa.null(),
}


class Frame:
    """One evaluation: the table, with columns cast to the canonical Arrow types once."""

    def __init__(self, table: pa.Table, text: str) -> None:
        self.table, self.text = table, text
        self._columns: dict[str, Datum] = {}

    def nested(self, name: str) -> Datum:
        """The column ``name`` as stored; ``a.b`` reads field ``b`` of struct column ``a``."""
        return nested_column(self.table, name)

    def column(self, name: str, type_name: str) -> Datum:
        if name not in self._columns:
            column, target = self.nested(name), ARROW_TYPES[type_name]
            if column.type != target:
                try:
                    column = pc.cast(column, target, safe=not pa.types.is_floating(target))
                except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
                    message = (
                        f"column {name!r} has Arrow type {column.type}, which does not "
                        f"convert to {type_name} as expression {self.text!r} expects"
                    )
                    raise ExpressionError(message, expression=self.text) from exc
            self._columns[name] = column
        return self._columns[name]


def list_size(values: Datum) -> Datum:
    """Items per array or map value, as int64 (a map is a list of key/value entries)."""
    if pa.types.is_map(values.type):
        entries = pa.list_(pa.struct([values.type.key_field, values.type.item_field]))
        values = pc.cast(values, entries)
    return pc.cast(pc.list_value_length(values), pa.int64())


def null_of(type_name: str) -> Datum:
    return pa.scalar(None, ARROW_TYPES[type_name])


def _divide(a: Datum, b: Datum) -> Datum:
    # Arrow gives inf/NaN (doubles) or raises (integers) on a zero divisor; we give null.
    return pc.if_else(pc.equal(b, 0), null_of("double"), pc.divide(a, b))


def _remainder(a: Datum, b: Datum) -> Datum:
    zero = pc.equal(b, 0)
    safe = pc.if_else(zero, pa.scalar(1, b.type), b)
    return pc.if_else(zero, pa.scalar(None, b.type), pc.remainder(a, safe))


def _sqrt(x: Datum) -> Datum:
    return pc.if_else(pc.less(x, 0.0), null_of("double"), pc.sqrt(x))


def _string_to_long(s: Datum) -> Datum:
    # Arrow's cast raises on a bad string; validate first so bad data becomes null instead.
    s = pc.replace_substring_regex(pc.utf8_trim_whitespace(s), r"^\+", "")
    digits = pc.replace_substring_regex(s, r"^-?0*", "")
    size = pc.utf8_length(digits)
    limit = pc.if_else(pc.starts_with(s, "-"), "9223372036854775808", "9223372036854775807")
    fits = pc.or_(pc.less(size, 19), pc.and_(pc.equal(size, 19), pc.less_equal(digits, limit)))
    valid = pc.and_(pc.match_substring_regex(s, r"^-?\d+$"), fits)
    return pc.cast(pc.if_else(valid, s, null_of("string")), pa.int64())


def _string_to_double(s: Datum) -> Datum:
    s = pc.utf8_trim_whitespace(s)
    valid = pc.match_substring_regex(s, r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$")
    value = pc.cast(pc.if_else(valid, s, null_of("string")), pa.float64())
    return pc.if_else(pc.is_finite(value), value, null_of("double"))


def to_double(x: Datum) -> Datum:
    if x.type == pa.string():
        return _string_to_double(x)
    return pc.cast(x, pa.float64(), safe=False)  # longs beyond 2**53 round instead of raising


def _to_long(x: Datum) -> Datum:
    if x.type == pa.string():
        return _string_to_long(x)
    if x.type != pa.float64():
        return pc.cast(x, pa.int64())
    # NaN, infinities and out-of-range values would wrap silently in an unsafe cast.
    in_range = pc.and_(pc.greater_equal(x, -(2.0**63)), pc.less(x, 2.0**63))
    return pc.cast(pc.if_else(in_range, x, null_of("double")), pa.int64(), safe=False)


def _time_part(kernel: Callable[[Datum], Datum]) -> Callable[[Datum], Datum]:
    def run(ms: Datum) -> Datum:
        # Arrow's calendar arithmetic overflows silently far out; keep years 1..9999 (ISO).
        valid = pc.and_(pc.greater_equal(ms, _MIN_MS), pc.less_equal(ms, _MAX_MS))
        ms = pc.if_else(valid, ms, null_of("long"))
        return pc.cast(kernel(pc.cast(ms, pa.timestamp("ms"))), pa.int64())

    return run


_MIN_MS: Final = -62_135_596_800_000  # 0001-01-01T00:00:00Z
_MAX_MS: Final = 253_402_300_799_999  # 9999-12-31T23:59:59.999Z


# name -> (parameter type, where "double" takes any number; result type; kernel)
UNARY: Final[Mapping[str, tuple[str, str, Callable[[Datum], Datum]]]] = {
    "sqrt": ("double", "double", _sqrt),
    "lower": ("string", "string", pc.utf8_lower),
    "upper": ("string", "string", pc.utf8_upper),
    "trim": ("string", "string", pc.utf8_trim_whitespace),
    "length": ("string", "long", lambda s: pc.cast(pc.utf8_length(s), pa.int64())),
    **{
        name: ("long", "long", _time_part(kernel))
        for name, kernel in [
            ("year", pc.year),
            ("month", pc.month),
            ("day_of_month", pc.day),
            ("day_of_week", pc.day_of_week),
            ("hour", pc.hour),
            ("minute", pc.minute),
        ]  # Arrow's day_of_week counts from Monday = 0
    },
}
CONVERSIONS: Final[Mapping[str, tuple[str, Callable[[Datum], Datum]]]] = {
    "to_string": ("string", lambda x: pc.cast(x, pa.string())),
    "to_double": ("double", to_double),
    "to_long": ("long", _to_long),
}
MATCHERS: Final[Mapping[str, Callable[..., Datum]]] = {
    "starts_with": pc.starts_with,
    "ends_with": pc.ends_with,
    "contains": pc.match_substring,
}
# name -> (fewest, most arguments; None for any number)
ARITY: Final[Mapping[str, tuple[int, int | None]]] = {
    **{name: (1, 1) for name in ("abs", "floor", "ceil", *UNARY, *CONVERSIONS)},
    **{name: (2, 2) for name in MATCHERS},
    "round": (1, 2),
    "substr": (3, 3),
    "if": (3, 3),
    "concat": (1, None),
    "coalesce": (1, None),
    "nullif": (2, 2),
    "size": (1, 1),
}
ARITHMETIC: Final[Mapping[str, Callable[[Datum, Datum], Datum]]] = {
    "+": pc.add,
    "-": pc.subtract,
    "*": pc.multiply,
    "/": _divide,
    "%": _remainder,
}
COMPARISONS: Final[Mapping[str, Callable[[Datum, Datum], Datum]]] = {
    "==": pc.equal,
    "!=": pc.not_equal,
    "<": pc.less,
    "<=": pc.less_equal,
    ">": pc.greater,
    ">=": pc.greater_equal,
}
