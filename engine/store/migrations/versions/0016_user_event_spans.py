"""each user's first and last event time kept on ``users`` (lifecycle stage
for an audience without aggregating every event), and a user's runs by entry
time

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-02

The backfill is one grouped pass over ``events``: measured on PostgreSQL with
1M users / ~10M events in ``bench/audience_bench.py``'s pool (README,
Production). The index is ``IF NOT EXISTS`` as in 0014, so a large live store
can build it ``CONCURRENTLY`` first.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0016"
down_revision: str | None = "0015"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Correlated subqueries: each reads two ends of ``ix_events_user_at``, and
# SQLite and PostgreSQL both take this spelling.
_BACKFILL_SQLITE = """
UPDATE users SET
  first_event_at = (SELECT min(e.occurred_at) FROM events e WHERE e.user_id = users.id),
  last_event_at = (SELECT max(e.occurred_at) FROM events e WHERE e.user_id = users.id)
"""
# One grouped pass and a hash join: at a million users far cheaper than two
# index probes per user.
_BACKFILL_POSTGRESQL = """
UPDATE users SET first_event_at = f.first_at, last_event_at = f.last_at
FROM (SELECT user_id, min(occurred_at) AS first_at, max(occurred_at) AS last_at
      FROM events GROUP BY user_id) AS f
WHERE users.id = f.user_id
"""


def upgrade() -> None:
    op.add_column("users", sa.Column("first_event_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column("users", sa.Column("last_event_at", sa.DateTime(timezone=True), nullable=True))
    bind = op.get_bind()
    op.execute(_BACKFILL_POSTGRESQL if bind.dialect.name == "postgresql" else _BACKFILL_SQLITE)
    op.create_index("ix_runs_user_entered", "runs", ["user_id", "entered_at"], if_not_exists=True)


def downgrade() -> None:
    op.drop_index("ix_runs_user_entered", table_name="runs")
    with op.batch_alter_table("users") as batch:
        batch.drop_column("last_event_at")
        batch.drop_column("first_event_at")
