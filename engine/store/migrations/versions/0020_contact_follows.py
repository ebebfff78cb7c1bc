"""per staff member contact relations (WeCom)

Revision ID: 0020
Revises: 0019
Create Date: 2026-12-04

A WeCom customer removing one staff member (``del_follow_user``) may still
be a contact of another who can message them: ``engine.consent`` opts them
out of ``wecom`` only once none is left, which needs the relation per staff
member.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0020"
down_revision: str | None = "0019"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "contact_follows",
        sa.Column("user_id", sa.String(length=64), nullable=False),
        sa.Column("channel", sa.String(length=32), nullable=False),
        sa.Column("via", sa.String(length=255), nullable=False),
        sa.Column("following", sa.Boolean(), nullable=False),
        sa.Column("changed_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name=op.f("fk_contact_follows_user_id_users")),
        sa.PrimaryKeyConstraint("user_id", "channel", "via", name=op.f("pk_contact_follows")),
    )


def downgrade() -> None:
    op.drop_table("contact_follows")
