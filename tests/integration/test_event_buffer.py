"""The README's first-order journey end to end on the time-skipping server,
with the real engine activities and store: a user who orders on day 1, during
the ``wait 1d``, gets the second-order coupon (only ``wait for event``
consumes events; issue 12)."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest_asyncio
from sqlalchemy import select

from contracts.runs import JourneyInput, UserEvent, workflow_id
from dsl import compile_source
from engine import coupons, templates
from engine.channels.config import ChannelsConfig
from engine.settings import Settings
from engine.store import Store
from engine.store.models import CouponGrant, StepRecord
from engine.tags import tags_of
from engine.temporal import start_time_skipping
from runtime.worker import build_activities, build_worker
from tests.workflows.support import signal_at
from workflows.journey import JourneyWorkflow

TQ = "tq-event-buffer"
FIRST_ORDER = Path(__file__).resolve().parents[2] / "journeys" / "01_new_user_first_order.journey"


@pytest_asyncio.fixture(scope="module")
async def ts_env():
    env = await start_time_skipping()
    try:
        yield env
    finally:
        await env.shutdown()


async def test_an_order_on_day_one_gets_the_second_order_coupon(ts_env, tmp_path: Path) -> None:
    settings = Settings(database_url=f"sqlite:///{tmp_path / 'b.db'}", channels=ChannelsConfig(mode="outbox"))
    store = Store(settings.database_url)
    store.migrate()
    for name in ("welcome_coupon", "sorry_no_coupon", "general_coupon_reminder", "second_order_coupon"):
        templates.upsert_template(store, name, name)
    templates.upsert_template(store, "app_exclusive_coupon", "app")
    coupons.upsert_pool(store, "new_user_10", stock=10)
    coupons.upsert_pool(store, "second_order_15", stock=10)
    journey = compile_source(FIRST_ORDER.read_text(encoding="utf-8"))  # checked as a deploy checks it
    joined = UserEvent(id="join-1", name="joined_group", properties={"channel": "wecom_group"})
    async with build_worker(ts_env.client, build_activities(settings, store).all(), TQ):
        # as engine.starts starts an event entry: the trigger is also the first signal
        handle = await ts_env.client.start_workflow(
            JourneyWorkflow.run,
            JourneyInput(
                journey_id="first-order",
                version=1,
                hash=journey.content_hash(),
                user_id="m-1001",
                ir=journey,
                trigger_event=joined,
                search_attributes=False,
            ),
            id=workflow_id("first-order", "m-1001") + uuid.uuid4().hex[:6],
            task_queue=TQ,
            start_signal="event",
            start_signal_args=[joined],
        )
        await signal_at(ts_env, handle, "wait-1d", UserEvent(id="order-1", name="order_paid"))
        assert await handle.result() == "exited"  # no second order: the 14-day wait times out
    with store.read() as s:
        pools = list(s.scalars(select(CouponGrant.pool).order_by(CouponGrant.id)))
        waits = [
            (r.node_id, r.outcome, r.detail.get("event_id"))
            for r in s.scalars(select(StepRecord).order_by(StepRecord.seq))
            if r.kind == "wait_event"
        ]
        tags = tags_of(s, "m-1001")
    assert pools == ["new_user_10", "second_order_15"]
    assert "first_order" in tags and "second_order" not in tags
    assert waits == [("wait-event-order_paid", "event", "order-1"), ("wait-event-order_paid-2", "timeout", None)]
