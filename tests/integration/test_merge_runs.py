"""Issue 12 item 3 on the time-skipping server with the real engine: two ids
of one person, each in a run of the same ``reentry once`` journey, are
merged during the wait; one run goes on, the other ends as ``merged`` before
its send, and the phone gets the SMS once.

Y (email only) is the older user, so Y survives the merge, while X's run
(entered first) is the one kept: the kept run can be the one under the
merged-away id."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest_asyncio

from engine import run_signals, timeline
from engine.events import link_identities
from engine.queries import lookup
from tests.integration.live_world import World, time_skipping

PHONE, EMAIL = "13800001111", "y@example.com"

ONCE = """
journey "merge once"
  entry event joined
  reentry once
  wait 1d
  send sms "hello"
"""

# A step Y's run sends (by email) before the merge, and X's run (kept)
# reaches after it: the person's email must not get it twice.
SAME_STEP = """
journey "merge same step"
  entry event joined
  reentry once
  wait for event go up to 3d:
    on event: pass
    on timeout: pass
  send email "welcome"
  wait 5d
"""


@pytest_asyncio.fixture(scope="module")
async def ts_env():
    env = await time_skipping()
    try:
        yield env
    finally:
        await env.shutdown()


async def _two_runs(world: World, journey_id: str, wait_node: str) -> tuple[str, str]:
    """Y (email, created first) and X (phone) each enter; X's run first."""
    y = link_identities(world.store, [("email", EMAIL)])
    x = (await world.track("join-x", "joined", [("phone", PHONE)])).user_id
    await world.waiting_at(journey_id, x, wait_node)
    await world.track("join-y", "joined", [("email", EMAIL)])
    await world.waiting_at(journey_id, y, wait_node)
    assert x is not None and x != y
    return x, y


async def test_a_merge_during_the_wait_ends_one_run_and_the_phone_gets_one_sms(ts_env, tmp_path: Path) -> None:
    world = World.make(ts_env, tmp_path, "tq-merge-once", "hello")
    world.deploy("merge-once", ONCE)
    async with world.worker():
        x, y = await _two_runs(world, "merge-once", "wait-1d")
        # identify Y with the phone (what /v1/identify stores), then the
        # dispatcher sends the merge's signal
        survivor = link_identities(world.store, [("email", EMAIL), ("phone", PHONE)])
        assert survivor == y
        assert await world.dispatcher.deliver_signals(ts_env.client, survivor) >= 1
        assert await world.result("merge-once", y) == "exited"  # at once, mid-wait
        assert await world.result("merge-once", x) == "completed"
    sent = [d for d in world.sent("merge-once") if d.status == "sent"]
    assert [(d.channel, d.user_id, d.run_key.startswith(f"journey:merge-once:{x}:")) for d in sent] == [
        ("sms", y, True)
    ]
    ended = {r.run_key.rsplit(":", 1)[0]: (r.outcome, r.end_reason) for r in world.runs("merge-once")}
    assert ended[f"journey:merge-once:{y}"][0] == "exited"
    assert ended[f"journey:merge-once:{y}"][1].startswith("merged")
    assert ended[f"journey:merge-once:{x}"] == ("completed", None)
    # the ended run's own end record says merged, before any send of it
    steps = [(s.run_key.startswith(f"journey:merge-once:{y}:"), s.kind, s.outcome) for s in world.steps("merge-once")]
    assert (True, "merge", "ended") in steps and (False, "merge", "kept") in steps
    assert (True, "end", "exited") in steps and not any(y_run and k == "send" for y_run, k, _ in steps)
    items = timeline.user_timeline(world.store, x)  # the merged-away id reads the survivor's
    assert any(i.kind == "step" and i.status == "exited" and i.reason == "merged" for i in items)
    assert lookup(world.store, "phone", PHONE) == y


async def test_without_the_signal_the_ended_run_still_sends_nothing(ts_env, tmp_path: Path) -> None:
    """A crash between the merge and its signal: the store ended the run, so
    its send is suppressed; the sweep sends the signal later."""
    world = World.make(ts_env, tmp_path, "tq-merge-crash", "hello")
    world.deploy("merge-crash", ONCE.replace("merge once", "merge crash"))
    async with world.worker():
        x, y = await _two_runs(world, "merge-crash", "wait-1d")
        link_identities(world.store, [("email", EMAIL), ("phone", PHONE)])  # no signal sent
        assert await world.result("merge-crash", x) == "completed"
        assert await world.result("merge-crash", y) == "completed"
        pending = run_signals.unsent(world.store)
        assert [p.kind for p in pending if p.kind == "merged"] == ["merged"]
        await world.dispatcher.sweep(ts_env.client, older_than=timedelta(0))
        assert run_signals.unsent(world.store) == []
    statuses = sorted(
        (d.run_key.startswith(f"journey:merge-crash:{x}:"), d.status, d.reason) for d in world.sent("merge-crash")
    )
    assert statuses == [(False, "suppressed", "run ended: merged"), (True, "sent", None)]


async def test_the_kept_run_does_not_send_a_step_the_ended_run_sent_to_that_address(ts_env, tmp_path: Path) -> None:
    world = World.make(ts_env, tmp_path, "tq-merge-step", "welcome")
    world.deploy("merge-step", SAME_STEP)
    async with world.worker():
        x, y = await _two_runs(world, "merge-step", "wait-event-go")
        await world.track("go-y", "go", [("email", EMAIL)])  # Y's run goes on and emails Y
        await world.waiting_at("merge-step", y, "wait-5d")
        survivor = link_identities(world.store, [("email", EMAIL), ("phone", PHONE)])
        await world.dispatcher.deliver_signals(ts_env.client, survivor)
        assert await world.result("merge-step", y) == "exited"
        # X's run (kept) times out, reaches the email step: the person's
        # email (Y's, now X's too) had it from Y's run
        assert await world.result("merge-step", x) == "completed"
    rows = sorted(
        (d.run_key.startswith(f"journey:merge-step:{x}:"), d.status, d.reason) for d in world.sent("merge-step")
    )
    assert rows == [(False, "sent", None), (True, "suppressed", "already sent to this address by a merged run")]
