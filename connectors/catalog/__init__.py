"""The catalog: definitions with their versions, schema ids, an audit trail, topic epochs and
training-set records, in SQLite or PostgreSQL (``store``), with its tables (``tables``) brought
to the current revision by Alembic migrations when opened (``migrate``)."""

from __future__ import annotations

from headwater.connectors.catalog.audit import AuditQuery, acting_as, current_actor, local_actor
from headwater.connectors.catalog.erasures import ErasureRecord, Erasures, TopicEnd
from headwater.connectors.catalog.keys import (
    ApiKey,
    Grants,
    IssuedKey,
    KeyStore,
    Scope,
    load_server_secret,
)
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
    "ApiKey",
    "AuditEntry",
    "AuditQuery",
    "Catalog",
    "CatalogError",
    "ErasureRecord",
    "Erasures",
    "Grants",
    "IssuedKey",
    "KeyStore",
    "SchemaVersion",
    "Scope",
    "TopicEnd",
    "TrainingSetRecord",
    "acting_as",
    "current_actor",
    "load_server_secret",
    "local_actor",
]
