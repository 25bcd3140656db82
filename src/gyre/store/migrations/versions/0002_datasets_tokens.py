"""Dataset versions linked to runs as inputs; hashed API tokens.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

_BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "datasets",
        sa.Column("dataset_id", _BigId, primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(256), nullable=False),
        sa.Column("digest", sa.String(64), nullable=False),
        sa.Column("num_rows", sa.BigInteger, nullable=True),
        sa.Column("schema", sa.Text, nullable=False),
        sa.Column("source", sa.Text, nullable=False),
        sa.Column("source_type", sa.String(32), nullable=False),
        sa.Column("created_time", sa.BigInteger, nullable=False),
    )
    op.create_index("ux_datasets_name_digest", "datasets", ["name", "digest"], unique=True)
    op.create_index("ix_datasets_digest", "datasets", ["digest"])
    op.create_table(
        "run_inputs",
        sa.Column("input_id", _BigId, primary_key=True, autoincrement=True),
        sa.Column(
            "run_id",
            sa.String(32),
            sa.ForeignKey("runs.run_id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("dataset_id", _BigId, sa.ForeignKey("datasets.dataset_id"), nullable=False),
        sa.Column("context", sa.String(64), nullable=False),
    )
    op.create_index("ux_run_inputs", "run_inputs", ["run_id", "dataset_id", "context"], unique=True)
    op.create_table(
        "api_tokens",
        sa.Column("name", sa.String(128), primary_key=True),
        sa.Column("token_hash", sa.String(64), nullable=False, unique=True),
        sa.Column("prefix", sa.String(16), nullable=False),
        sa.Column("scopes", sa.String(64), nullable=False),
        sa.Column("created_time", sa.BigInteger, nullable=False),
        sa.Column("revoked_time", sa.BigInteger, nullable=True),
    )


def downgrade() -> None:
    op.drop_table("api_tokens")
    op.drop_table("run_inputs")
    op.drop_table("datasets")
