"""Issue 12 item 5 on the time-skipping server with the real engine: the
user's timeline shows the events they sent and what became of each in each
run (entered, not taken, consumed by which wait, refused by re-entry and
why, ignored), and a send that needed retries with its attempts and last
error, so an operator can tell what happened from the timeline alone."""

from __future__ import annotations

from pathlib import Path

import pytest_asyncio
from temporalio.worker import Worker

from engine.activities import JourneyActivities
from engine.channels.base import OutboundMessage, ProviderResult
from engine.timeline import TimelineItem, user_timeline
from runtime.worker import build_worker
from tests.integration.live_world import World, time_skipping

PHONE = "13800003333"

FIRST_ORDER = """
journey "first order"
  entry event joined
  reentry once
  wait for event order_paid up to 3d:
    on event: send sms "thanks"
    on timeout: pass
"""


class FlakySms:
    """Fails twice in a way worth retrying (the vendor timed out), then sends."""

    channel = "sms"

    def __init__(self) -> None:
        self.calls = 0

    async def send(self, message: OutboundMessage) -> ProviderResult:
        self.calls += 1
        if self.calls <= 2:
            return ProviderResult(status="failed", error=f"vendor timeout #{self.calls}", retryable=True)
        return ProviderResult(status="sent", provider_message_id="m-1")


@pytest_asyncio.fixture(scope="module")
async def ts_env():
    env = await time_skipping()
    try:
        yield env
    finally:
        await env.shutdown()


def _flaky_worker(world: World, sms: FlakySms) -> Worker:
    activities = JourneyActivities(world.store, {"sms": sms}, world.settings)
    return build_worker(world.client, activities.all(), world.settings.task_queue)


def _events(items: list[TimelineItem]) -> dict[str, TimelineItem]:
    return {i.detail["event_id"]: i for i in items if i.kind == "event"}


async def test_the_timeline_says_what_became_of_each_event_and_of_a_retried_send(ts_env, tmp_path: Path) -> None:
    world = World.make(ts_env, tmp_path, "tq-event-timeline", "thanks")
    world.deploy("first-order", FIRST_ORDER)
    sms = FlakySms()
    ids = [("phone", PHONE)]
    async with _flaky_worker(world, sms):
        uid = (await world.track("j1", "joined", ids, channel="wecom_group")).user_id
        assert uid is not None
        await world.waiting_at("first-order", uid, "wait-event-order_paid")
        await world.track("c1", "clicked", ids)
        await world.track("o1", "order_paid", ids, amount=99)
        assert await world.result("first-order", uid) == "completed"
        await world.track("j2", "joined", ids)  # reentry once: refused
        assert await world.result("first-order", uid) == "refused"
        await world.track("v1", "viewed", ids)  # no run, no journey enters on it
    assert sms.calls == 3

    items = user_timeline(world.store, uid)
    events = _events(items)
    assert {k: (e.status, [r["outcome"] for r in e.detail["runs"]]) for k, e in events.items()} == {
        "j1": ("entered", ["entered"]),
        "c1": ("not taken", ["not taken"]),
        "o1": ("consumed", ["consumed"]),
        "j2": ("refused", ["refused"]),
        "v1": ("ignored", []),
    }
    assert events["o1"].detail["runs"][0]["node_id"] == "wait-event-order_paid"
    assert events["o1"].detail["properties"] == {"amount": 99}
    assert events["j2"].reason is not None and events["j2"].reason.startswith("reentry once: already entered")
    assert events["v1"].reason == "no open run and no journey entering on it"

    (send,) = [i for i in items if i.kind == "delivery"]
    assert send.status == "sent"
    assert send.summary == "sms · thanks: sent after 3 attempts"
    assert (send.detail["attempts"], send.detail["last_error"]) == (3, "vendor timeout #2")
