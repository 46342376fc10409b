"""Deleting one entity's rows from Delta tables, and the files that still hold them.

A Delta ``DELETE`` rewrites the files holding matching rows into a new table version; the old
files stay on disk (earlier versions, time travel) until a ``VACUUM`` with a retention that
has passed since the delete removes them. Both steps are here; which tables and when is
``headwater/erasure.py``'s business.

Predicates are SQL (DataFusion's dialect) built from user text, so every value goes through
``sql_literal`` and every column name through ``sql_identifier``: nothing a value holds can
end the literal or add a clause.
"""

from __future__ import annotations

import time
from collections.abc import Mapping

import pyarrow as pa
from deltalake import DeltaTable
from deltalake.exceptions import CommitFailedError

from headwater.connectors.errors import OfflineStoreError
from headwater.connectors.offline_delta import open_delta
from headwater.schemas.errors import EventError
from headwater.schemas.offline_location import OfflineLocation

__all__ = [
    "delete_where",
    "key_predicate",
    "open_table",
    "sql_identifier",
    "sql_literal",
    "table_schema",
    "vacuum_table",
]

_ATTEMPTS = 5


def sql_literal(text: str) -> str:
    """``text`` as an SQL string literal: in single quotes, each quote doubled (standard SQL;
    DataFusion gives backslashes no meaning inside literals)."""
    if "\x00" in text:
        msg = f"value {text!r} holds a NUL character, which no key can hold"
        raise EventError(msg, reason="invalid_key")
    return "'" + text.replace("'", "''") + "'"


def sql_identifier(name: str) -> str:
    """A column name as an SQL identifier: in double quotes, each double quote doubled, so
    case and any character are kept."""
    return '"' + name.replace('"', '""') + '"'


def _condition(column: str, arrow_type: pa.DataType, value: str) -> str:
    """``column = value`` for a key field's text ``value`` (as stored online: ``str`` of
    non-text values) in a column of ``arrow_type``."""
    name = sql_identifier(column)
    if pa.types.is_string(arrow_type) or pa.types.is_large_string(arrow_type):
        return f"{name} = {sql_literal(value)}"
    if pa.types.is_integer(arrow_type):
        try:
            number = int(value, 10)
        except ValueError:
            msg = (
                f"entity key field {column!r} holds integers; {value!r} is not one "
                f"(give --entity {column}=<integer>)"
            )
            raise EventError(msg, field=column, reason="invalid_key") from None
        return f"{name} = {number}"
    # Other types: compared as text, as the worker keys them (str() of the value).
    return f"CAST({name} AS VARCHAR) = {sql_literal(value)}"


def key_predicate(schema: pa.Schema, key: Mapping[str, str]) -> str:
    """The predicate matching the rows of one entity key (every field equal).

    Raises:
        EventError: a field is not a column of ``schema``, or its value cannot be one of
            the column's values (the field is named).
    """
    if not key:
        msg = "an entity key needs at least one field; an empty predicate would match every row"
        raise EventError(msg, reason="invalid_key")
    parts = []
    for column, value in key.items():
        if column not in schema.names:
            msg = f"entity key field {column!r} is not a column of the table (columns: {schema.names})"
            raise EventError(msg, field=column, reason="invalid_key")
        parts.append(_condition(column, schema.field(column).type, value))
    return " AND ".join(f"({p})" for p in parts)


def open_table(uri: str, location: OfflineLocation | None = None) -> DeltaTable | None:
    """The table at ``uri`` (with ``location``'s storage options), or ``None`` when there is
    none."""
    return open_delta(location or OfflineLocation.of(uri), uri)


def table_schema(table: DeltaTable) -> pa.Schema:
    """The table's current schema, as pyarrow's."""
    return pa.schema(table.schema().to_arrow())


def delete_where(uri: str, predicate: str, location: OfflineLocation | None = None) -> int:
    """Delete the rows of the table at ``uri`` that match ``predicate``; returns how many.

    A concurrent commit (a worker appending) makes the delete retry on the new version.

    Raises:
        OfflineStoreError: the delete kept conflicting, or Delta failed.
    """
    if not predicate.strip():
        msg = "refusing a delete without a predicate: it would delete every row"
        raise OfflineStoreError(msg)
    for attempt in range(_ATTEMPTS):
        table = open_table(uri, location)
        if table is None:
            return 0
        try:
            metrics = table.delete(predicate)
        except CommitFailedError as exc:
            if attempt == _ATTEMPTS - 1:
                msg = (
                    f"deleting rows of {uri} conflicted {_ATTEMPTS} times with other writers: {exc}"
                )
                raise OfflineStoreError(msg) from exc
            time.sleep(0.1 * (attempt + 1))
            continue
        except Exception as exc:  # deltalake raises its own, DataFusion's and OSError
            msg = f"deleting rows ({predicate}) of {uri} failed: {exc}"
            raise OfflineStoreError(msg) from exc
        return int(metrics.get("num_deleted_rows", 0))
    return 0  # pragma: no cover - the loop returns or raises


def vacuum_table(
    uri: str, retention_hours: int, location: OfflineLocation | None = None
) -> list[str]:
    """Delete the files of ``uri`` that no current row needs and that were removed from the
    table at least ``retention_hours`` ago; returns them. Versions older than that can no
    longer be read (time travel) afterwards."""
    table = open_table(uri, location)
    if table is None:
        return []
    try:
        return list(
            table.vacuum(
                retention_hours=retention_hours, dry_run=False, enforce_retention_duration=False
            )
        )
    except Exception as exc:  # deltalake's own and OSError
        msg = f"vacuuming {uri} failed: {exc}"
        raise OfflineStoreError(msg) from exc
