"""Request-time features at lookup time and per label row, by one code path.

Online, a lookup's body carries ``request: {field: [value per entity row]}``; offline, the
label frame carries one column per request field, named like the field. Both are turned into
typed Arrow columns here, and each request feature's compiled expression is evaluated once
over all rows (``schemas.request_features.evaluation_table``) together with the values of
the stored features it reads: the same expression over the same typed inputs, so training
and serving compute it the same way.

Status rule (online): a request feature's status is the worst of its stored dependencies'
statuses on that row (``NOT_FOUND`` worse than ``EXPIRED`` worse than ``PRESENT``), and
``PRESENT`` when it reads only request fields: the value is computed either way, the status
tells whether the stored inputs it used exist and are fresh.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Final, Literal

import pyarrow as pa
import pyarrow.compute as pc

from headwater.schemas.request_features import (
    REQUEST_PREFIX,
    evaluation_table,
    request_arrow_type,
)
from headwater.schemas.tiles import Status
from headwater.serving.errors import BadRequestError, ErrorItem
from headwater.serving.features import RequestColumn, ResolvedFeatures

__all__ = [
    "evaluate_request_column",
    "request_table_columns",
    "typed_request",
    "worst_status",
]

_SEVERITY: Final = {Status.PRESENT: 0, Status.EXPIRED: 1, Status.NOT_FOUND: 2}
_ARROW_OF_EXPRESSION: Final = {
    "boolean": pa.bool_(),
    "long": pa.int64(),
    "double": pa.float64(),
    "string": pa.string(),
}


def worst_status(statuses: Sequence[Status]) -> Status:
    """The status of a request feature on one row from its dependencies' (module doc)."""
    return max(statuses, key=_SEVERITY.__getitem__, default=Status.PRESENT)


def _accepts(type_name: str, value: Any) -> bool:
    if value is None:
        return True
    if type_name == "boolean":
        return isinstance(value, bool)
    if type_name in ("int", "long"):
        bits = 31 if type_name == "int" else 63  # Avro's widths, so a value fits its type
        return (
            isinstance(value, int) and not isinstance(value, bool) and -(2**bits) <= value < 2**bits
        )
    if type_name in ("float", "double"):
        return isinstance(value, int | float) and not isinstance(value, bool)
    return isinstance(value, str)


def typed_request(
    resolved: ResolvedFeatures,
    request: Mapping[str, Any] | None,
    rows: int,
    *,
    member: Literal["request", "entities"] = "request",
) -> dict[str, pa.Array]:
    """The request fields the requested request features read, as typed Arrow columns.

    Args:
        resolved: the lookup's features.
        request: field -> one value per entity row: the ``request`` member of a lookup, or
            the request columns of a historical request's ``entities``.
        rows: the number of entity (or label) rows.
        member: the body member the fields are in, which errors name.

    Raises:
        BadRequestError: a needed field is missing, not a list, of another length than the
            entity rows, or holds a value of the wrong type; each problem names
            ``<member>.<field>`` (and the row) and the fix.
    """
    needed = resolved.request_fields
    if not needed:
        return {}
    request = request or {}
    missing = sorted(set(needed) - set(request))
    if missing:
        users = ", ".join(c.feature.pinned_ref for c in resolved.request_columns)
        named = ", ".join(f"{member}.{f}" for f in missing)
        msg = (
            f"{member}: missing field(s) {named} read by {users}; send them as "
            f'"{member}": {{"{missing[0]}": [one value per entity row]}}'
        )
        reason = "missing: a request field of the requested request features"
        raise BadRequestError(msg, errors=[ErrorItem(f"{member}.{f}", reason) for f in missing])
    columns: dict[str, pa.Array] = {}
    problems: list[ErrorItem] = []
    for field, type_name in sorted(needed.items()):
        values = request[field]
        where = f"{member}.{field}"
        if not isinstance(values, list) or len(values) != rows:
            got = f"{len(values)} value(s)" if isinstance(values, list) else repr(values)
            reason = f"expected a list of {rows} value(s), one per entity row; got {got}"
            problems.append(ErrorItem(where, reason))
            continue
        bad = [i for i, v in enumerate(values) if not _accepts(type_name, v)]
        if bad:
            i = bad[0]
            reason = f"row {i}: {values[i]!r} is not a {type_name}; send a {type_name} or null"
            problems.append(ErrorItem(f"{where}[{i}]", reason))
            continue
        columns[field] = pa.array(values, request_arrow_type(type_name))
    if problems:
        msg = f"{member}: " + "; ".join(f"{p.field}: {p.reason}" for p in problems)
        raise BadRequestError(msg, errors=problems)
    return columns


def request_table_columns(resolved: ResolvedFeatures, table: pa.Table) -> dict[str, pa.Array]:
    """The request fields read by the requested request features, from a label frame's
    columns of the same names, cast to their declared types.

    Raises:
        BadRequestError: a column is missing, or does not convert to its declared type.
    """
    columns: dict[str, pa.Array] = {}
    for field, type_name in sorted(resolved.request_fields.items()):
        if field not in table.column_names:
            users = ", ".join(c.feature.pinned_ref for c in resolved.request_columns)
            msg = (
                f"entity frame has no column {field!r}, the request field {REQUEST_PREFIX}{field} "
                f"read by {users}; add a column {field!r} ({type_name}) with the value sent "
                "with each label row's lookup"
            )
            raise BadRequestError(msg, field=field)
        column = table.column(field).combine_chunks()
        try:
            columns[field] = pc.cast(column, request_arrow_type(type_name))
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
            msg = (
                f"entity frame column {field!r} has type {column.type}, which does not convert "
                f"to {type_name} as request field {REQUEST_PREFIX}{field} is declared; "
                f"convert the column to {type_name}"
            )
            raise BadRequestError(msg, field=field) from exc
    return columns


def evaluate_request_column(
    column: RequestColumn,
    rows: int,
    request: Mapping[str, pa.Array],
    stored: Sequence[pa.Array | Sequence[Any]],
) -> pa.Array:
    """One request feature over every row, vectorised.

    Args:
        column: the resolved request feature.
        rows: the number of rows.
        request: typed request columns (:func:`typed_request`, :func:`request_table_columns`).
        stored: the values of each of ``column.feature.dependencies``, in order: Arrow
            arrays (offline) or Python lists (online), one value per row.
    """
    feature = column.feature
    dependencies = {
        d.column: values
        if isinstance(values, pa.Array | pa.ChunkedArray)
        else _online_array(values, d.type)
        for d, values in zip(feature.dependencies, stored, strict=True)
    }
    table = evaluation_table(rows, {f: request[f] for f in feature.request_fields}, dependencies)
    result = feature.expression.evaluate(table)
    return result.combine_chunks() if isinstance(result, pa.ChunkedArray) else result


def _online_array(values: Sequence[Any], type_name: str) -> pa.Array:
    """Online values of a stored feature as the Arrow type its expression type names.

    An integer sum is exact in Python and may leave 64 bits (the API then answers it as JSON
    text); an expression cannot read such a value, so it reads null there, as it does for
    any value that does not convert.
    """
    if type_name == "long":
        values = [v if v is None or -(2**63) <= v < 2**63 else None for v in values]
    return pa.array(values, _ARROW_OF_EXPRESSION[type_name])
