"""Files kept beside the Delta tables (a saved training set's entity input), read and
written wherever the offline store lives.

Local directories go through pyarrow's own file system; object stores through deltalake's
(``DeltaStorageHandler``), which takes the same storage options as the tables, so one set of
credentials reaches both. A write to an object store is a single put: readers see the whole
file or none of it.
"""

from __future__ import annotations

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq
from deltalake.fs import DeltaStorageHandler

from headwater.schemas.offline_location import OfflineLocation

__all__ = ["read_parquet", "write_parquet"]


def _filesystem(location: OfflineLocation, relative: str) -> tuple[pafs.FileSystem, str]:
    if location.is_local:
        return pafs.LocalFileSystem(), location.uri(*relative.split("/"))
    handler = DeltaStorageHandler(location.root, options=location.options())
    return pafs.PyFileSystem(handler), relative


def write_parquet(location: OfflineLocation, relative: str, table: pa.Table) -> None:
    """Write ``table`` as Parquet at ``relative`` (``/``-separated) below the location."""
    fs, path = _filesystem(location, relative)
    if location.is_local:
        fs.create_dir(path.rsplit("/", 1)[0], recursive=True)
        partial = f"{path}.partial"
        pq.write_table(table, partial, filesystem=fs)
        fs.move(partial, path)  # atomic on one file system: never a half-written file
        return
    pq.write_table(table, path, filesystem=fs)


def read_parquet(location: OfflineLocation, relative: str) -> pa.Table | None:
    """The Parquet file at ``relative`` below the location, or ``None`` when there is none."""
    fs, path = _filesystem(location, relative)
    if fs.get_file_info(path).type == pafs.FileType.NotFound:
        return None
    # On the calling thread, as ``offline_delta.read_delta`` reads: pyarrow's threads inside
    # deltalake's file system can abort the interpreter at exit.
    return pq.read_table(path, filesystem=fs, use_threads=False)
