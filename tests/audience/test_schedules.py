"""Temporal Schedules for audience entries: spec and time zone from the IR,
pause/unpause/delete with the journey's status, idempotent sync, and a fired
schedule running a real broadcast."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest
from temporalio.client import ScheduleActionStartWorkflow, ScheduleRange
from temporalio.service import RPCError, RPCStatusCode
from temporalio.testing import WorkflowEnvironment

from api.app import create_app
from api.settings import ApiSettings
from contracts.broadcast import BroadcastProgress
from dsl.ir import Schedule
from dsl.parser import parse
from engine import broadcasts, catalog
from engine.schedules import (
    build_schedule,
    calendar_for,
    past_one_off,
    requeue_old_schedules,
    schedule_id,
    sync_audience_schedule,
)
from engine.store import Store
from tests.audience.harness import audience_journey, engine, population


def test_calendars_from_the_ir() -> None:
    daily = calendar_for(Schedule(every="day", time="10:00"))
    assert (list(daily.hour), list(daily.minute), list(daily.day_of_week)) == (
        [ScheduleRange(10)],
        [ScheduleRange(0)],
        [ScheduleRange(0, 6)],
    )
    monday = calendar_for(Schedule(every="week", time="09:30", weekday=0))
    assert list(monday.day_of_week) == [ScheduleRange(1)]  # Temporal: 0 = Sunday
    sunday = calendar_for(Schedule(every="week", time="09:30", weekday=6))
    assert list(sunday.day_of_week) == [ScheduleRange(0)]
    once = calendar_for(Schedule(every="once", time="10:05", date="2026-12-01"))
    assert [list(x) for x in (once.year, once.month, once.day_of_month, once.hour, once.minute)] == [
        [ScheduleRange(2026)],
        [ScheduleRange(12)],
        [ScheduleRange(1)],
        [ScheduleRange(10)],
        [ScheduleRange(5)],
    ]


def test_a_one_off_time_already_past_is_reported_where_it_is_written() -> None:
    text = """journey "x"
  timezone "Asia/Shanghai"
  entry audience where tag vip once at 2026-12-01 10:00

  send webhook "hi"
