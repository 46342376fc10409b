"""Bringing a catalog database to the revision this version of Headwater expects.

The tables change between versions; a catalog created by one version must open in the next,
with its data. Alembic revisions (``migrations/versions``) describe each change; opening a
catalog applies the ones it lacks. Opening is frequent (every process, many CLI commands), so
the stored revision is read with one query and Alembic is loaded only when the database is
behind: new, or made by an older version (including those from before migrations, which the
first revision adopts by creating only the tables they lack).

The worker and the API often open a fresh catalog at the same moment. Migrations therefore run
under a lock: PostgreSQL's transaction-scoped advisory lock, or on SQLite an exclusive lock on
a file beside the database. Whoever waited re-reads the revision and finds nothing to do.
"""

from __future__ import annotations

import fcntl
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import sqlalchemy as sa

from headwater.connectors.catalog.records import CatalogError
from headwater.connectors.catalog.tables import VERSION_TABLE

__all__ = ["HEAD", "MIGRATIONS", "bring_to_head", "stored_revision"]

HEAD = "0002"
"""The newest revision in ``migrations/versions`` (a test checks they agree)."""
MIGRATIONS = Path(__file__).resolve().parent / "migrations"
_PG_LOCK_KEY = 0x68775F636174616C  # "hw_catal": one advisory lock id for catalog migrations


def stored_revision(conn: sa.Connection) -> str | None:
    """The catalog's revision (``None``: never migrated, new or from before migrations)."""
    if not sa.inspect(conn).has_table(VERSION_TABLE):
        return None
    return conn.execute(sa.text(f"SELECT version_num FROM {VERSION_TABLE}")).scalar()


def bring_to_head(engine: sa.Engine) -> None:
    """Apply the revisions the database lacks.

    Raises:
        CatalogError: the database is at a revision this version does not know (a newer
            Headwater migrated it).
    """
    with engine.connect() as conn:
        if stored_revision(conn) == HEAD:
            return
    with _sqlite_lock(engine), engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_LOCK_KEY})
        _upgrade(conn, stored_revision(conn))


def _upgrade(conn: sa.Connection, current: str | None) -> None:
    if current == HEAD:
        return
    from alembic import command
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = conn
    known = {script.revision for script in ScriptDirectory.from_config(config).walk_revisions()}
    if current is not None and current not in known:
        msg = (
            f"the catalog ({conn.engine.url.render_as_string(hide_password=True)}) is at "
            f"revision {current!r}, which this Headwater does not know (it knows up to {HEAD!r}): "
            "a newer Headwater migrated it; upgrade Headwater (pip install -U headwater) on "
            "every host that opens this catalog"
        )
        raise CatalogError(msg)
    command.upgrade(config, "head")


@contextmanager
def _sqlite_lock(engine: sa.Engine) -> Iterator[None]:
    """An exclusive lock on ``<database>.migrate.lock`` for a SQLite file (no-op otherwise)."""
    database = engine.url.database
    if engine.dialect.name != "sqlite" or not database or database == ":memory:":
        yield
        return
    with open(f"{database}.migrate.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
