from __future__ import annotations

import pytest_asyncio

from engine.temporal import start_time_skipping


@pytest_asyncio.fixture(scope="session")
async def ts_env():
    env = await start_time_skipping()
    try:
        yield env
    finally:
        await env.shutdown()