"""
    journey = parse(text)
    before = datetime(2026, 12, 1, 1, 59, tzinfo=UTC)  # 09:59 in Shanghai
    after = datetime(2026, 12, 1, 2, 0, tzinfo=UTC)  # 10:00 in Shanghai: the fire time is not in the future
    assert past_one_off(journey, before) is None
    found = past_one_off(journey, after)
    assert found is not None and found.code == "E240"
    assert (found.line, found.column) == (3, 3)
    assert "2026-12-01 10:00" in found.message and "Asia/Shanghai" in found.message
    daily = parse(text.replace("once at 2026-12-01 10:00", "every day at 10:00"))
    assert past_one_off(daily, after) is None


async def test_schedule_follows_the_journey(dev_env: WorkflowEnvironment) -> None:
    client = dev_env.client
    journey = parse(
        'journey "weekly"\n  entry audience where tag vip every monday at 09:30\n  timezone "Europe/Berlin"\n\n'
        '  send webhook "hi"\n'
    )
    journey_id = "weekly-sched"
    sid = schedule_id(journey_id)
    assert await sync_audience_schedule(client, journey_id, 1, "h1", journey, task_queue="tq-x") == "created"
    desc = await client.get_schedule_handle(sid).describe()
    assert desc.schedule.spec.time_zone_name == "Europe/Berlin"
    (cal,) = desc.schedule.spec.calendars
    assert (list(cal.hour), list(cal.minute), list(cal.day_of_week)) == (
        [ScheduleRange(9)],
        [ScheduleRange(30)],
        [ScheduleRange(1)],
    )
    action = desc.schedule.action
    assert isinstance(action, ScheduleActionStartWorkflow)
    assert (action.workflow, action.task_queue, action.id) == (
        "AudienceBroadcastWorkflow",
        "tq-x-broadcasts",
        "broadcast:weekly-sched",
    )
    assert not desc.schedule.state.paused
    assert desc.info.next_action_times and desc.info.next_action_times[0].weekday() in (0, 6)  # Monday in Berlin

    # redeploy (new version, new time) then pause, resume, stop
    daily = parse('journey "weekly"\n  entry audience where tag vip every day at 07:15\n\n  send webhook "hi"\n')
    assert await sync_audience_schedule(client, journey_id, 2, "h2", daily, task_queue="tq-x") == "updated"
    desc = await client.get_schedule_handle(sid).describe()
    (cal,) = desc.schedule.spec.calendars
    assert (list(cal.hour), list(cal.minute)) == ([ScheduleRange(7)], [ScheduleRange(15)])
    assert desc.schedule.spec.time_zone_name == "Asia/Shanghai"
    assert desc.schedule.state.note == "journey weekly-sched v2"
    assert await sync_audience_schedule(client, journey_id, 2, "h2", daily, status="paused") == "updated"
    assert (await client.get_schedule_handle(sid).describe()).schedule.state.paused
    assert await sync_audience_schedule(client, journey_id, 2, "h2", daily, status="active") == "updated"
    assert not (await client.get_schedule_handle(sid).describe()).schedule.state.paused
    assert await sync_audience_schedule(client, journey_id, 2, "h2", daily, status="stopped") == "deleted"
    with pytest.raises(RPCError) as err:
        await client.get_schedule_handle(sid).describe()
    assert err.value.status == RPCStatusCode.NOT_FOUND
    assert await sync_audience_schedule(client, journey_id, 2, "h2", daily, status="archived") == "absent"


async def test_a_non_audience_version_removes_the_schedule(dev_env: WorkflowEnvironment) -> None:
    client = dev_env.client
    journey_id, journey = audience_journey("tag vip")
    assert await sync_audience_schedule(client, journey_id, 1, "h", journey) == "created"
    api_entry = parse('journey "x"\n  entry api\n\n  send webhook "hi"\n')
    assert await sync_audience_schedule(client, journey_id, 2, "h", api_entry) == "deleted"


async def test_a_fired_schedule_broadcasts(dev_env: WorkflowEnvironment, db: Store) -> None:
    store = db
    expected = population(store, 30)
    journey_id, journey = audience_journey("tag vip and not tag blocked")
    async with engine(dev_env.client, store) as eng:
        await sync_audience_schedule(
            dev_env.client, journey_id, 1, journey.content_hash(), journey, task_queue=eng.task_queue, page_size=7
        )
        handle = dev_env.client.get_schedule_handle(schedule_id(journey_id))
        await handle.trigger()
        assert await eng.wait_runs_ended(journey_id, len(expected)) == len(expected)
        desc = await handle.describe()
        (fired,) = [a.action.workflow_id for a in desc.info.recent_actions]
        assert fired.startswith(f"broadcast:{journey_id}-")
        result = await dev_env.client.get_workflow_handle(fired, result_type=BroadcastProgress).result()
        assert (result.trigger, result.status, result.entered, result.page_size) == (
            "schedule",
            "completed",
            len(expected),
            7,
        )
        assert broadcasts.get(store, fired) == result
        assert eng.outbox_users(journey_id) == dict.fromkeys(expected, 1)
        await handle.delete()


async def test_a_schedule_made_before_the_broadcast_queue_moves_when_the_service_starts(
    dev_env: WorkflowEnvironment, db: Store
) -> None:
    """An audience schedule that starts its broadcast on the runs' queue (as
    schedules did before broadcasts had their own) is moved to the broadcast
    queue once the API reaches Temporal, keeping its pause; a stopped
    journey's, and one already on the broadcast queue, are left alone."""
    client, store = dev_env.client, db
    queue = f"tq-old-{uuid.uuid4().hex[:6]}"
    ids: dict[str, str] = {}
    for status in ("active", "paused", "stopped", "current"):
        journey_id, journey = audience_journey("tag vip")
        ids[status] = journey_id
        catalog.publish(
            store,
            journey_id,
            name=journey_id,
            source="",
            ir=journey.model_dump(mode="json"),
            hash=journey.content_hash(),
        )
        if status in ("paused", "stopped"):
            catalog.set_status(store, journey_id, status)
        old = build_schedule(
            journey_id, 1, journey.content_hash(), journey, paused=status == "paused", task_queue=queue
        )
        assert isinstance(old.action, ScheduleActionStartWorkflow)
        if status != "current":
            old.action.task_queue = queue  # where the broadcast itself ran before
        await client.create_schedule(schedule_id(journey_id), old)

    async def queue_of(journey_id: str) -> tuple[str, bool]:
        desc = await client.get_schedule_handle(schedule_id(journey_id)).describe()
        assert isinstance(desc.schedule.action, ScheduleActionStartWorkflow)
        return desc.schedule.action.task_queue, desc.schedule.state.paused

    app = create_app(ApiSettings(database_url="sqlite://", task_queue=queue), client=client, store=store)
    async with app.router.lifespan_context(app):
        assert app.state.requeue is not None
        assert sorted(await app.state.requeue) == sorted([ids["active"], ids["paused"]])
    assert await queue_of(ids["active"]) == (f"{queue}-broadcasts", False)
    assert await queue_of(ids["paused"]) == (f"{queue}-broadcasts", True)
    assert await queue_of(ids["stopped"]) == (queue, False)
    assert await queue_of(ids["current"]) == (f"{queue}-broadcasts", False)
    assert await requeue_old_schedules(client, store, task_queue=queue) == []  # once moved, nothing to do
    for journey_id in ids.values():
        await client.get_schedule_handle(schedule_id(journey_id)).delete()
