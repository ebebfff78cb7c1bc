"""kept counts on a shelf shared by every API process

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-04

A 100k journey's first stats calls in a process took the full count (3.6 s
p99 against 17.5 ms p50, ``bench/waiting_bench.py``); with two API
processes each took its own. ``engine.shelf`` keeps those counts here.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0019"
down_revision: str | None = "0018"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "kept_counts",
        sa.Column("key", sa.String(length=64), nullable=False),
        sa.Column("journey_id", sa.String(length=128), nullable=False),
        sa.Column("value", sa.Text(), nullable=False),
        sa.Column("cost", sa.Float(), nullable=False),
        sa.Column("taken_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_kept_counts")),
    )


def downgrade() -> None:
    op.drop_table("kept_counts")
