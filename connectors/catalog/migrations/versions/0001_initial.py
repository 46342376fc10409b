"""The catalog's tables as of Headwater 0.1 (definitions, schemas, audit, topic epochs, training
sets).

Catalogs made before migrations existed have some or all of these tables already (created
on open with SQLAlchemy's ``create_all``): only the missing ones are created, so such a
catalog is adopted with its data, not recreated.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def _tables() -> list[tuple[str, list[sa.Column[object] | sa.Constraint]]]:
    return [
        (
            "hw_schema_texts",
            [
                sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
                sa.Column("fingerprint", sa.String(64), nullable=False, unique=True),
                sa.Column("schema", sa.Text, nullable=False),
            ],
        ),
        (
            "hw_subject_versions",
            [
                sa.Column("subject", sa.String(255), primary_key=True),
                sa.Column("version", sa.Integer, primary_key=True),
                sa.Column(
                    "schema_id", sa.Integer, sa.ForeignKey("hw_schema_texts.id"), nullable=False
                ),
                sa.Column("created_at_ms", sa.BigInteger, nullable=False),
            ],
        ),
        (
            "hw_objects",
            [
                sa.Column("kind", sa.String(32), primary_key=True),
                sa.Column("name", sa.String(255), primary_key=True),
                sa.Column("version", sa.Integer, primary_key=True),
                sa.Column("status", sa.String(16), nullable=False),
                sa.Column("body", sa.Text, nullable=False),
                sa.Column("created_at_ms", sa.BigInteger, nullable=False),
                sa.Column("updated_at_ms", sa.BigInteger, nullable=False),
            ],
        ),
        (
            "hw_audit",
            [
                sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
                sa.Column("at_ms", sa.BigInteger, nullable=False),
                sa.Column("action", sa.String(64), nullable=False),
                sa.Column("target", sa.String(255), nullable=False),
                sa.Column("detail", sa.Text, nullable=False),
            ],
        ),
        (
            "hw_topic_epochs",
            [
                sa.Column("topic", sa.String(255), primary_key=True),
                sa.Column("topic_id", sa.String(64), nullable=False),
                sa.Column("generation", sa.Integer, nullable=False),
                sa.Column("start", sa.Text, nullable=False),
                sa.Column("created_at_ms", sa.BigInteger, nullable=False),
            ],
        ),
        (
            "hw_training_sets",
            [
                sa.Column("name", sa.String(255), primary_key=True),
                sa.Column("body", sa.Text, nullable=False),
                sa.Column("created_at_ms", sa.BigInteger, nullable=False),
            ],
        ),
    ]


def upgrade() -> None:
    existing = set(sa.inspect(op.get_bind()).get_table_names())
    for name, columns in _tables():
        if name not in existing:
            op.create_table(name, *columns)


def downgrade() -> None:
    for name, _ in reversed(_tables()):
        op.drop_table(name)
