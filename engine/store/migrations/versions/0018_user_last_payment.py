"""each user's last payment kept on ``users``, with the payment event names
it was taken for: an audience judges the lifecycle stage of a million users
from ``users`` alone instead of aggregating their payments

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-03

The payment event names are settings (``DerivedRules.payment_events``), which
a migration cannot read: the backfill takes the default names, and says so
in ``payment_events``. A store configured with other names reads its rows as
not kept (the audience aggregates, as before) until each user's next event or
``journeys repair-spans`` retakes them with the configured names.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0018"
down_revision: str | None = "0017"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# ``engine.derived.payment_mark(["order_paid"])``, spelt out: a migration
# stays what it was when written, whatever the default becomes later.
_DEFAULT_MARK = '["order_paid"]'
_DEFAULT_NAME = "order_paid"

# Correlated: one probe of ``ix_events_user_name_at`` per user.
_BACKFILL_SQLITE = (
    """UPDATE users SET payment_events = :mark, last_payment_at =
       (SELECT max(e.occurred_at) FROM events e WHERE e.user_id = users.id AND e.name = :name)""",
)
# One grouped pass over the payments (``ix_events_name_user_at``) and a hash
# join for the payers, then the others: each row is written once.
_BACKFILL_POSTGRESQL = (
    """UPDATE users SET last_payment_at = p.last_at, payment_events = :mark
       FROM (SELECT user_id, max(occurred_at) AS last_at FROM events WHERE name = :name GROUP BY user_id) AS p
       WHERE users.id = p.user_id""",
    "UPDATE users SET payment_events = :mark WHERE payment_events IS NULL",
)


def upgrade() -> None:
    op.add_column("users", sa.Column("last_payment_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column("users", sa.Column("payment_events", sa.String(512), nullable=True))
    bind = op.get_bind()
    for sql in _BACKFILL_POSTGRESQL if bind.dialect.name == "postgresql" else _BACKFILL_SQLITE:
        bind.execute(sa.text(sql), {"name": _DEFAULT_NAME, "mark": _DEFAULT_MARK})


def downgrade() -> None:
    with op.batch_alter_table("users") as batch:
        batch.drop_column("payment_events")
        batch.drop_column("last_payment_at")
