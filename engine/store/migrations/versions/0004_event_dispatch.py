"""events remember whether they reached Temporal; one run per (journey, user, trigger event)

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-23
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("events") as batch:
        batch.add_column(sa.Column("dispatched_at", sa.DateTime(timezone=True), nullable=True))
    # Events stored before this revision were delivered (or given up on) then:
    # the sweep must not deliver history again.
    op.execute("UPDATE events SET dispatched_at = received_at")
    op.create_index(
        "ix_events_undispatched",
        "events",
        ["received_at"],
        sqlite_where=sa.text("dispatched_at IS NULL"),
        postgresql_where=sa.text("dispatched_at IS NULL"),
    )
    with op.batch_alter_table("runs") as batch:
        batch.add_column(sa.Column("trigger_event_id", sa.String(length=128), nullable=True))
        batch.create_unique_constraint("uq_runs_journey_trigger", ["journey_id", "user_id", "trigger_event_id"])


def downgrade() -> None:
    with op.batch_alter_table("runs") as batch:
        batch.drop_constraint("uq_runs_journey_trigger", type_="unique")
        batch.drop_column("trigger_event_id")
    op.drop_index("ix_events_undispatched", table_name="events")
    with op.batch_alter_table("events") as batch:
        batch.drop_column("dispatched_at")
