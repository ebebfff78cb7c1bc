"""run signals (merges, tag changes) kept until Temporal accepted them; what dispatch did with an event; send retries' last error; a send's address digest

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "run_signals",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("user_id", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("workflow_id", sa.String(length=255), nullable=True),
        sa.Column("run_key", sa.String(length=255), nullable=True),
        sa.Column("source", sa.String(length=128), nullable=True),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_run_signals")),
    )
    op.create_index(
        "ix_run_signals_unsent",
        "run_signals",
        ["created_at"],
        sqlite_where=sa.text("sent_at IS NULL"),
        postgresql_where=sa.text("sent_at IS NULL"),
    )
    with op.batch_alter_table("events") as batch:
        batch.add_column(sa.Column("outcome", sa.JSON(), nullable=True))
    with op.batch_alter_table("deliveries") as batch:
        batch.add_column(sa.Column("last_error", sa.Text(), nullable=True))
        batch.add_column(sa.Column("address_hash", sa.String(length=64), nullable=True))
    op.create_index("ix_deliveries_journey_node_address", "deliveries", ["journey_id", "node_id", "address_hash"])


def downgrade() -> None:
    op.drop_index("ix_deliveries_journey_node_address", table_name="deliveries")
    with op.batch_alter_table("deliveries") as batch:
        batch.drop_column("address_hash")
        batch.drop_column("last_error")
    with op.batch_alter_table("events") as batch:
        batch.drop_column("outcome")
    op.drop_index("ix_run_signals_unsent", table_name="run_signals")
    op.drop_table("run_signals")
