"""Fixtures for engine tests: a migrated ``Store`` on SQLite (always) and on
PostgreSQL when ``JOURNEYS_TEST_PG_URL`` points at a server (each test gets its
own schema there, dropped afterwards)."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from engine.settings import Settings
from engine.store import Store, normalize_url

PG_URL = os.environ.get("JOURNEYS_TEST_PG_URL")

# Without a PostgreSQL URL the backend is left out (one skipped test in
# test_engine_store.py says so) rather than skipping every store test.
BACKENDS = ["sqlite", "postgresql"] if PG_URL else ["sqlite"]


def _pg_store() -> Iterator[Store]:
    assert PG_URL
    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = create_engine(normalize_url(PG_URL))
    with admin.begin() as conn:
        conn.execute(text(f"CREATE SCHEMA {schema}"))
    sep = "&" if "?" in PG_URL else "?"
    store = Store(f"{PG_URL}{sep}options=-csearch_path%3D{schema}")
    try:
        store.migrate()
        yield store
    finally:
        store.dispose()
        with admin.begin() as conn:
            conn.execute(text(f"DROP SCHEMA {schema} CASCADE"))
        admin.dispose()


@pytest.fixture(params=BACKENDS)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    if request.param == "postgresql":
        yield from _pg_store()
        return
    s = Store(f"sqlite:///{tmp_path / 'journeys.db'}")
    s.migrate()
    yield s
    s.dispose()


@pytest.fixture
def settings() -> Settings:
    return Settings(database_url="sqlite://", cap_per_day=2, cap_per_week=5)
