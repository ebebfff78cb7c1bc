"""``wait until event.<field>`` end to end on the time-skipping server: the
journey text checked as a deploy checks it, the real engine activities
(store, ledger, outbox channel), the send at the moment the trigger carried,
the step records in the store."""

from __future__ import annotations

import uuid
from datetime import timedelta
from pathlib import Path

import pytest_asyncio
from sqlalchemy import select

from contracts.runs import JourneyInput, UserEvent, workflow_id
from dsl import compile_source
from engine import templates
from engine.channels.config import ChannelsConfig
from engine.settings import Settings
from engine.store import Store
from engine.store.models import Delivery, StepRecord
from engine.temporal import start_time_skipping
from runtime.worker import build_activities, build_worker
from workflows.journey import JourneyWorkflow

TQ = "tq-wait-event-time"
SOURCE = """\
journey "appointment reminder"
  entry event booked
  reentry always
  wait until event.appointment_at - 2h
  send webhook "reminder"
"""


@pytest_asyncio.fixture(scope="module")
async def ts_env():
    env = await start_time_skipping()
    try:
        yield env
    finally:
        await env.shutdown()


async def test_a_reminder_two_hours_before_the_booked_appointment(ts_env, tmp_path: Path) -> None:
    settings = Settings(database_url=f"sqlite:///{tmp_path / 'w.db'}", channels=ChannelsConfig(mode="outbox"))
    store = Store(settings.database_url)
    store.migrate()
    templates.upsert_template(store, "reminder", "see you at {{ event.appointment_at }}")
    journey = compile_source(SOURCE)  # the checker accepts the new kind
    now = await ts_env.get_current_time()
    due = (now + timedelta(days=4)).replace(microsecond=0)
    async with build_worker(ts_env.client, build_activities(settings, store).all(), TQ):
        started = {}
        for user, appointment in (("soon", due.isoformat()), ("bad", "someday")):
            started[user] = await ts_env.get_current_time()
            handle = await ts_env.client.start_workflow(
                JourneyWorkflow.run,
                JourneyInput(
                    journey_id="appt",
                    version=1,
                    hash=journey.content_hash(),
                    user_id=user,
                    ir=journey,
                    trigger_event=UserEvent(id=f"b-{user}", name="booked", properties={"appointment_at": appointment}),
                    search_attributes=False,
                ),
                id=workflow_id("appt", user) + uuid.uuid4().hex[:6],
                task_queue=TQ,
            )
            assert await handle.result() == "completed"
    wait = journey.steps[0].id
    with store.read() as s:
        sends = {d.user_id: d for d in s.scalars(select(Delivery))}
        waits = {(r.user_id, r.outcome): r for r in s.scalars(select(StepRecord).where(StepRecord.node_id == wait))}
    assert {u: d.status for u, d in sends.items()} == {"soon": "sent", "bad": "sent"}
    assert abs(sends["soon"].at.replace(tzinfo=due.tzinfo) - (due - timedelta(hours=2))) < timedelta(seconds=1)
    assert sends["bad"].at.replace(tzinfo=due.tzinfo) - started["bad"] < timedelta(minutes=1)  # passed at once
    assert set(waits) == {("soon", "waiting"), ("bad", "no_date")}
    assert waits[("bad", "no_date")].detail["reason"] == "not a date"
