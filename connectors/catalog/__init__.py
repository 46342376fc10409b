"""The catalog: definitions with their versions, schema ids, an audit trail, topic epochs and
training-set records, in SQLite or PostgreSQL (``store``), with its tables (``tables``) brought
to the current revision by Alembic migrations when opened (``migrate``)."""

from __future__ import annotations

from headwater.connectors.catalog.erasures import ErasureRecord, Erasures, TopicEnd
from headwater.connectors.catalog.records import (
    AuditEntry,
    CatalogError,
    SchemaVersion,
    TrainingSetRecord,
)
from headwater.connectors.catalog.store import Catalog
from headwater.connectors.catalog.tables import ACTIVE, RETIRED

__all__ = [
    "ACTIVE",
    "RETIRED",
    "AuditEntry",
    "Catalog",
    "CatalogError",
    "ErasureRecord",
    "Erasures",
    "SchemaVersion",
    "TopicEnd",
    "TrainingSetRecord",
]
