"""Issue 12 item 4 on the time-skipping server with the real engine: a tag
change reaches the user's running runs at once, from the API, a journey's
tag step or a derived stage, so ``exit when tag …`` does not wait for the
run's next send and ``wait for event tag_added where event.tag == "vip"`` wakes (``tag`` is a keyword: the
property is named as ``event.tag``).

Times are the runs' own (workflow time from their step records): a run that
only noticed at its next send would end 30 days after it entered."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest_asyncio

from engine import run_signals
from engine.tags import change_tags
from tests.integration.live_world import World, time_skipping

PHONE = "13800002222"


@pytest_asyncio.fixture(scope="module")
async def ts_env():
    env = await time_skipping()
    try:
        yield env
    finally:
        await env.shutdown()


def _span(world: World, journey_id: str) -> timedelta:
    """From the run's entry to its end, on the run's clock."""
    steps = world.steps(journey_id)
    entered = next(s.at for s in steps if s.kind == "journey" and s.outcome == "entered")
    ended = next(s.at for s in steps if s.kind == "end")
    return ended - entered


async def test_a_tag_added_through_the_api_ends_a_long_wait_at_once(ts_env, tmp_path: Path) -> None:
    world = World.make(ts_env, tmp_path, "tq-tags-api", "late")
    world.deploy(
        "tag-exit",
        'journey "tag exit"\n  entry event joined\n  exit when tag blacklisted\n  wait 30d\n  send sms "late"\n',
    )
    async with world.worker():
        uid = (await world.track("join-1", "joined", [("phone", PHONE)])).user_id
        assert uid is not None
        await world.waiting_at("tag-exit", uid, "wait-30d")
        # what POST /v1/users/{id}/tags does
        change_tags(world.store, uid, ["blacklisted"], source="api", add=True)
        assert await run_signals.deliver(world.store, ts_env.client, user_id=uid) == 1
        assert await world.result("tag-exit", uid) == "exited"
    assert _span(world, "tag-exit") < timedelta(hours=1)
    assert world.sent("tag-exit") == []
    assert [r.end_reason for r in world.runs("tag-exit")] == ["exit condition met"]


TAGGER = """
journey "tagger"
  entry event joined
  wait 1h
  tag add vip
  wait for event tag_added up to 1d:
    on event: send sms "echo"
    on timeout: pass
"""

WATCHER = """
journey "vip watcher"
  entry event joined
  wait for event tag_added where event.tag == "vip" up to 7d:
    on event: send sms "vip"
    on timeout: send sms "novip"
"""


async def test_a_journey_step_tag_wakes_another_runs_wait_and_not_its_own(ts_env, tmp_path: Path) -> None:
    world = World.make(ts_env, tmp_path, "tq-tags-step", "echo", "vip", "novip")
    world.deploy("tagger", TAGGER)
    world.deploy("watcher", WATCHER)
    async with world.worker():
        uid = (await world.track("join-2", "joined", [("phone", PHONE)])).user_id
        assert uid is not None
        assert await world.result("watcher", uid) == "completed"
        assert await world.result("tagger", uid) == "completed"
    watched = [
        (s.outcome, str(s.detail.get("event_id", ""))[:5]) for s in world.steps("watcher") if s.kind == "wait_event"
    ]
    assert watched == [("event", "tags-")]
    assert timedelta(hours=1) <= _span(world, "watcher") < timedelta(hours=2)  # at the tag step, not in 7 days
    assert [d.template for d in world.sent("watcher")] == ["vip"]
    # the tagging run is not told of its own change (it knows)
    assert [s.outcome for s in world.steps("tagger") if s.kind == "wait_event"] == ["timeout"]
    assert world.sent("tagger") == []


async def test_a_derived_stage_change_ends_a_wait_at_once(ts_env, tmp_path: Path) -> None:
    world = World.make(ts_env, tmp_path, "tq-tags-derived", "late")
    world.deploy(
        "stage-exit",
        'journey "stage exit"\n  entry event joined\n  exit when stage is paying\n  wait 30d\n  send sms "late"\n',
    )
    async with world.worker():
        uid = (await world.track("join-3", "joined", [("phone", PHONE)])).user_id
        assert uid is not None
        await world.waiting_at("stage-exit", uid, "wait-30d")
        await world.track("paid-3", "order_paid", [("phone", PHONE)], amount=10)  # stage:new → stage:paying
        assert await world.result("stage-exit", uid) == "exited"
    assert _span(world, "stage-exit") < timedelta(hours=1)
    assert world.sent("stage-exit") == []
