"""Only ``wait for event`` consumes events (issue 12, item 1): a ``wait for
event E`` takes the earliest unconsumed matching E that arrived after entry,
whatever step the run was at when it came. Time-skipping runs of journey text
with events scripted at the step the run waits in; each test's journey would
take the other branch under the old rule (only events since the last wait
counted), so each can fail."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from contracts.activities import StepRecord
from contracts.runs import JourneyInput, RunState, UserEvent
from dsl import parse
from runtime.worker import build_worker
from tests.workflows.fakes import FakeEngine
from tests.workflows.support import TQ, journey, shanghai, signal_at, start, start_on_event
from workflows.event_wait import UNCONSUMED_EVENTS_KEPT, keep_for_waits
from workflows.run import Run

ROOT = Path(__file__).resolve().parents[2]
# The last step of most journeys below (indented as theirs are).
PAID_OR_NUDGE = """
          wait for event order_paid up to 10s:
            on event: send sms "paid"
            on timeout: send sms "nudge"
"""
WAIT_EVENT = "wait-event-order_paid"


def order(event_id: str = "o1", **properties: object) -> UserEvent:
    return UserEvent(id=event_id, name="order_paid", properties=properties)


def records_of(engine: FakeEngine, node: str) -> list[StepRecord]:
    return [r for r in engine.records if r.node_id == node]


def taken(engine: FakeEngine, node: str = WAIT_EVENT) -> list[str | None]:
    """The event each pass through the wait took (None: it timed out)."""
    return [r.detail.get("event_id") for r in records_of(engine, node) if r.kind == "wait_event"]


async def test_an_event_during_a_plain_wait_is_taken_by_the_next_wait_for_event(ts_env):
    """The issue's journey: ``send`` → ``wait 4s`` → ``wait for event``, the
    order sent during the ``wait 4s``."""
    ir = journey(
        """
        journey "plain-wait"
          send sms "hello"
          wait 4s
        """
        + PAID_OR_NUDGE
    )
    engine = FakeEngine()
    async with build_worker(ts_env.client, engine.all(), TQ):
        handle = await start(ts_env, ir)
        await signal_at(ts_env, handle, "wait-4s", order(amount=10))
        assert await handle.result() == "completed"
    assert engine.sent_templates() == ["hello", "paid"]
    assert taken(engine) == ["o1"]
    assert engine.sends[-1].event["amount"] == 10  # the taken event is the run's event.x


async def test_an_event_during_a_send_held_by_quiet_hours(ts_env):
    now = shanghai(await ts_env.get_current_time())
    quiet = f"{now - timedelta(hours=1):%H:%M}-{now + timedelta(hours=2):%H:%M}"  # quiet now, for two hours
    ir = journey(
        f"""
        journey "quiet"
          quiet hours {quiet}
          send sms "promo"
        """
        + PAID_OR_NUDGE
    )
    engine = FakeEngine()
    async with build_worker(ts_env.client, engine.all(), TQ):
        handle = await start(ts_env, ir)
        await signal_at(ts_env, handle, "send-sms-promo", order())
        assert await handle.result() == "completed"
    assert [r.outcome for r in records_of(engine, "send-sms-promo")] == ["deferred", "waiting", "sent"]
    assert engine.sent_templates() == ["promo", "paid"]
    assert engine.sends[0].now - now > timedelta(hours=1)  # it was held


async def test_an_event_during_wait_until_a_time(ts_env):
    ir = journey(
        """
        journey "until"
          wait until 10:00
        """
        + PAID_OR_NUDGE
    )
    engine = FakeEngine()
    async with build_worker(ts_env.client, engine.all(), TQ):
        handle = await start(ts_env, ir)
        await signal_at(ts_env, handle, "wait-until-1000", order())
        assert await handle.result() == "completed"
    assert engine.sent_templates() == ["paid"]


async def test_an_event_during_a_date_wait(ts_env):
    ir = journey(
        """
        journey "date"
          wait until user.term_start
        """
        + PAID_OR_NUDGE
    )
    engine = FakeEngine()
    now = await ts_env.get_current_time()
    engine.attributes["u1"] = {"term_start": shanghai(now + timedelta(days=5)).date().isoformat()}
    async with build_worker(ts_env.client, engine.all(), TQ):
        handle = await start(ts_env, ir)
        await signal_at(ts_env, handle, "wait-until-term_start", order())
        assert await handle.result() == "completed"
    assert engine.sends[0].now - now > timedelta(days=3)  # it did sleep until the date
    assert engine.sent_templates() == ["paid"]


async def test_an_event_on_a_branch_before_the_wait_for_event(ts_env):
    ir = journey(
        """
        journey "branch"
          if tag vip:
            wait 1d
          else:
            send sms "regular"
            wait 2d
        """
        + PAID_OR_NUDGE
    )
    engine = FakeEngine()
    async with build_worker(ts_env.client, engine.all(), TQ):
        handle = await start(ts_env, ir)
        await signal_at(ts_env, handle, "wait-2d", order())
        assert await handle.result() == "completed"
    assert engine.sent_templates() == ["regular", "paid"]


async def test_an_event_during_a_wait_for_another_event(ts_env):
    """The order arrives while the run waits for an app install; the install
    wait times out (an order is not an install), the order wait takes it."""
    ir = journey(
        """
        journey "other-event"
          wait for event app_installed up to 1d:
            on event: send push "welcome_app"
            on timeout: send sms "get_the_app"
        """
        + PAID_OR_NUDGE
    )
    engine = FakeEngine()
    async with build_worker(ts_env.client, engine.all(), TQ):
        handle = await start(ts_env, ir)
        await signal_at(ts_env, handle, "wait-event-app_installed", order())
        assert await handle.result() == "completed"
    assert engine.sent_templates() == ["get_the_app", "paid"]
    assert taken(engine, "wait-event-app_installed") == [None]


async def test_two_events_two_waits_each_takes_one_and_a_third_needs_another(ts_env):
    ir = journey(
        """
        journey "two"
          wait 1d
          wait for event order_paid up to 1h:
            on event: tag add first_order
          wait for event order_paid up to 1h:
            on event: tag add second_order
          wait for event order_paid up to 1h:
            on event: tag add third_order
            on timeout: send sms "two_orders"
        """
    )
    engine = FakeEngine()
    async with build_worker(ts_env.client, engine.all(), TQ):
        handle = await start(ts_env, ir)
        # o1 twice: a redelivered event is one event
        await signal_at(ts_env, handle, "wait-1d", order("o1"), order("o1"), order("o2"))
        assert await handle.result() == "completed"
    assert taken(engine, "wait-event-order_paid") == ["o1"]  # the earliest first
    assert taken(engine, "wait-event-order_paid-2") == ["o2"]
    assert taken(engine, "wait-event-order_paid-3") == [None]
    assert engine.tags["u1"] == {"first_order", "second_order"}
    assert engine.sent_templates() == ["two_orders"]


async def test_where_skips_an_early_event_that_fails_it_and_leaves_it_unconsumed(ts_env):
    ir = journey(
        """
        journey "where"
          wait 1d
          wait for event order_paid where amount >= 100 up to 1h:
            on event: send sms "big"
            on timeout: send sms "no_big"
          wait for event order_paid up to 1h:
            on event: send sms "any"
            on timeout: send sms "none"
        """
    )
    big_only, small_only = FakeEngine(), FakeEngine()
    async with build_worker(ts_env.client, big_only.all(), TQ):
        handle = await start(ts_env, ir)
        await signal_at(ts_env, handle, "wait-1d", order("small", amount=50), order("big", amount=150))
        assert await handle.result() == "completed"
    async with build_worker(ts_env.client, small_only.all(), TQ):
        handle = await start(ts_env, ir)
        await signal_at(ts_env, handle, "wait-1d", order("small", amount=50))
        assert await handle.result() == "completed"
    # the big order is taken past the earlier small one, which the next wait takes
    assert taken(big_only) == ["big"] and taken(big_only, "wait-event-order_paid-2") == ["small"]
    assert big_only.sent_templates() == ["big", "any"]
    assert small_only.sent_templates() == ["no_big", "any"]


async def test_the_trigger_itself_never_counts(ts_env):
    """Started as the API starts an event entry: a signal-with-start whose
    signal is the trigger. A second order, after entry, does count."""
    ir = journey(
        """
        journey "reorder"
          entry event order_paid
          wait 1d
          wait for event order_paid up to 1h:
            on event: send sms "again"
            on timeout: send sms "once"
        """
    )
    once, again = FakeEngine(), FakeEngine()
    async with build_worker(ts_env.client, once.all(), TQ):
        handle = await start_on_event(ts_env, ir, order("first"))
        assert await handle.result() == "completed"
    async with build_worker(ts_env.client, again.all(), TQ):
        handle = await start_on_event(ts_env, ir, order("first"))
        await signal_at(ts_env, handle, "wait-1d", order("first"), order("second"))
        assert await handle.result() == "completed"
    assert once.sent_templates() == ["once"]
    assert again.sent_templates() == ["again"] and taken(again) == ["second"]


async def test_an_early_event_survives_continue_as_new(ts_env):
    ir = journey(
        """
        journey "continued"
          send sms "hello"
          wait 1d
          tag add waited
          pass
        """
        + PAID_OR_NUDGE
    )
    engine = FakeEngine()
    async with build_worker(ts_env.client, engine.all(), TQ):
        handle = await start(ts_env, ir, continue_after_steps=2)
        await signal_at(ts_env, handle, "wait-1d", order())
        assert await handle.result() == "completed"
        description = await handle.describe()
    assert description.run_id != handle.first_execution_run_id  # it did continue as new, after the wait
    assert engine.sent_templates() == ["hello", "paid"]
    assert len({r.run_key for r in engine.records}) == 1


async def test_a_goal_counts_the_event_when_it_arrives_and_the_wait_still_takes_it(ts_env):
    """Goals are not consumption, as before: the order converts the run the
    moment it arrives (during the plain wait), once, and a ``wait for event``
    takes the same order later."""
    ir = journey(
        """
        journey "goal"
          goal event order_paid within 14d
          wait 1d
          send sms "after_wait"
        """
        + PAID_OR_NUDGE
    )
    engine = FakeEngine()
    async with build_worker(ts_env.client, engine.all(), TQ):
        handle = await start(ts_env, ir)
        await signal_at(ts_env, handle, "wait-1d", order())
        assert await handle.result() == "converted"
    (goal,) = [r for r in engine.records if r.kind == "goal"]
    (wait_end,) = [r for r in records_of(engine, WAIT_EVENT) if r.kind == "wait_event"]
    assert goal.detail["event_id"] == wait_end.detail["event_id"] == "o1"
    assert goal.at < engine.sends[0].now  # converted during the wait, not when taken
    assert engine.sent_templates() == ["after_wait", "paid"]


async def test_exits_are_not_consumption_and_still_end_the_run_at_once(ts_env):
    """An exit rule looks at every event as it arrives, as before: one that
    does not fire leaves the event for the wait; one that fires ends the run
    in the middle of a plain wait."""
    ir = journey(
        """
        journey "exit"
          exit when event order_paid where amount > 1000
          wait 1d
        """
        + PAID_OR_NUDGE
    )
    small, huge = FakeEngine(), FakeEngine()
    async with build_worker(ts_env.client, small.all(), TQ):
        handle = await start(ts_env, ir)
        await signal_at(ts_env, handle, "wait-1d", order(amount=5))
        assert await handle.result() == "completed"
    async with build_worker(ts_env.client, huge.all(), TQ):
        handle = await start(ts_env, ir)
        await signal_at(ts_env, handle, "wait-1d", order(amount=5000))
        assert await handle.result() == "exited"
    assert small.sent_templates() == ["paid"]
    assert huge.sends == [] and huge.ends[-1].reason == "event order_paid"
    assert taken(huge) == []  # it never reached the wait for event


FIRST_ORDER_IN_README = journey(
    """
    journey "new-user first order"
      description "进群领券 → 首单 → 二单 → 下载APP"
      entry event joined_group where channel == "wecom_group"
      reentry once
      goal event order_paid within 14d
      exit when event unsubscribed
      quiet hours 22:00-08:00
      limit 3 messages per 1d

      send wecom "welcome_coupon"
      coupon "new_user_10"
        on out_of_stock: send wecom "sorry_no_coupon"
      wait 1d
      if tag visited and not tag ordered:
        send best of push, wecom, sms "general_coupon_reminder"
      wait for event order_paid up to 3d:
        on event:
          tag add first_order
          coupon "second_order_15"
        on timeout:
          split:
            40% A: send sms "nudge_a"
            40% B: send push "nudge_b"
            20% holdout
    """
)
JOINED = UserEvent(id="j1", name="joined_group", properties={"channel": "wecom_group"})


async def test_the_readme_first_order_journey_an_order_on_day_one_gets_the_second_order_coupon(ts_env):
    engine = FakeEngine()
    async with build_worker(ts_env.client, engine.all(), TQ):
        handle = await start_on_event(ts_env, FIRST_ORDER_IN_README, JOINED)
        await signal_at(ts_env, handle, "wait-1d", order(amount=39))
        assert await handle.result() == "converted"
    assert [c.pool for c in engine.coupons] == ["new_user_10", "second_order_15"]
    assert engine.tags["u1"] == {"first_order"}
    assert not {"nudge_a", "nudge_b"} & set(engine.sent_templates())


async def test_the_first_order_example_file_an_order_on_day_one(ts_env):
    ir = parse((ROOT / "journeys" / "01_new_user_first_order.journey").read_text(encoding="utf-8"))
    engine = FakeEngine()
    async with build_worker(ts_env.client, engine.all(), TQ):
        handle = await start_on_event(ts_env, ir, JOINED)
        await signal_at(ts_env, handle, "wait-1d", order(amount=39))
        # no second order: the second wait times out and exits
        assert await handle.result() == "exited"
    assert [c.pool for c in engine.coupons] == ["new_user_10", "second_order_15"]
    assert engine.tags["u1"] == {"first_order"}
    assert "second_order_coupon" in engine.sent_templates()
    assert taken(engine) == ["o1"] and taken(engine, "wait-event-order_paid-2") == [None]


def test_only_events_some_wait_awaits_are_kept_and_only_the_newest():
    ir = journey(
        """
        journey "kept"
          entry event order_paid
          wait for event order_paid up to 1h:
            on event: pass
        """
    )
    state = RunState(run_key="r", node=None, entered_at=datetime(2027, 1, 1, tzinfo=UTC))
    run = Run.of(JourneyInput(journey_id="k", version=1, hash="h", user_id="u", ir=ir, state=state))
    run.inp = run.inp.model_copy(update={"trigger_event": order("trigger")})
    keep_for_waits(run, UserEvent(id="v", name="viewed"))  # no wait for event names it
    keep_for_waits(run, order("trigger"))
    for i in range(UNCONSUMED_EVENTS_KEPT + 5):
        keep_for_waits(run, order(f"o{i}"))
    assert [e.id for e in state.unconsumed_events] == [f"o{i}" for i in range(5, UNCONSUMED_EVENTS_KEPT + 5)]


def test_a_state_carried_before_the_buffer_reads_as_an_empty_one():
    carried = {"run_key": "r", "node": "wait-1d", "entered_at": "2026-11-30T00:00:00Z", "seen_event_ids": ["o1"]}
    assert RunState.model_validate(carried).unconsumed_events == []
