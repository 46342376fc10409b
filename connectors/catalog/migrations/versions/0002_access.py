"""Access control and governance (issue 14): API keys, erasures, and who did what in the audit.

``hw_api_keys`` holds keys by id with an HMAC of their secret (never the secret), their scope
and grants; ``hw_erasures`` records each right-to-erasure request, which the worker reads to
skip the entity's events on replay; ``hw_audit`` gains the actor and the outcome of each entry
(rows written before this revision get ``actor=''`` and ``outcome='ok'``).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "hw_api_keys",
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
    op.create_table(
        "hw_erasures",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("entity", sa.String(255), nullable=False),
        sa.Column("entity_key", sa.String(1024), nullable=False),
        sa.Column("requested_at_ms", sa.BigInteger, nullable=False),
        sa.Column("actor", sa.String(255), nullable=False),
        sa.Column("detail", sa.Text, nullable=False),
    )
    with op.batch_alter_table("hw_audit") as batch:
        batch.add_column(sa.Column("actor", sa.String(255), nullable=False, server_default=""))
        batch.add_column(sa.Column("outcome", sa.String(16), nullable=False, server_default="ok"))


def downgrade() -> None:
    with op.batch_alter_table("hw_audit") as batch:
        batch.drop_column("outcome")
        batch.drop_column("actor")
    op.drop_table("hw_erasures")
    op.drop_table("hw_api_keys")
