"""Replay files into a source's topic, keyed by entity, in the file's row order.

Row order is arrival order (ties in event time are broken by it), so rows are produced in
sequence through one idempotent producer, which keeps per-partition order on retries.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.json as pajson
import pyarrow.parquet as pq

from connectors.kafka import EventProducer
from schemas.avro import encode_wire
from schemas.definitions import Source
from schemas.errors import EventError

__all__ = ["read_table", "replay_table"]


def read_table(path: Path) -> pa.Table:
    """Read a Parquet, CSV or JSON-lines file into Arrow."""
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        return pq.read_table(path)
    if suffix == ".csv":
        return pacsv.read_csv(path)
    if suffix in (".jsonl", ".json", ".ndjson"):
        return pajson.read_json(path)
    msg = f"{path}: unsupported file type {suffix!r}; use .parquet, .csv or .jsonl"
    raise ValueError(msg)


def _batches(table: pa.Table, size: int) -> Iterator[list[dict[str, Any]]]:
    for batch in table.to_batches(max_chunksize=size):
        yield batch.to_pylist()


def replay_table(
    producer: EventProducer,
    source: Source,
    schema_id: int,
    key_fields: Sequence[str],
    table: pa.Table,
    *,
    progress: Callable[[int], None] | None = None,
) -> int:
    """Produce every row of ``table`` and wait until Kafka acknowledged all of them.

    Raises:
        EventError: a row does not match the source schema (names the row number).
        ProduceError: Kafka did not acknowledge every row.
    """
    row_number = 0
    for rows in _batches(table, 10_000):
        for row in rows:
            try:
                value = encode_wire(source.schema, schema_id, row)
            except EventError as exc:
                msg = f"row {row_number}: {exc}"
                raise EventError(msg, reason=exc.reason) from exc
            key = "\x1f".join(str(row[k]) for k in key_fields).encode()
            producer.produce(source.topic, value, key)
            row_number += 1
        if progress is not None:
            progress(len(rows))
    producer.flush()
    return row_number
