"""A vendor outage that outlasts the send's retry deadline, then a replay:
a journey's webhook send (journey text, the real engine, the real webhook
provider against a local HTTP vendor that answers 503) is retried with its
key until the deadline, recorded failed with the reason, and — once the
vendor is back and the operator asks — sent by the worker's replay poller
with the same key, once."""

from __future__ import annotations

import asyncio
import contextlib

from sqlalchemy import select

from engine import replays, stats, templates
from engine.channels.config import ChannelsConfig, WebhookConfig
from engine.store.models import Delivery
from runtime.worker import build_activities, replay_failed_sends
from tests.integration.live_world import World, time_skipping
from tests.integration.receiver import Receiver

JOURNEY = """\
journey "outage"
  entry event ordered
  reentry always
  send webhook "order_hook"
"""


async def test_an_outage_past_the_deadline_fails_the_send_then_a_replay_sends_it_once(tmp_path) -> None:
    env = await time_skipping()
    try:
        with Receiver() as vendor:
            vendor.down = True
            world = World.make(env, tmp_path, "tq-outage")
            world.settings = world.settings.model_copy(
                update={
                    "channels": ChannelsConfig(mode="live", webhook=WebhookConfig(url=vendor.url, secret="s3cret")),
                    "send_retry_deadlines": {"webhook": 2},  # seconds: a short outage is "long" here
                }
            )
            templates.upsert_template(world.store, "order_hook", "order for {{ user.id }}")
            world.deploy("outage", JOURNEY)
            async with world.worker():
                outcome = await world.track("e1", "ordered", [("member_id", "m1")])
                assert len(outcome.started) == 1 and outcome.user_id is not None
                assert await world.result("outage", outcome.user_id) == "completed"
            (row,) = world.sent("outage")
            assert row.status == "failed"
            assert row.reason is not None and "gave up after" in row.reason and "503" in row.reason
            tried = {key for key, _ in vendor.posts}
            assert tried == {row.idempotency_key} and len(vendor.posts) >= 2  # retried with one key

            vendor.down = False
            done = replays.request(world.store, world.settings, "outage", node_id=row.node_id)
            assert done.requested == 1
            activities = build_activities(world.settings, world.store)
            stop = asyncio.Event()
            poller = asyncio.create_task(replay_failed_sends(activities, stop, every=0.05))
            try:
                for _ in range(400):
                    if _status(world, row.idempotency_key) == "sent":
                        break
                    await asyncio.sleep(0.05)
            finally:
                stop.set()
                with contextlib.suppress(asyncio.CancelledError):
                    await poller
            assert _status(world, row.idempotency_key) == "sent"
            assert {key for key, _ in vendor.posts} == {row.idempotency_key}  # only ever this key
            assert stats.node_counts(world.store, "outage")[row.node_id].sent == 1
            # asking again replays nothing: it went
            assert replays.request(world.store, world.settings, "outage").requested == 0
    finally:
        await env.shutdown()


def _status(world: World, key: str) -> str:
    with world.store.read() as s:
        return s.scalars(select(Delivery.status).where(Delivery.idempotency_key == key)).one()
