"""The expression-language type of a stored feature's value.

A request-time feature reads stored features inside an expression
(``request.amount / nullif(user_spend:avg_amount_7d, 0)``), so each stored feature needs a
type the expression compiler knows (``boolean``, ``long``, ``double``, ``string``) when the
definition is applied. This module is the one place that says what each aggregation
function gives; a function it does not know gives ``None`` ("not usable in an expression"),
so a new aggregation function is refused in expressions until it is described here, instead
of being type-checked wrongly.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

from headwater.schemas.definitions import Feature
from headwater.schemas.expressions.compiler import EXPRESSION_TYPES

__all__ = ["expression_type", "value_type"]

_INTEGERS: Final = frozenset({"int", "long"})
_ALWAYS: Final[Mapping[str, str]] = {
    "count": "long",
    "count_if": "long",
    "count_distinct": "long",
    "approx_count_distinct": "long",
    "mean": "double",
    "stddev": "double",
    "variance": "double",
    "skew": "double",
    "kurtosis": "double",
}
_AS_FIELD: Final = frozenset({"min", "max", "first", "last"})


def expression_type(type_name: str | None) -> str | None:
    """The expression type of a field of Avro (or transform output) type ``type_name``, or
    ``None`` for forms expressions cannot read (arrays, maps, records, bytes, unions)."""
    return EXPRESSION_TYPES.get(type_name) if type_name is not None else None


def value_type(feature: Feature, field_types: Mapping[str, str]) -> str | None:
    """The expression type of ``feature``'s value, or ``None`` when it cannot be used in an
    expression (a list- or map-valued function such as ``last_n``, a field of a type
    expressions cannot read, or a function this module does not know yet).

    Args:
        feature: a stored feature.
        field_types: the types of the fields its set aggregates: source fields (Avro type
            names) and transform outputs (expression type names).
    """
    if feature.function in _ALWAYS:
        return _ALWAYS[feature.function]
    field_type = field_types.get(feature.field) if feature.field is not None else None
    if feature.function in (
        "sum",
        "sum_if",
    ):  # integer fields (and long transform outputs) sum exactly
        if field_type in _INTEGERS:
            return "long"
        return "double" if expression_type(field_type) in ("long", "double") else None
    if feature.function in _AS_FIELD:
        return expression_type(field_type)
    return None
