"""``simulate`` itself on the time-skipping server: several cases in one
call, visits of a loop, steps no case reached, a run still going at the
horizon, templates rendered for the user, and what it refuses."""

from __future__ import annotations

from datetime import timedelta

import pytest
from temporalio.client import WorkflowExecutionStatus

from contracts.runs import workflow_id
from runtime.simulate import simulate
from runtime.simulate_model import Case, ScriptedEvent, Template, TestUser, World
from runtime.simulate_text import format_result

LOOP = """\
journey "three friends"
  entry api
  label check
  wait for event friend_joined up to 2d:
    on event:
      if count friend_joined >= 3:
        send sms "thanks"
      else:
        goto check
    on timeout:
      send sms "expired"
"""


async def test_cases_side_by_side_visits_and_never_reached(sim_env) -> None:
    joins = [ScriptedEvent(at=f"+{h}h", name="friend_joined") for h in (1, 5, 9)]
    sms = TestUser(identities={"phone": "13800000001"})
    result = await simulate(
        LOOP,
        [Case(name="three friends", user=sms, events=joins), Case(name="one friend", user=sms, events=joins[:1])],
        env=sim_env,
    )
    three, one = result.cases
    assert three.visits["wait-event-friend_joined"] == 3
    assert three.visits["goto-check"] == 2
    assert three.outcomes["if-count-friend_joined"] == ["else", "else", "branch:0"]
    assert [(m.template, m.status) for m in three.messages] == [("thanks", "sent")]
    assert one.outcomes["wait-event-friend_joined"] == ["event", "timeout"]
    assert [m.template for m in one.messages] == ["expired"]
    assert result.never_reached == []
    alone = await simulate(LOOP, [Case(name="nobody", user=sms)], env=sim_env)
    assert set(alone.never_reached) == {"if-count-friend_joined", "send-sms-thanks", "goto-check"}
    assert "never reached: if-count-friend_joined, send-sms-thanks, goto-check" in format_result(alone)


async def test_a_run_still_waiting_at_the_horizon_is_reported_and_ended(sim_env) -> None:
    result = await simulate(LOOP, [Case(name="waits")], env=sim_env, horizon=timedelta(hours=6))
    (case,) = result.cases
    assert (case.ended, case.waiting_at) == ("running", "wait-event-friend_joined")
    handle = sim_env.client.get_workflow_handle(workflow_id("sim-0", case.user_id))
    assert (await handle.describe()).status == WorkflowExecutionStatus.TERMINATED


async def test_templates_are_rendered_for_the_user(sim_env) -> None:
    world = World(templates={"hi": Template(body="{{ user.name }}，你好", channels={"sms": "【品牌】{{ user.name }}"})})
    user = TestUser(identities={"phone": "13800000002", "app_user_id": "a"}, attributes={"name": "小王"})
    source = 'journey "hello"\n  entry api\n  send sms "hi"\n  send push "hi"\n'
    result = await simulate(source, [Case(user=user)], world=world, env=sim_env)
    assert [m.body for m in result.cases[0].messages] == ["【品牌】小王", "小王，你好"]
    assert "“【品牌】小王”" in format_result(result)


async def test_a_start_behind_the_clock_is_refused(sim_env) -> None:
    with pytest.raises(ValueError, match="only moves forward"):
        await simulate(LOOP, [Case()], env=sim_env, start="2020-01-06T09:00+08:00")


@pytest.mark.parametrize(("horizon", "cases"), [(timedelta(days=401), 1), (timedelta(0), 1), (timedelta(days=1), 65)])
async def test_bounds(horizon: timedelta, cases: int) -> None:
    with pytest.raises(ValueError, match="at most"):
        await simulate(LOOP, [Case()] * cases, horizon=horizon)
