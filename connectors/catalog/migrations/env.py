"""Alembic's entry point, run only by ``headwater.connectors.catalog.migrate``: it migrates on
the connection (and in the transaction) that the caller holds, so the revision check, the
lock and the upgrade are one unit."""

from __future__ import annotations

from alembic import context

from headwater.connectors.catalog.tables import VERSION_TABLE, metadata

context.configure(
    connection=context.config.attributes["connection"],
    target_metadata=metadata,
    version_table=VERSION_TABLE,
    render_as_batch=True,  # SQLite alters tables by copying them
)
with context.begin_transaction():
    context.run_migrations()
