"""tracked links in messages and the clicks on them

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-05
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "tracked_links",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("delivery_key", sa.String(length=255), nullable=False),
        sa.Column("run_key", sa.String(length=255), nullable=True),
        sa.Column("journey_id", sa.String(length=128), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("node_id", sa.String(length=128), nullable=False),
        sa.Column("variant", sa.String(length=64), nullable=True),
        sa.Column("template", sa.String(length=128), nullable=False),
        sa.Column("user_id", sa.String(length=64), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("url", sa.Text(), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=True),
        sa.Column("tags", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_tracked_links")),
    )
    op.create_table(
        "link_clicks",
        sa.Column("event_id", sa.String(length=128), nullable=False),
        sa.Column("link_id", sa.String(length=32), nullable=False),
        sa.Column("delivery_key", sa.String(length=255), nullable=False),
        sa.Column("run_key", sa.String(length=255), nullable=True),
        sa.Column("journey_id", sa.String(length=128), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("node_id", sa.String(length=128), nullable=False),
        sa.Column("variant", sa.String(length=64), nullable=True),
        sa.Column("user_id", sa.String(length=64), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("event_id", name=op.f("pk_link_clicks")),
    )
    op.create_index("ix_link_clicks_journey_version", "link_clicks", ["journey_id", "version"])


def downgrade() -> None:
    op.drop_index("ix_link_clicks_journey_version", table_name="link_clicks")
    op.drop_table("link_clicks")
    op.drop_table("tracked_links")
