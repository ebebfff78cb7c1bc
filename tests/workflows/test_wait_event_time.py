"""``wait until event.<field> [± offset] [at HH:MM]``: a moment carried by the
event that woke the run, on the time-skipping server."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta

from contracts.activities import StepRecord
from contracts.runs import UserEvent
from runtime.worker import build_worker
from tests.workflows.fakes import FakeEngine
from tests.workflows.support import SHANGHAI, TQ, journey, shanghai, start, waiting_at
from workflows.journey import JourneyWorkflow

APPOINTMENT = journey(
    """
    journey "appointment"
      entry event booked
      wait until event.appointment_at - 2h
      send sms "reminder"
    """
)
WAIT = "wait-until-event-appointment_at-minus-2h"


def records_of(engine: FakeEngine, node: str) -> list[StepRecord]:
    return [r for r in engine.records if r.node_id == node]


def booked(**properties: object) -> UserEvent:
    return UserEvent(id="b1", name="booked", properties=properties)


async def run(env, engine: FakeEngine, ir, trigger: UserEvent | None, **kw) -> str:
    async with build_worker(env.client, engine.all(), TQ):
        handle = await start(env, ir, trigger_event=trigger, **kw)
        return await handle.result()


def close(a: datetime, b: datetime) -> bool:
    return abs(a - b) < timedelta(seconds=1)


async def test_sleeps_until_the_moment_minus_the_offset(ts_env):
    engine = FakeEngine()
    now = await ts_env.get_current_time()
    appointment = (now + timedelta(days=3)).replace(microsecond=0)
    async with build_worker(ts_env.client, engine.all(), TQ):
        handle = await start(ts_env, APPOINTMENT, trigger_event=booked(appointment_at=appointment.isoformat()))
        await waiting_at(handle, WAIT)
        assert engine.sends == []
        assert await handle.result() == "completed"
    (send,) = engine.sends
    assert close(send.now, appointment - timedelta(hours=2))
    assert [r.outcome for r in records_of(engine, WAIT)] == ["waiting"]
    assert records_of(engine, WAIT)[0].detail["until"] == (appointment - timedelta(hours=2)).isoformat()


async def test_a_past_moment_passes_at_once_and_says_so(ts_env):
    engine = FakeEngine()
    now = await ts_env.get_current_time()
    assert await run(ts_env, engine, APPOINTMENT, booked(appointment_at=(now - timedelta(days=1)).isoformat())) == (
        "completed"
    )
    (send,) = engine.sends
    assert send.now - now < timedelta(minutes=1)
    (record,) = records_of(engine, WAIT)
    assert record.outcome == "past"
    assert record.detail["field"] == "appointment_at" and record.detail["event"] == "booked"


async def test_a_missing_field_passes_at_once(ts_env):
    engine = FakeEngine()
    now = await ts_env.get_current_time()
    assert await run(ts_env, engine, APPOINTMENT, booked(other="x")) == "completed"
    assert engine.sends[0].now - now < timedelta(minutes=1)
    (record,) = records_of(engine, WAIT)
    assert (record.outcome, record.detail["reason"]) == ("no_date", "missing")


async def test_a_value_that_is_not_a_date_passes_at_once(ts_env):
    engine = FakeEngine()
    assert await run(ts_env, engine, APPOINTMENT, booked(appointment_at="next tuesday")) == "completed"
    (record,) = records_of(engine, WAIT)
    assert (record.outcome, record.detail["reason"], record.detail["value"]) == (
        "no_date",
        "not a date",
        "next tuesday",
    )
    assert len(engine.sends) == 1


async def test_a_naive_date_time_is_local_one_with_an_offset_is_that_instant(ts_env):
    ir = journey(
        """
        journey "naive"
          wait until event.at
          send sms "go"
        """
    )
    now = await ts_env.get_current_time()
    day = (now + timedelta(days=5)).astimezone(SHANGHAI).date()
    naive, aware = FakeEngine(), FakeEngine()
    await run(ts_env, naive, ir, booked(at=f"{day.isoformat()}T10:00:00"))
    await run(ts_env, aware, ir, booked(at=f"{day.isoformat()}T10:00:00Z"))
    assert close(naive.sends[0].now, datetime.combine(day, time(10, 0), tzinfo=SHANGHAI))
    assert close(aware.sends[0].now, datetime.combine(day, time(10, 0), tzinfo=UTC))


async def test_a_bare_date_is_local_midnight_or_the_given_time(ts_env):
    at_time = journey(
        """
        journey "bare"
          wait until event.term_start - 1d at 09:30
          send sms "tomorrow"
        """
    )
    midnight = journey(
        """
        journey "bare-midnight"
          wait until event.term_start
          send sms "today"
        """
    )
    now = await ts_env.get_current_time()
    day = (now + timedelta(days=10)).astimezone(SHANGHAI).date()
    first, second = FakeEngine(), FakeEngine()
    await run(ts_env, first, at_time, booked(term_start=day.isoformat()))
    await run(ts_env, second, midnight, booked(term_start=day.isoformat()))
    local = shanghai(first.sends[0].now)
    assert (local.date(), local.time().replace(microsecond=0)) == (day - timedelta(days=1), time(9, 30))
    local = shanghai(second.sends[0].now)
    assert (local.date(), local.time().replace(microsecond=0)) == (day, time(0, 0))


async def test_the_field_of_the_awaited_event_not_the_trigger(ts_env):
    ir = journey(
        """
        journey "reschedule"
          entry event booked
          wait for event rescheduled up to 30d:
            on event:
              wait until event.appointment_at - 1h
              send sms "moved"
        """
    )
    engine = FakeEngine()
    now = await ts_env.get_current_time()
    first = (now + timedelta(days=2)).replace(microsecond=0)
    moved = (now + timedelta(days=6)).replace(microsecond=0)
    async with build_worker(ts_env.client, engine.all(), TQ):
        handle = await start(ts_env, ir, trigger_event=booked(appointment_at=first.isoformat()))
        await handle.signal(
            JourneyWorkflow.on_event,
            UserEvent(id="r1", name="rescheduled", properties={"appointment_at": moved.isoformat()}),
        )
        assert await handle.result() == "completed"
    (send,) = engine.sends
    assert close(send.now, moved - timedelta(hours=1))
    (record,) = records_of(engine, "wait-until-event-appointment_at-minus-1h")
    assert record.detail["until"] == (moved - timedelta(hours=1)).isoformat()


async def test_the_event_is_kept_across_continue_as_new(ts_env):
    ir = journey(
        """
        journey "long"
          entry event booked
          send sms "booked"
          tag add booked
          wait until event.appointment_at - 1d
          send sms "tomorrow"
        """
    )
    engine = FakeEngine()
    now = await ts_env.get_current_time()
    appointment = (now + timedelta(days=20)).replace(microsecond=0)
    async with build_worker(ts_env.client, engine.all(), TQ):
        handle = await start(
            ts_env, ir, trigger_event=booked(appointment_at=appointment.isoformat()), continue_after_steps=2
        )
        assert await handle.result() == "completed"
        description = await handle.describe()
    assert description.run_id != handle.first_execution_run_id  # it did continue as new
    assert engine.sent_templates() == ["booked", "tomorrow"]
    assert close(engine.sends[1].now, appointment - timedelta(days=1))
    assert len({r.run_key for r in engine.records}) == 1
