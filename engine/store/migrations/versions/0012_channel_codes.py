"""channel codes (named placements with their own QR code) and their scans

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-04
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "channel_codes",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("vendor", sa.String(length=32), nullable=False),
        sa.Column("placement", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("tags", sa.JSON(), nullable=False),
        sa.Column("welcome_journey", sa.String(length=128), nullable=True),
        sa.Column("group_name", sa.String(length=128), nullable=True),
        sa.Column("staff", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("vendor_ref", sa.String(length=255), nullable=True),
        sa.Column("qr_url", sa.Text(), nullable=True),
        sa.Column("qr_image", sa.LargeBinary(), nullable=True),
        sa.Column("qr_image_type", sa.String(length=64), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("archived_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_channel_codes")),
        sa.UniqueConstraint("vendor", "placement", name="uq_channel_codes_vendor_placement"),
    )
    op.create_table(
        "channel_code_scans",
        sa.Column("event_id", sa.String(length=128), nullable=False),
        sa.Column("code_id", sa.String(length=32), nullable=False),
        sa.Column("user_id", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=64), nullable=False),
        sa.Column("contact", sa.Boolean(), nullable=False),
        sa.Column("new_user", sa.Boolean(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("event_id", name=op.f("pk_channel_code_scans")),
    )
    op.create_index("ix_channel_code_scans_code_at", "channel_code_scans", ["code_id", "at"])


def downgrade() -> None:
    op.drop_index("ix_channel_code_scans_code_at", table_name="channel_code_scans")
    op.drop_table("channel_code_scans")
    op.drop_table("channel_codes")
