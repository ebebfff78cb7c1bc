"""sends waiting for a user's last cap slot, for priority between journeys

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-02
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "cap_claims",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("delivery_key", sa.String(length=255), nullable=False),
        sa.Column("user_id", sa.String(length=64), nullable=False),
        sa.Column("journey_id", sa.String(length=128), nullable=True),
        sa.Column("priority", sa.Integer(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("decided", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_cap_claims")),
        sa.UniqueConstraint("delivery_key", name=op.f("uq_cap_claims_delivery_key")),
    )
    op.create_index("ix_cap_claims_user_at", "cap_claims", ["user_id", "at"])


def downgrade() -> None:
    op.drop_index("ix_cap_claims_user_at", table_name="cap_claims")
    op.drop_table("cap_claims")
