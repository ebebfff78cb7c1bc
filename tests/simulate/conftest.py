from __future__ import annotations

import pytest_asyncio

from engine.temporal import start_time_skipping


@pytest_asyncio.fixture(scope="session")
async def sim_env():
    """One time-skipping server for the simulation tests: each simulation
    starts at the next Monday 09:00 of its clock (or an audience's next
    daily or weekly broadcast; a `once at` one takes its own server), so
    sharing it is safe."""
    env = await start_time_skipping()
    try:
        yield env
    finally:
        await env.shutdown()
