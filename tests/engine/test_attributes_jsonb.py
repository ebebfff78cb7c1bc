"""``users.attributes`` is jsonb on PostgreSQL (0017), so an audience reads a
key of a million users' attributes without parsing each one's JSON text
again per key. jsonb refuses two things ``json`` kept as text — a lone
surrogate escape (stored before ingest refused them) and ``\\u0000`` — so
the migration cleans those rows first and converts the rest unchanged.
SQLite keeps its JSON text: there the migration changes nothing."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from alembic import command
from sqlalchemy import select, text
from sqlalchemy.exc import DataError

from dsl.parser import parse
from engine import audience
from engine.store import Store
from engine.store.db import alembic_config
from engine.store.models import User

NOW = datetime(2026, 12, 1, tzinfo=UTC)
STORED = {  # the JSON text as an older store holds it
    "u-lone": '{"name": "a\\ud83db", "city": "\\u4e0a\\u6d77"}',
    "u-nul": '{"name": "x\\u0000y", "points": 5000}',
    "u-literal": '{"note": "\\\\ud83d is only text", "city": "北京"}',
    "u-order": '{"zeta": 1, "alpha": [1, 2.5, {"b": true}], "points": 4800.0}',
}


def _attributes(store: Store) -> dict[str, dict]:
    with store.read() as s:
        return {u.id: u.attributes for u in s.scalars(select(User).where(User.id.in_(list(STORED))))}


def test_migration_0017_converts_and_cleans_what_jsonb_refuses(store: Store) -> None:
    pg = store.dialect == "postgresql"
    with store.engine.begin() as conn:
        command.downgrade(alembic_config(store.url, conn), "0016")
    value = "CAST(:a AS json)" if pg else ":a"
    with store.engine.begin() as conn:
        for user_id, stored in STORED.items():
            conn.execute(
                text(f"INSERT INTO users (id, attributes, created_at, updated_at) VALUES (:id, {value}, :at, :at)"),
                {"id": user_id, "a": stored, "at": NOW},
            )
    store.migrate()

    found = _attributes(store)
    assert found["u-literal"] == {"note": "\\ud83d is only text", "city": "北京"}  # not an escape: kept
    assert found["u-order"] == {"zeta": 1, "alpha": [1, 2.5, {"b": True}], "points": 4800.0}
    if pg:
        assert found["u-lone"] == {"name": "a\ufffdb", "city": "上海"}
        assert found["u-nul"] == {"name": "x\ufffdy", "points": 5000}
        with store.read() as s:
            kind = s.scalar(text("SELECT pg_typeof(attributes)::text FROM users LIMIT 1"))
        assert kind == "jsonb"
    else:  # SQLite's JSON text is as it was (journeys repair-unicode mends it)
        assert found["u-lone"] == {"name": "a\ud83db", "city": "上海"}
        assert found["u-nul"] == {"name": "x\x00y", "points": 5000}

    # the audience compiler reads the converted column (jsonb_typeof on PostgreSQL)
    journey = parse(
        'journey "j"\n  entry audience where user.points >= 4800 and user.city != "上海" every day at 10:00\n  exit\n'
    )
    cond = journey.entry.where  # type: ignore[union-attr]
    page = audience.select_page(store, cond, after=None, limit=10, now=NOW)
    assert page.user_ids == ["u-nul", "u-order"]


def test_postgresql_refuses_to_store_a_lone_surrogate_in_attributes(store: Store) -> None:
    """What the repair tool mends cannot be written there any more (the API
    refuses it first; this is the store's own guard)."""
    if store.dialect != "postgresql":
        with store.session() as s:  # SQLite stores the escape as text (found by repair-unicode)
            s.add(User(id="u-lone", attributes={"name": "a\ud83d"}))
        return
    with pytest.raises(DataError):
        with store.session() as s:
            s.add(User(id="u-lone", attributes={"name": "a\ud83d"}))
