"""users.attributes as jsonb on PostgreSQL: an audience reads a key of every
candidate's attributes, and a ``json`` value is parsed again for each key
read (25 of a 1M-user window query's 43 ms went there); jsonb reads the
stored tree. SQLite keeps its JSON text.

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-02

jsonb refuses what ``json`` stored as text: a lone surrogate escape
(``"\\ud83d"``, stored before ingest refused them; ``engine.repair``) and
``\\u0000``. Rows spelling either are cleaned first (U+FFFD, as
``journeys repair-unicode`` does), so the conversion cannot fail on old data.
The conversion rewrites the table under an exclusive lock: on the bench pool
(1M users) it took the time given in the README.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0017"
down_revision: str | None = "0016"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# The escapes jsonb refuses, as they appear in the stored JSON text.
_SUSPECT = " OR ".join(
    [f"attributes::text ILIKE '%\\ud{d}%' ESCAPE '!'" for d in "89abcdef"]
    + ["attributes::text LIKE '%\\u0000%' ESCAPE '!'"]
)


def upgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name != "postgresql":
        return
    from engine.repair import JSONB_REFUSED, clean

    rows = bind.execute(sa.text(f"SELECT id, attributes::text FROM users WHERE {_SUSPECT}")).all()
    for user_id, stored in rows:
        fixed, changed = clean(json.loads(stored), JSONB_REFUSED)
        if not changed:  # the text only looked like an escape ("\\ud83d" spelt out)
            continue
        bind.execute(
            sa.text("UPDATE users SET attributes = CAST(:value AS json) WHERE id = :id"),
            {"id": user_id, "value": json.dumps(fixed)},
        )
    op.execute("ALTER TABLE users ALTER COLUMN attributes TYPE jsonb USING attributes::jsonb")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE users ALTER COLUMN attributes TYPE json USING attributes::json")
