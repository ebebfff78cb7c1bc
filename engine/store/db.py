"""``Store``: one database (SQLite or PostgreSQL), sessions, locks, migrations.

Concurrency model, the same guarantees on both databases:

- SQLite: every write session starts with ``BEGIN IMMEDIATE``, so it holds the
  database's single write lock from its first statement; a read-then-write
  sequence (check the cap, then count the send) can never interleave with
  another writer, and never hits the "upgrade a read lock" deadlock that
  deferred transactions get. WAL mode lets readers go on meanwhile; the busy
  timeout makes writers queue instead of failing. Writers of one process
  first queue on a lock of their own: SQLite's busy handler polls with
  sleeps growing to 100 ms and no fairness, which under load (fifty activity
  threads) left some writers waiting far longer than the work in front of
  them; other processes still meet the busy handler.
- PostgreSQL: write sessions are READ COMMITTED; code that reads then writes
  takes ``Store.lock(session, key)`` (a transaction-scoped advisory lock)
  first, and stock is taken with a conditional ``UPDATE ... WHERE stock > 0``.

Unique constraints back every idempotency key, and ``transact`` retries a unit
of work that lost an insert race, so the loser re-reads the winner's row.
"""

from __future__ import annotations

import contextlib
import hashlib
import random
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import StaticPool

T = TypeVar("T")

MIGRATIONS_DIR = Path(__file__).with_name("migrations")


def normalize_url(url: str) -> str:
    """Accept the URLs operators paste (``postgres://``, ``postgresql://``) and
    pick the psycopg 3 driver the project depends on."""
    if url.startswith("postgres://"):
        url = "postgresql://" + url[len("postgres://") :]
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://") :]
    return url


class Store:
    """Owns the SQLAlchemy engine. ``Store(url)`` then ``store.migrate()`` once;
    use ``with store.session() as s:`` for a write transaction (committed on
    success, rolled back on error) and ``store.read()`` for read-only work."""

    def __init__(self, url: str, *, echo: bool = False, busy_timeout_ms: int = 30_000) -> None:
        self.url = normalize_url(url)
        parsed = make_url(self.url)
        self.dialect = parsed.get_backend_name()
        kwargs: dict[str, Any] = {"echo": echo, "future": True}
        if self.dialect == "sqlite":
            database = parsed.database
            memory = not database or database == ":memory:"
            if not memory:
                Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)
            kwargs["connect_args"] = {"check_same_thread": False, "timeout": busy_timeout_ms / 1000}
            if memory:
                kwargs["poolclass"] = StaticPool
        else:
            kwargs["pool_pre_ping"] = True
        self.engine: Engine = create_engine(self.url, **kwargs)
        if self.dialect == "sqlite":
            _install_sqlite_hooks(self.engine, busy_timeout_ms)
            writer = self.engine.execution_options(sqlite_begin="IMMEDIATE")
        else:
            writer = self.engine
        self._write = sessionmaker(bind=writer, expire_on_commit=False)
        self._writers: contextlib.AbstractContextManager[object] = (
            threading.RLock() if self.dialect == "sqlite" else contextlib.nullcontext()
        )
        self._read = sessionmaker(bind=self.engine, expire_on_commit=False)

    @classmethod
    def from_settings(cls, settings: Any) -> Store:
        """``Store.from_settings(Settings())``: the URL from ``DATABASE_URL``."""
        return cls(settings.database_url)

    @property
    def is_sqlite(self) -> bool:
        return self.dialect == "sqlite"

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A write transaction: serialised with other writers on SQLite."""
        with self._writers, self._write() as s, s.begin():
            yield s

    @contextmanager
    def read(self) -> Iterator[Session]:
        """A read-only transaction that does not block writers."""
        with self._read() as s, s.begin():
            yield s

    def lock(self, session: Session, key: str) -> None:
        """Serialise read-then-write work on ``key`` until the transaction ends.
        On SQLite the write session already holds the database lock."""
        if self.dialect == "postgresql":
            session.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _lock_key(key)})

    def transact(self, fn: Callable[[Session], T], *, retries: int = 5) -> T:
        """Run ``fn`` in a write transaction, retrying when it lost a race on a
        unique key or hit a transient lock/serialisation error."""
        for attempt in range(retries + 1):
            try:
                with self.session() as s:
                    return fn(s)
            except (IntegrityError, DBAPIError) as exc:
                if attempt >= retries or not _transient(exc):
                    raise
                time.sleep(0.01 * (attempt + 1))
        raise AssertionError("unreachable")

    def migrate(self, revision: str = "head") -> None:
        """Bring the schema to ``revision`` with Alembic (idempotent)."""
        from alembic import command

        with self.engine.begin() as conn:
            if self.dialect == "postgresql":
                # Several processes starting at once on one database (two APIs
                # and two workers of the production profile) would otherwise
                # all run the same DDL, and all but one crash on a duplicate
                # type or table: the others wait here, then find it at head.
                conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _lock_key("journeys:migrate")})
            command.upgrade(alembic_config(self.url, conn), revision)

    def dispose(self) -> None:
        self.engine.dispose()


def _lock_key(key: str) -> int:
    """A PostgreSQL advisory lock's 64-bit key for a name."""
    return int.from_bytes(hashlib.blake2b(key.encode("utf-8"), digest_size=8).digest(), "big", signed=True)


def alembic_config(url: str, connection: Any = None) -> Any:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


def _transient(exc: Exception) -> bool:
    if isinstance(exc, IntegrityError):
        return True
    message = str(getattr(exc, "orig", exc)).lower()
    return any(s in message for s in ("database is locked", "deadlock", "could not serialize", "busy"))


def _install_sqlite_hooks(engine: Engine, busy_timeout_ms: int) -> None:
    """Take transaction control away from the sqlite3 module (which would BEGIN
    lazily and DEFERRED) and issue BEGIN ourselves; set WAL and the timeout."""

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        mode = conn.get_execution_options().get("sqlite_begin", "DEFERRED")
        if mode == "IMMEDIATE":
            _begin_immediate(conn.connection.dbapi_connection, busy_timeout_ms)
        else:
            conn.exec_driver_sql(f"BEGIN {mode}")


def _begin_immediate(dbapi_conn: Any, busy_timeout_ms: int) -> None:
    """Take the write lock, polling every millisecond or so while another
    process holds it. SQLite's own busy handler sleeps 1, 2, 5, 10 … up to
    100 ms between tries, so a writer that lost a few rounds to a busy API or
    worker process slept far longer than the lock was held (the p99 of
    ``bench/latency_bench.py``). Other statements keep the busy timeout."""
    deadline = time.monotonic() + busy_timeout_ms / 1000
    pause = 0.0005
    cur = dbapi_conn.cursor()
    try:
        cur.execute("PRAGMA busy_timeout=0")
        while True:
            try:
                cur.execute("BEGIN IMMEDIATE")
                return
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) and "busy" not in str(exc) or time.monotonic() >= deadline:
                    raise OperationalError("BEGIN IMMEDIATE", None, exc) from exc
            time.sleep(pause * (0.5 + random.random()))
            pause = min(pause * 1.5, 0.004)
    finally:
        cur.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
        cur.close()
