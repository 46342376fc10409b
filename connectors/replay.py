"""Read event files row by row and validate rows against a source's Avro schema.

Readers yield ``(row_number, record)`` with 1-based row numbers (a CSV header and blank
JSON lines are not counted); a record that cannot even be parsed comes as a ``BadRow``.
``RowValidator`` renames columns, coerces CSV text to the schema's types, turns the event
time into epoch ms and encodes the Confluent wire format; a bad value raises
``BadRowError`` naming the file, row and column.

Row order is arrival order (ties in event time are broken by it), so rows are produced in
sequence through one idempotent producer, which keeps per-partition order on retries.
"""

from __future__ import annotations

import csv
import hashlib
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import fastavro
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.json as pajson
import pyarrow.parquet as pq

from headwater.schemas.avro import encode_wire, event_time_ms
from headwater.schemas.definitions import Entity, Source
from headwater.schemas.errors import EventError

__all__ = [
    "EVENT_ID_HEADER",
    "SUPPORTED_SUFFIXES",
    "BadRow",
    "BadRowError",
    "RowValidator",
    "Rows",
    "event_id",
    "iter_file_rows",
    "read_table",
]

SUPPORTED_SUFFIXES = (".csv", ".parquet", ".jsonl", ".ndjson", ".json", ".avro")
EVENT_ID_HEADER = "hw.event_id"
_TRUE = {"true", "1", "yes", "t", "y"}
_FALSE = {"false", "0", "no", "f", "n"}

Rows = Iterator[tuple[int, "dict[str, Any] | BadRow"]]


@dataclass(frozen=True, slots=True)
class BadRow:
    """Why one input row cannot be produced."""

    origin: str
    row: int
    column: str | None
    reason: str

    def message(self) -> str:
        where = f", column {self.column!r}" if self.column else ""
        return f"{self.origin}: row {self.row}{where}: {self.reason}"

    def as_json(self) -> str:
        return json.dumps(
            {"file": self.origin, "row": self.row, "column": self.column, "reason": self.reason}
        )


class BadRowError(EventError):
    """A row of the input is malformed or does not match the source schema."""

    def __init__(self, bad: BadRow) -> None:
        super().__init__(bad.message(), field=bad.column, reason="bad_input")
        self.bad = bad


def event_id(source: str, identity: str, row: int) -> bytes:
    """The ``hw.event_id`` header: the same input row always gets the same id."""
    return hashlib.sha256(f"{source}\x1f{identity}\x1f{row}".encode()).hexdigest().encode()


def read_table(path: Path) -> pa.Table:
    """Read a Parquet, CSV, JSON-lines or Avro file into Arrow (no validation)."""
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        return pq.read_table(path)
    if suffix == ".csv":
        return pacsv.read_csv(path)
    if suffix in (".jsonl", ".json", ".ndjson"):
        return pajson.read_json(path)
    if suffix == ".avro":
        with path.open("rb") as fh:
            return pa.Table.from_pylist(list(fastavro.reader(fh)))
    raise ValueError(_unsupported(path))


def _unsupported(path: Path) -> str:
    return f"{path}: unsupported file type {path.suffix!r}; use {', '.join(SUPPORTED_SUFFIXES)}"


def iter_file_rows(path: Path) -> tuple[bool, Rows]:
    """``(rows_are_text, rows)`` of one file; CSV rows are text to coerce, the others typed.

    Raises:
        ValueError: the file type is not supported.
    """
    suffix = path.suffix.lower()
    if suffix == ".csv":
        return True, _csv_rows(path)
    if suffix in (".jsonl", ".json", ".ndjson"):
        return False, _jsonl_rows(path)
    if suffix == ".parquet":
        return False, _parquet_rows(path)
    if suffix == ".avro":
        return False, _avro_rows(path)
    raise ValueError(_unsupported(path))


def _csv_rows(path: Path) -> Rows:
    with path.open(newline="", encoding="utf-8") as fh:
        reader = csv.reader(fh)
        header = next(reader, None)
        if header is None:
            return
        n = 0
        for fields in reader:
            if not fields:
                continue
            n += 1
            if len(fields) != len(header):
                yield (
                    n,
                    BadRow(
                        str(path),
                        n,
                        None,
                        f"malformed row: {len(fields)} fields, the header has {len(header)}",
                    ),
                )
            else:
                yield n, dict(zip(header, fields, strict=True))


