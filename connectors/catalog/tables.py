"""The catalog's tables (SQLAlchemy Core): one definition for the store's queries and for the
migrations (``connectors/catalog/migrations``), whose agreement a test checks."""

from __future__ import annotations

import sqlalchemy as sa

__all__ = [
    "ACTIVE",
    "RETIRED",
    "VERSION_TABLE",
    "api_keys",
    "audit",
    "erasures",
    "metadata",
    "objects",
    "schema_texts",
    "subject_versions",
    "topic_epochs",
    "training_sets",
]

VERSION_TABLE = "hw_alembic_version"
"""Where Alembic keeps the catalog's revision: our own name, so an application that keeps its
own Alembic revision in the same PostgreSQL database is never confused with ours."""

metadata = sa.MetaData()
schema_texts = sa.Table(
    "hw_schema_texts",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("fingerprint", sa.String(64), nullable=False, unique=True),
    sa.Column("schema", sa.Text, nullable=False),
)
subject_versions = sa.Table(
    "hw_subject_versions",
    metadata,
    sa.Column("subject", sa.String(255), primary_key=True),
    sa.Column("version", sa.Integer, primary_key=True),
    sa.Column("schema_id", sa.Integer, sa.ForeignKey("hw_schema_texts.id"), nullable=False),
    sa.Column("created_at_ms", sa.BigInteger, nullable=False),
)
objects = sa.Table(
    "hw_objects",
    metadata,
    sa.Column("kind", sa.String(32), primary_key=True),
    sa.Column("name", sa.String(255), primary_key=True),
    sa.Column("version", sa.Integer, primary_key=True),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("body", sa.Text, nullable=False),
    sa.Column("created_at_ms", sa.BigInteger, nullable=False),
    sa.Column("updated_at_ms", sa.BigInteger, nullable=False),
)
audit = sa.Table(
    "hw_audit",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("at_ms", sa.BigInteger, nullable=False),
    sa.Column("action", sa.String(64), nullable=False),
    sa.Column("target", sa.String(255), nullable=False),
    sa.Column("detail", sa.Text, nullable=False),
    sa.Column("actor", sa.String(255), nullable=False, server_default=""),
    sa.Column("outcome", sa.String(16), nullable=False, server_default="ok"),
)
api_keys = sa.Table(
    "hw_api_keys",
    metadata,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("name", sa.String(255), nullable=False),
    sa.Column("secret_hash", sa.String(128), nullable=False),
    sa.Column("secret_id", sa.String(16), nullable=False),
    sa.Column("scope", sa.String(16), nullable=False),
    sa.Column("grants", sa.Text, nullable=False),
    sa.Column("created_at_ms", sa.BigInteger, nullable=False),
    sa.Column("revoked_at_ms", sa.BigInteger, nullable=True),
    sa.Column("replaced_by", sa.String(32), nullable=True),
)
"""API keys: an HMAC of the secret under the server secret, never the secret itself."""
erasures = sa.Table(
    "hw_erasures",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("entity", sa.String(255), nullable=False),
    sa.Column("entity_key", sa.String(1024), nullable=False),
    sa.Column("requested_at_ms", sa.BigInteger, nullable=False),
    sa.Column("actor", sa.String(255), nullable=False),
    sa.Column("detail", sa.Text, nullable=False),
)
"""Right-to-erasure requests: which entity key, when, by whom; the worker skips its events."""

topic_epochs = sa.Table(
    "hw_topic_epochs",
    metadata,
    sa.Column("topic", sa.String(255), primary_key=True),
    sa.Column("topic_id", sa.String(64), nullable=False),
    sa.Column("generation", sa.Integer, nullable=False),
    sa.Column("start", sa.Text, nullable=False),
    sa.Column("created_at_ms", sa.BigInteger, nullable=False),
)
training_sets = sa.Table(
    "hw_training_sets",
    metadata,
    sa.Column("name", sa.String(255), primary_key=True),
    sa.Column("body", sa.Text, nullable=False),
    sa.Column("created_at_ms", sa.BigInteger, nullable=False),
)

ACTIVE, RETIRED = "active", "retired"
