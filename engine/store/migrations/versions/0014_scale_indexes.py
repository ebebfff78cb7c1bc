"""indexes for a store at a million users: a user's events by time (derived
stage and RFM) and by receipt (timeline, console user page), an event name's
events by time (audience counts, stats), a user's unsent run signals, sent
run signals by age (their cleanup); the events' own user_id index dropped

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-02

On PostgreSQL a plain ``CREATE INDEX`` holds a SHARE lock on ``events``
(writes wait) for as long as the build takes: measured 12-18 s per index on
1M events and 106-173 s on 10M, on two cores shared at load 22-31
(``bench/store_bench.py``). ``CREATE INDEX CONCURRENTLY`` cannot run inside
the transaction ``Store.migrate`` wraps every upgrade in, so this migration
does not use it; instead every index here is created ``IF NOT EXISTS``: on a
large live store, build them first by hand with ``CREATE INDEX CONCURRENTLY``
under the same names and definitions (README, Production) and the upgrade
finds them and only records the revision.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ix_events_user_at", "events", ["user_id", "occurred_at"], if_not_exists=True)
    op.create_index("ix_events_name_at", "events", ["name", "occurred_at"], if_not_exists=True)
    op.create_index("ix_events_user_received", "events", ["user_id", "received_at"], if_not_exists=True)
    # user_id leads the three indexes above: its own index is one more to
    # keep up on every insert, and the planner took it for the timeline,
    # reading every row of the user (83 ms for 10k) instead of a page's
    op.drop_index("ix_events_user_id", table_name="events", if_exists=True)
    op.create_index(
        "ix_run_signals_user_unsent",
        "run_signals",
        ["user_id"],
        sqlite_where=sa.text("sent_at IS NULL"),
        postgresql_where=sa.text("sent_at IS NULL"),
        if_not_exists=True,
    )
    op.create_index("ix_run_signals_sent_at", "run_signals", ["sent_at"], if_not_exists=True)


def downgrade() -> None:
    op.create_index("ix_events_user_id", "events", ["user_id"])
    op.drop_index("ix_run_signals_sent_at", table_name="run_signals")
    op.drop_index("ix_run_signals_user_unsent", table_name="run_signals")
    op.drop_index("ix_events_user_received", table_name="events")
    op.drop_index("ix_events_name_at", table_name="events")
    op.drop_index("ix_events_user_at", table_name="events")
