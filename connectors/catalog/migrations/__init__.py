"""Alembic migrations of the catalog's tables (``versions/``), run by ``catalog.migrate``."""
