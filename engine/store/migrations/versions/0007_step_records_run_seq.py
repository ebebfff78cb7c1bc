"""step records unique per (run key, seq): a retried workflow task's records replace the first attempt's instead of adding rows

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01

A workflow task that failed after its local activity wrote the run's step
records (a signal arrived meanwhile: UNHANDLED_COMMAND) is retried from its
start and writes the same seqs again at its own ``workflow.now()``; the
natural key (it holds ``at``) kept both. The retry's rows are the ones the
run went on from, and they were written last, so of each (run key, seq)
the row with the highest id stays. seq 0 is left alone: it is the engine's
(a merge writes ``merge`` records there, several per run).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# The outer table by its name, not an alias: SQLite's DELETE takes none.
# The natural key's index, (run_key, seq, …), serves the inner lookup.
_DEDUPE = sa.text(
    "DELETE FROM step_records WHERE seq > 0 AND EXISTS ("
    "SELECT 1 FROM step_records AS later WHERE later.run_key = step_records.run_key "
    "AND later.seq = step_records.seq AND later.id > step_records.id)"
)


def upgrade() -> None:
    op.execute(_DEDUPE)
    op.create_index(
        "uq_step_records_run_seq",
        "step_records",
        ["run_key", "seq"],
        unique=True,
        sqlite_where=sa.text("seq > 0"),
        postgresql_where=sa.text("seq > 0"),
    )


def downgrade() -> None:
    # the removed duplicates are not brought back: they were the same steps
    op.drop_index("uq_step_records_run_seq", table_name="step_records")
