"""Delta Lake offline store: the validated event history of each feature-set version.

One table per version at ``<offline_root>/<set>__v<version>``, partitioned by event date.
Rows are the source's fields plus ``event_time_ms``, ``_partition``, ``_offset`` and
``_arrival_ms``, which is enough to compute any feature at any past time exactly.

Appends are exactly-once: each commit records, as Delta app transactions, the last Kafka
offset it holds per partition (``app_id = <writer>:<partition>``). A writer restarted after a
crash reads them back and drops what was already committed.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
from deltalake import CommitProperties, DeltaTable, Transaction, write_deltalake
from deltalake.exceptions import CommitFailedError, TableNotFoundError

from headwater.connectors.base import BaseOfflineStore
from headwater.connectors.errors import OfflineStoreError
from headwater.schemas.avro_types import ARROW_TYPES
from headwater.schemas.definitions import FeatureSet
from headwater.schemas.offline_location import OfflineLocation

__all__ = ["META_COLUMNS", "DeltaOfflineStore", "history_schema", "open_delta", "read_delta"]

META_COLUMNS = ("event_time_ms", "_event_date", "_partition", "_offset", "_arrival_ms")


def history_schema(field_types: Mapping[str, str | pa.DataType]) -> pa.Schema:
    """Arrow schema of a history table whose event fields have these types.

    A type is an Arrow type (``AvroSchema.arrow_types``: structs, lists, maps) or a type
    name (``schemas.avro_types.ARROW_TYPES``). Fields of nested records (``a.b``) live inside
    their record's struct column and get no column of their own.
    """
    fields = []
    for name, avro_type in field_types.items():
        if "." in name:
            continue
        if isinstance(avro_type, pa.DataType):
            fields.append(pa.field(name, avro_type, nullable=True))
            continue
        if avro_type not in ARROW_TYPES:
            msg = (
                f"field {name!r} has type {avro_type!r}, which the offline store cannot hold; "
                f"use one of {sorted(ARROW_TYPES)}, a record, an array or a map "
                "(a union may only combine null with one other type)"
            )
            raise OfflineStoreError(msg)
        fields.append(pa.field(name, ARROW_TYPES[avro_type], nullable=True))
    return pa.schema(
        [
            *fields,
            pa.field("event_time_ms", pa.int64(), nullable=False),
            pa.field("_event_date", pa.string(), nullable=False),
            pa.field("_partition", pa.int32(), nullable=False),
            pa.field("_offset", pa.int64(), nullable=False),
            pa.field("_arrival_ms", pa.int64(), nullable=False),
        ]
    )


def open_delta(
    location: OfflineLocation, uri: str, version: int | None = None
) -> DeltaTable | None:
    """The Delta table at ``uri`` (below ``location``, with its storage options), or ``None``
    when there is none."""
    try:
        return DeltaTable(uri, version=version, storage_options=location.options())
    except TableNotFoundError:
        return None


def read_delta(table: DeltaTable, columns: Sequence[str] | None = None) -> pa.Table:
    """The rows of a Delta table (at the version it was opened at), as one Arrow table.

    Scanned on the calling thread: with deltalake 1.6, a threaded scan (and
    ``to_pyarrow_table()``) leaves pyarrow threads inside deltalake's file system that
    abort the interpreter at exit ("terminate called without an active exception"), in
    most runs of a short command such as ``headwater retrieve --as-of``. Measured on 1M
    rows, 2 cores: 0.06 s either way.
    """
    return table.to_pyarrow_dataset().to_table(
        columns=list(columns) if columns is not None else None, use_threads=False
    )


class DeltaOfflineStore(BaseOfflineStore):
    """Offline store on local disk or object storage (``OfflineLocation``: S3 and
    S3-compatible servers, GCS, Azure), through deltalake.

    Concurrent writers (several workers, an erasure beside them) are safe on every store:
    each commit is a put-if-absent of the next log entry (S3's conditional ``If-None-Match``
    write, which deltalake 1.x uses), and a writer that loses the race retries on the new
    version.
    """

    def __init__(self, root: OfflineLocation | Path) -> None:
        self.location = OfflineLocation.of(root)

    def table_uri(self, feature_set: FeatureSet) -> str:
        return self.location.uri(f"{feature_set.name}__v{feature_set.version}")

    def _table(self, feature_set: FeatureSet, version: int | None = None) -> DeltaTable | None:
        return open_delta(self.location, self.table_uri(feature_set), version)

    def _existing(self, feature_set: FeatureSet, version: int | None = None) -> DeltaTable:
        table = self._table(feature_set, version)
        if table is None:
            msg = (
                f"no offline table at {self.table_uri(feature_set)}; "
                "run `headwater apply` and `headwater worker` first"
            )
            raise OfflineStoreError(msg)
        return table

    def create(self, feature_set: FeatureSet, field_types: Mapping[str, str | pa.DataType]) -> bool:
        """Create the empty table if missing; returns whether it was created."""
        if self._table(feature_set) is not None:
            return False
        if self.location.is_local:
            Path(self.table_uri(feature_set)).mkdir(parents=True, exist_ok=True)
        write_deltalake(
            self.table_uri(feature_set),
            history_schema(field_types).empty_table(),
            storage_options=self.location.options(),
            mode="append",
            partition_by=["_event_date"],
            name=feature_set.qualified_name,
            description=feature_set.description or None,
        )
        return True

    def committed_offsets(
        self, feature_set: FeatureSet, app_id_prefix: str, partitions: Iterable[int]
    ) -> dict[int, int]:
        table = self._table(feature_set)
        if table is None:
            return {}
        offsets: dict[int, int] = {}
        for partition in partitions:
            version = table.transaction_version(f"{app_id_prefix}:{partition}")
            if version is not None:
                offsets[partition] = version
        return offsets

    def append(
        self,
        feature_set: FeatureSet,
        rows: pa.Table,
        app_id_prefix: str,
        offsets: Mapping[int, int],
    ) -> None:
        transactions = [Transaction(f"{app_id_prefix}:{p}", o) for p, o in sorted(offsets.items())]
        for attempt in range(5):
            try:
                write_deltalake(
                    self.table_uri(feature_set),
                    rows,
                    storage_options=self.location.options(),
                    mode="append",
                    partition_by=["_event_date"],
                    # A source schema may gain fields compatibly (with defaults) while its
                    # feature-set version stays: the table gains the columns, earlier rows
                    # read them as null. Without it every append after such a change fails.
                    schema_mode="merge",
                    commit_properties=CommitProperties(app_transactions=transactions),
                )
                return
            except CommitFailedError as exc:
                # Another worker committed first; appends never conflict on data, so retry.
                if attempt == 4:
                    msg = f"appending to {self.table_uri(feature_set)} failed 5 times: {exc}"
                    raise OfflineStoreError(msg) from exc
                time.sleep(0.05 * (attempt + 1))

    def history(
        self,
        feature_set: FeatureSet,
        version: int | None = None,
        columns: Sequence[str] | None = None,
    ) -> pa.Table:
        return read_delta(self._existing(feature_set, version), columns)

    def history_rows(self, feature_set: FeatureSet, version: int | None = None) -> int:
        table = self._table(feature_set, version)
        if table is None:
            return 0
        actions = table.get_add_actions(flatten=True)
        if actions.num_rows == 0:
            return 0
        counts = pa.table(actions).column("num_records")
        # A file written without statistics has no count: read it to know.
        if counts.null_count:
            scanned: int = read_delta(table, ["event_time_ms"]).num_rows
            return scanned
        return int(pc.sum(counts).as_py() or 0)

    def history_batches(
        self,
        feature_set: FeatureSet,
        version: int | None = None,
        columns: Sequence[str] | None = None,
        batch_rows: int = 1_000_000,
    ) -> Iterator[pa.RecordBatch]:
        table = self._existing(feature_set, version)
        # On the calling thread, for the reason read_delta gives.
        yield from table.to_pyarrow_dataset().to_batches(
            columns=list(columns) if columns is not None else None,
            batch_size=batch_rows,
            use_threads=False,
        )

    def compact(
        self, feature_set: FeatureSet, *, vacuum_hours: int | None = None
    ) -> dict[str, int]:
        """Merge the many small files of micro-batch appends into few large ones.

        Rows, their order-relevant columns and the app transactions (the workers' positions)
        are unchanged; earlier table versions stay readable for time travel unless
        ``vacuum_hours`` is given, which deletes files unreferenced for that long.
        """
        table = self._table(feature_set)
        if table is None:
            msg = f"no offline table at {self.table_uri(feature_set)}; nothing to compact"
            raise OfflineStoreError(msg)
        before = len(table.file_uris())
        metrics = table.optimize.compact()
        removed = 0
        if vacuum_hours is not None:
            removed = len(
                table.vacuum(
                    retention_hours=vacuum_hours, dry_run=False, enforce_retention_duration=False
                )
            )
        return {
            "files_before": before,
            "files_after": len(self._existing(feature_set).file_uris()),
            "files_added": int(metrics.get("numFilesAdded", 0)),
            "files_removed": int(metrics.get("numFilesRemoved", 0)),
            "files_vacuumed": removed,
        }

    def version_at(self, feature_set: FeatureSet, at: datetime | int | None = None) -> int:
        """The table version a retrieval reads: the current one, the last committed at or
        before ``at`` (a tz-aware time), or ``at`` itself (a version number, checked).

        Raises:
            OfflineStoreError: no table, or nothing readable at ``at`` (named, with the fix).
        """
        table = self._table(feature_set)
        if table is None:
            msg = f"no offline table at {self.table_uri(feature_set)}; run `headwater apply` first"
            raise OfflineStoreError(msg)
        current = int(table.version())
        if at is None:
            return current
        if isinstance(at, int):
            if not 0 <= at <= current:
                msg = f"{feature_set.qualified_name}: no Delta version {at}; versions are 0 to {current}"
                raise OfflineStoreError(msg)
            return at
        # From the commit log rather than DeltaTable.load_as_version, which (deltalake 1.6)
        # leaves a thread behind that aborts the interpreter at exit.
        at_ms = at.timestamp() * 1000
        committed = [
            c["version"]
            for c in table.history()
            if c.get("timestamp", 0) <= at_ms and "version" in c
        ]
        if not committed:
            msg = (
                f"{feature_set.qualified_name}: the Delta table did not exist yet at {at.isoformat()}; "
                "give a later time or a version number"
            )
            raise OfflineStoreError(msg)
        return int(max(committed))

    def version(self, feature_set: FeatureSet) -> int | None:
        table = self._table(feature_set)
        return None if table is None else table.version()