def _jsonl_rows(path: Path) -> Rows:
    with path.open(encoding="utf-8") as fh:
        n = 0
        for line in fh:
            if not line.strip():
                continue
            n += 1
            try:
                value = json.loads(line)
            except ValueError as exc:
                yield n, BadRow(str(path), n, None, f"malformed row: not JSON ({exc})")
                continue
            if isinstance(value, dict):
                yield n, value
            else:
                yield (
                    n,
                    BadRow(
                        str(path),
                        n,
                        None,
                        f"malformed row: a JSON {type(value).__name__}, expected an object",
                    ),
                )


def _parquet_rows(path: Path) -> Rows:
    n = 0
    for batch in pq.ParquetFile(path).iter_batches(batch_size=10_000):
        for row in batch.to_pylist():
            n += 1
            yield n, row


def _avro_rows(path: Path) -> Rows:
    with path.open("rb") as fh:
        for n, row in enumerate(fastavro.reader(fh), start=1):
            yield (
                n,
                row
                if isinstance(row, dict)
                else BadRow(str(path), n, None, "malformed row: not a record"),
            )


def _coerce(value: Any, avro_type: str, text: bool) -> Any:
    """``value`` as ``avro_type``; raises ValueError with the reason."""
    if avro_type in ("long", "int"):
        if text:
            try:
                return int(value.strip())
            except ValueError:
                raise ValueError(f"{value!r} is not an integer ({avro_type})") from None
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float | Decimal) and value == int(value):
            return int(value)
    elif avro_type in ("double", "float"):
        if text:
            try:
                return float(value)
            except ValueError:
                raise ValueError(f"{value!r} is not a number ({avro_type})") from None
        if isinstance(value, int | float | Decimal) and not isinstance(value, bool):
            return float(value)
    elif avro_type == "boolean":
        if text:
            if value.strip().lower() in _TRUE:
                return True
            if value.strip().lower() in _FALSE:
                return False
            raise ValueError(f"{value!r} is not a boolean (true/false)")
        if isinstance(value, bool):
            return value
    elif avro_type == "string":
        if isinstance(value, str):
            return value
    else:
        return value  # other types: the Avro encoder checks them
    raise ValueError(f"{type(value).__name__} value {value!r} is not a {avro_type}")


def _event_time(value: Any, column: str, *, naive_is_utc: bool = False) -> int:
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value)
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, datetime | int | str) or value is None:
        return event_time_ms(value, column, naive_is_utc=naive_is_utc)
    raise EventError(
        f"{type(value).__name__} {value!r} is not a time; give epoch ms or ISO-8601 with a zone"
    )


class RowValidator:
    """Checks and encodes rows of one source; ``mapping`` renames input columns first."""

    def __init__(
        self,
        source: Source,
        schema_id: int,
        entity: Entity | None,
        mapping: Mapping[str, str] | None = None,
    ) -> None:
        """``entity`` keys the messages (``Definitions.entity_of_source``); ``None``: no key."""
        self.source, self.schema_id, self.entity = source, schema_id, entity
        self.mapping = dict(mapping or {})
        schema = source.schema
        # Top-level fields; values of other forms (logical types, records, arrays, bytes as
        # base64...) are converted by the encoder, which names the field when one is bad.
        self._fields = [(name, form.kind, form.nullable) for name, form in schema.forms.items()]
        self._local_time = schema.forms[source.timestamp].local

    def encode(
        self, origin: str, row_no: int, raw: Mapping[str, Any], text: bool
    ) -> tuple[bytes, bytes]:
        """``(key, wire value)`` of one row; raises ``BadRowError``."""
        if self.mapping:
            raw = {self.mapping.get(k, k): v for k, v in raw.items()}
        record: dict[str, Any] = {}
        for name, kind, nullable in self._fields:
            if name not in raw:
                if nullable:
                    record[name] = None
                    continue
                raise BadRowError(BadRow(origin, row_no, name, "missing column"))
            value = raw[name]
            if value is None or (text and value == "" and (nullable or kind != "string")):
                if nullable:
                    record[name] = None
                    continue
                raise BadRowError(BadRow(origin, row_no, name, f"missing value for {kind} column"))
            try:
                if name == self.source.timestamp and kind in ("long", "int", "timestamp"):
                    record[name] = _event_time(value, name, naive_is_utc=self._local_time)
                else:
                    record[name] = _coerce(value, kind, text)
            except (EventError, ValueError) as exc:
                raise BadRowError(BadRow(origin, row_no, name, str(exc))) from exc
        try:
            value_bytes = encode_wire(self.source.schema, self.schema_id, record)
        except EventError as exc:
            raise BadRowError(BadRow(origin, row_no, exc.field, str(exc))) from exc
        try:
            key = self.entity.message_key(record) if self.entity else b""
        except EventError as exc:
            raise BadRowError(BadRow(origin, row_no, exc.field, str(exc))) from exc
        return key, value_bytes
