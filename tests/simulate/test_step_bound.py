"""``simulate(max_steps=…)``: a loop that waits a minute is stopped with
``TooManySteps`` while its clock is still far from the horizon, its run
terminated; a journey under the bound runs as without one."""

from __future__ import annotations

import re
from datetime import timedelta
from types import SimpleNamespace

import pytest
from temporalio.client import WorkflowExecutionStatus

from contracts.runs import workflow_id
from engine.temporal import start_time_skipping
from runtime import simulate as simulate_module
from runtime.simulate import TooManySteps, simulate
from runtime.simulate_model import Case

LOOP = """\
journey "fast loop"
  entry api
  label tick
  wait 1m
  goto tick
"""


async def test_a_fast_loop_stops_at_the_step_bound() -> None:
    env = await start_time_skipping()
    try:
        with pytest.raises(TooManySteps) as raised:
            await simulate(LOOP, [Case(name="ticker")], env=env, max_steps=100)
        match = re.search(r"took over 100 steps by \+(\S+) of 30d \(case 'ticker': (\d+), ", str(raised.value))
        assert match, raised.value
        assert match.group(1) != "30d" and int(match.group(2)) > 100
        handle = env.client.get_workflow_handle(workflow_id("sim-0", "u1"))
        assert (await handle.describe()).status == WorkflowExecutionStatus.TERMINATED
    finally:
        await env.shutdown()


async def test_under_the_bound_nothing_changes(sim_env) -> None:
    result = await simulate(LOOP, [Case(name="ticker")], env=sim_env, max_steps=10_000, horizon=timedelta(hours=1))
    (case,) = result.cases
    assert case.visits["wait-1m"] == 60 and case.ended == "running"
    with pytest.raises(ValueError, match="max_steps must be at least 1"):
        await simulate(LOOP, [Case(name="ticker")], env=sim_env, max_steps=0)


async def test_a_move_of_the_clock_may_outlast_the_clients_default_deadline() -> None:
    """A skip whose timers keep the worker busy over 30 s (the SDK's
    default deadline) must not fail as ``RPCError: Timeout expired``."""
    asked: list[tuple[timedelta, timedelta | None]] = []

    class TestService:
        async def unlock_time_skipping_with_sleep(self, request, timeout=None):
            asked.append((request.duration.ToTimedelta(), timeout))

    class Env:
        supports_time_skipping = True
        client = SimpleNamespace(test_service=TestService())

    await simulate_module._sleep(Env(), timedelta(days=30))  # type: ignore[arg-type]
    assert asked == [(timedelta(days=30), simulate_module.SLEEP_RPC_TIMEOUT)]
    assert simulate_module.SLEEP_RPC_TIMEOUT > timedelta(seconds=30)
