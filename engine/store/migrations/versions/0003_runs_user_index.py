"""runs by user: ingest looks up a user's open runs on every event

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ix_runs_user_open", "runs", ["user_id", "ended_at"])


def downgrade() -> None:
    op.drop_index("ix_runs_user_open", table_name="runs")
