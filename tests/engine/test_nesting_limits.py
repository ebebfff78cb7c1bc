"""A journey nested as deep as the language allows runs in the worker: the
interpreter gets it through Temporal's data converter and walks it to the
innermost step (before the bound, 50 nested ifs deployed and then failed the
run forever)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest_asyncio

from dsl import compile_source
from dsl.limits import MAX_DEPTH
from engine.temporal import start_time_skipping
from runtime.worker import build_worker
from tests.workflows.fakes import FakeEngine
from tests.workflows.support import TQ, start


@pytest_asyncio.fixture(scope="module")
async def ts_env() -> AsyncIterator[object]:
    env = await start_time_skipping()
    try:
        yield env
    finally:
        await env.shutdown()


async def test_a_journey_at_the_depth_limit_runs_to_its_innermost_send(ts_env) -> None:  # noqa: ANN001
    lines = ['journey "deep"'] + ["  " * (i + 1) + f"if not tag t{i}:" for i in range(MAX_DEPTH)]
    lines.append("  " * (MAX_DEPTH + 1) + 'send sms "inner"')
    ir = compile_source("\n".join(lines) + "\n")
    engine = FakeEngine()
    async with build_worker(ts_env.client, engine.all(), TQ):
        handle = await start(ts_env, ir)
        assert await handle.result() == "completed"
    assert engine.sent_templates() == ["inner"]
