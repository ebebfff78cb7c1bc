from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect, select, text

from engine.store import Store, normalize_url
from engine.store.models import Base, User
from tests.engine.conftest import PG_URL


def _head() -> str:
    from alembic.script import ScriptDirectory

    from engine.store.db import alembic_config

    return ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head() or ""


def test_migrations_on_fresh_sqlite_create_every_table_and_match_models(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'nested' / 'fresh.db'}")  # parent dir is created
    store.migrate()
    store.migrate()  # idempotent
    with store.engine.connect() as conn:
        tables = set(inspect(conn).get_table_names())
        assert set(Base.metadata.tables) <= tables
        assert conn.execute(text("SELECT version_num FROM alembic_version")).scalar() == _head()
        diff = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), Base.metadata)
        assert diff == []
    store.dispose()


def test_migrated_store_matches_models(store: Store) -> None:
    with store.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), Base.metadata)
    assert diff == []


def test_sqlite_runs_in_wal_mode_with_busy_timeout(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'wal.db'}", busy_timeout_ms=1234)
    with store.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 1234
    store.dispose()


def test_sqlite_writer_waits_for_another_connections_write_lock(tmp_path: Path) -> None:
    """Another process (here: a raw connection) holds the write lock; our write
    polls for it, gets it once released, and the busy timeout still holds
    on the statements after BEGIN."""
    import sqlite3

    path = tmp_path / "locked.db"
    store = Store(f"sqlite:///{path}", busy_timeout_ms=10_000)
    store.migrate()
    other = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    other.execute("BEGIN IMMEDIATE")
    released = threading.Event()

    def release() -> None:
        threading.Event().wait(0.3)
        other.execute("COMMIT")
        released.set()

    threading.Thread(target=release).start()
    with store.session() as s:
        s.add(User(id="by-us", attributes={}))
        s.flush()  # the first statement begins the transaction
        assert released.is_set()  # we only got in after the other writer committed
    with store.read() as s:
        assert set(s.scalars(select(User.id))) == {"by-us"}
        assert s.connection().exec_driver_sql("PRAGMA busy_timeout").scalar() == 10_000
    other.close()
    store.dispose()


def test_sqlite_writer_gives_up_after_the_busy_timeout(tmp_path: Path) -> None:
    import sqlite3

    from sqlalchemy.exc import OperationalError

    path = tmp_path / "stuck.db"
    store = Store(f"sqlite:///{path}", busy_timeout_ms=200)
    store.migrate()
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    with pytest.raises(OperationalError, match="locked"), store.session() as s:
        s.add(User(id="never", attributes={}))
    other.execute("ROLLBACK")
    with store.session() as s:  # the connection is usable again
        s.add(User(id="later", attributes={}))
    other.close()
    store.dispose()


def test_session_commits_and_rolls_back(store: Store) -> None:
    with store.session() as s:
        s.add(User(id="u-commit", attributes={}))
    with pytest.raises(RuntimeError), store.session() as s:
        s.add(User(id="u-rollback", attributes={}))
        s.flush()
        raise RuntimeError("boom")
    with store.read() as s:
        assert set(s.scalars(select(User.id))) == {"u-commit"}


def test_concurrent_read_modify_write_is_serialised(store: Store) -> None:
    """Write sessions must not interleave a read and a write (lost updates)."""
    with store.session() as s:
        s.add(User(id="counter", attributes={"n": 0}))

    def bump(s) -> None:  # noqa: ANN001
        store.lock(s, "counter")
        user = s.get(User, "counter", with_for_update=store.dialect == "postgresql")
        user.attributes = {"n": user.attributes["n"] + 1}

    threads = [threading.Thread(target=lambda: [store.transact(bump) for _ in range(5)]) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    with store.read() as s:
        assert s.get(User, "counter").attributes["n"] == 40


@pytest.mark.skipif(
    not PG_URL and not os.environ.get("JOURNEYS_REQUIRE_PG"),
    reason="JOURNEYS_TEST_PG_URL not set: store tests ran on SQLite only (make test sets it)",
)
def test_postgresql_backend_is_exercised() -> None:
    """`make test` starts PostgreSQL (scripts/with-postgres): there this fails
    if the server could not be had, instead of silently testing SQLite only."""
    assert PG_URL


def test_normalize_url_picks_psycopg() -> None:
    assert normalize_url("postgres://a@h/db") == "postgresql+psycopg://a@h/db"
    assert normalize_url("postgresql://a@h/db") == "postgresql+psycopg://a@h/db"
    assert normalize_url("sqlite:///x.db") == "sqlite:///x.db"
