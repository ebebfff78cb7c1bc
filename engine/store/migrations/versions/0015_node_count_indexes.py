"""indexes for a journey with 100k runs: per-node counts read only an index
(step records by journey, node, outcome and run, the version kept beside
them), and a node's latest deliveries come in the index's order

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-02

Measured by ``bench/waiting_bench.py`` on a copy holding 100k runs (SQLite,
two cores at load 16): the per-outcome count went from 5.5 s to 0.4 s and
the per-node count from 4.7 s to 1.4 s; the node panel's latest deliveries
sorted all of the node's deliveries (1.4 s). ``IF NOT EXISTS`` as in 0014,
so a large live PostgreSQL store can build them ``CONCURRENTLY`` first.
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0015"
down_revision: str | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index(
        "ix_step_records_node_outcome_run",
        "step_records",
        ["journey_id", "node_id", "outcome", "run_key", "version"],
        if_not_exists=True,
    )
    op.create_index("ix_deliveries_journey_node_at", "deliveries", ["journey_id", "node_id", "at"], if_not_exists=True)


def downgrade() -> None:
    op.drop_index("ix_deliveries_journey_node_at", table_name="deliveries")
    op.drop_index("ix_step_records_node_outcome_run", table_name="step_records")
