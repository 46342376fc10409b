"""The catalog's tables are versioned by Alembic revisions (``connectors/catalog/migrations``):
a catalog made by an earlier Headwater opens in this one with its data; the revisions and the
tables the code queries agree; a catalog from a newer Headwater is refused with the fix; two
processes opening a fresh catalog at once both succeed. On SQLite and PostgreSQL.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from headwater.connectors.catalog import Catalog, CatalogError
from headwater.connectors.catalog.migrate import HEAD, MIGRATIONS, stored_revision
from headwater.connectors.catalog.tables import VERSION_TABLE, metadata
from headwater.schemas.avro import AvroSchema
from headwater.schemas.loader import load_definitions
from tests.integration.test_catalog_backends import catalog_url, fresh_postgres

pytestmark = pytest.mark.integration
__all__ = ["catalog_url", "fresh_postgres"]  # fixtures used here

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def _revision(url: str) -> str | None:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            return stored_revision(conn)
    finally:
        engine.dispose()


def test_head_is_the_newest_revision() -> None:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    assert ScriptDirectory.from_config(config).get_heads() == [HEAD]


def test_a_fresh_catalog_is_at_head_and_its_tables_are_what_the_code_queries(
    catalog_url: str,
) -> None:
    Catalog(catalog_url).close()
    assert _revision(catalog_url) == HEAD
    engine = sa.create_engine(catalog_url)
    try:
        with engine.connect() as conn:
            context = MigrationContext.configure(conn, opts={"version_table": VERSION_TABLE})
            assert compare_metadata(context, metadata) == []
    finally:
        engine.dispose()


def test_a_catalog_from_before_migrations_opens_with_its_data(catalog_url: str) -> None:
    defs = load_definitions(EXAMPLES)
    schema = AvroSchema.from_file(EXAMPLES / "transactions.avsc")
    old = Catalog(catalog_url)
    old.save(defs, defs.feature_sets, {"by": "test"})
    schema_id = old.register_schema("raw.transactions-value", schema)
    audit = old.audit()
    old.close()
    # As Headwater made it before migrations existed: no revision table, (before topic
    # epochs existed) no hw_topic_epochs either, and none of revision 0002's tables/columns.
    engine = sa.create_engine(catalog_url)
    with engine.begin() as conn:
        conn.execute(sa.text(f"DROP TABLE {VERSION_TABLE}"))
        conn.execute(sa.text("DROP TABLE hw_topic_epochs"))
        conn.execute(sa.text("DROP TABLE hw_api_keys"))
        conn.execute(sa.text("DROP TABLE hw_erasures"))
        conn.execute(sa.text("ALTER TABLE hw_audit DROP COLUMN actor"))
        conn.execute(sa.text("ALTER TABLE hw_audit DROP COLUMN outcome"))
    engine.dispose()
    assert _revision(catalog_url) is None

    catalog = Catalog(catalog_url)
    try:
        assert catalog.definitions() == defs
        assert catalog.register_schema("raw.transactions-value", schema) == schema_id
        assert catalog.audit() == audit
        assert catalog.topic_epoch("raw.transactions") is None  # the adopted table is there
        assert _revision(catalog_url) == HEAD
    finally:
        catalog.close()


def test_a_catalog_migrated_by_a_newer_headwater_is_refused_with_the_fix(
    catalog_url: str,
) -> None:
    Catalog(catalog_url).close()
    engine = sa.create_engine(catalog_url)
    with engine.begin() as conn:
        conn.execute(sa.text(f"UPDATE {VERSION_TABLE} SET version_num = '0099'"))
    engine.dispose()
    with pytest.raises(CatalogError, match=r"revision '0099'.*upgrade Headwater") as info:
        Catalog(catalog_url)
    assert "password" not in str(info.value)


OPEN = """
import sys, time
from headwater.connectors.catalog import Catalog
time.sleep(max(0.0, float(sys.argv[2]) - time.time()))
catalog = Catalog(sys.argv[1])
print("opened", catalog.schema_versions())
catalog.close()
"""


def test_processes_opening_a_fresh_catalog_at_once_all_succeed(catalog_url: str) -> None:
    import time

    start = f"{time.time() + 2.0:.3f}"  # after every interpreter has imported headwater
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", OPEN, catalog_url, start],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(4)
    ]
    results = [p.communicate(timeout=120) for p in processes]
    assert [
        (p.returncode, out.strip()) for p, (out, _) in zip(processes, results, strict=True)
    ] == [(0, "opened []")] * 4, [err for _, err in results]
    assert _revision(catalog_url) == HEAD
