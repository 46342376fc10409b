"""Deleting one entity's rows from a (local) Delta table: values that try to break out of the
SQL literal delete exactly their own rows, never more."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pytest
from deltalake import DeltaTable, write_deltalake

from headwater.connectors.delta_erasure import (
    delete_where,
    key_predicate,
    sql_identifier,
    sql_literal,
    table_schema,
    vacuum_table,
)
from headwater.connectors.errors import OfflineStoreError
from headwater.schemas.errors import EventError

NASTY = [
    "o'brien",
    "' OR '1'='1",
    "x' OR user_id <> 'x",
    "back\\slash'",
    'double"quote',
    "üñí ☃",
    "semi; DROP TABLE t; --",
    "",
    "%_*",
]


def test_literals_and_identifiers_double_their_quotes() -> None:
    assert sql_literal("o'brien") == "'o''brien'"
    assert sql_literal("a\\b") == "'a\\b'"
    assert sql_identifier('we"ird') == '"we""ird"'
    with pytest.raises(EventError, match="NUL"):
        sql_literal("a\x00b")


def test_a_predicate_names_every_key_field_and_checks_integers() -> None:
    schema = pa.schema([("user_id", pa.string()), ("shop", pa.int64()), ("at", pa.float64())])
    assert key_predicate(schema, {"user_id": "u'1", "shop": "42"}) == (
        "(\"user_id\" = 'u''1') AND (\"shop\" = 42)"
    )
    assert key_predicate(schema, {"at": "1.5"}) == "(CAST(\"at\" AS VARCHAR) = '1.5')"
    with pytest.raises(EventError, match="'shop' holds integers; '4 OR 1=1' is not one") as e:
        key_predicate(schema, {"shop": "4 OR 1=1"})
    assert e.value.field == "shop"
    with pytest.raises(EventError, match="'merchant' is not a column"):
        key_predicate(schema, {"merchant": "m"})
    with pytest.raises(EventError, match="match every row"):
        key_predicate(schema, {})


def test_each_nasty_value_deletes_exactly_its_own_rows(tmp_path: Path) -> None:
    uri = str(tmp_path / "t")
    users = [*NASTY, "u1", "u2"]
    write_deltalake(
        uri,
        pa.table({"user_id": users * 2, "n": list(range(len(users) * 2))}),
        mode="append",
    )
    remaining = sorted(users * 2)
    for value in NASTY:
        table = DeltaTable(uri)
        deleted = delete_where(uri, key_predicate(table_schema(table), {"user_id": value}))
        assert deleted == 2, value
        remaining = [u for u in remaining if u != value]
        got = sorted(DeltaTable(uri).to_pyarrow_dataset().to_table().column("user_id").to_pylist())
        assert got == remaining, value
    assert remaining == ["u1", "u1", "u2", "u2"]


def test_integer_keys_and_a_table_that_does_not_exist(tmp_path: Path) -> None:
    uri = str(tmp_path / "ints")
    write_deltalake(uri, pa.table({"id": pa.array([1, 2, 2, 3], pa.int64())}), mode="append")
    assert delete_where(uri, key_predicate(table_schema(DeltaTable(uri)), {"id": "2"})) == 2
    assert DeltaTable(uri).to_pyarrow_dataset().to_table().column("id").to_pylist() == [1, 3]
    assert delete_where(str(tmp_path / "none"), '"id" = 1') == 0
    with pytest.raises(OfflineStoreError, match="without a predicate"):
        delete_where(uri, "  ")


def test_vacuum_keeps_old_files_until_the_retention_passed(tmp_path: Path) -> None:
    uri = str(tmp_path / "v")
    write_deltalake(uri, pa.table({"id": ["a", "b"]}), mode="append")
    delete_where(uri, "\"id\" = 'a'")
    assert vacuum_table(uri, 168) == []  # removed a moment ago: kept for time travel
    assert DeltaTable(uri, version=0).to_pyarrow_dataset().to_table().num_rows == 2
    removed = vacuum_table(uri, 0)
    assert len(removed) == 1
    assert DeltaTable(uri).to_pyarrow_dataset().to_table().column("id").to_pylist() == ["b"]
