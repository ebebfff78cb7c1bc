"""Time-skipping tests of the interpreter, one or more per step kind."""

from __future__ import annotations

import uuid
from datetime import timedelta

from contracts.runs import JourneyInput, UserEvent, workflow_id
from dsl.ir import (
    Branch,
    CouponStep,
    ExitRule,
    Goal,
    IfStep,
    Journey,
    NotCond,
    QuietHours,
    SendStep,
    SplitStep,
    TagCond,
    TagStep,
    Variant,
    WaitEventStep,
    WaitStep,
)
from runtime.worker import build_worker
from tests.workflows.fakes import FakeEngine
from workflows.journey import JourneyWorkflow

DAY = 86400


async def start(env, engine: FakeEngine, journey: Journey, user: str = "u1", **kw):
    handle = await env.client.start_workflow(
        JourneyWorkflow.run,
        JourneyInput(
            journey_id="j1",
            version=1,
            hash=journey.content_hash(),
            user_id=user,
            ir=journey,
            search_attributes=False,
            **kw,
        ),
        id=workflow_id("j1", user) + uuid.uuid4().hex[:6],
        task_queue=TQ,
    )
    return handle


TQ = "tq-interp"


async def waiting_at(handle, node: str) -> None:
    """Poll the status query until the run waits at ``node`` (no wall-clock asserts)."""
    import asyncio

    for _ in range(500):
        status = await handle.query(JourneyWorkflow.status)
        if status.waiting == node:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"run never waited at {node}")


async def test_thirty_day_journey_sends_in_order(ts_env):
    engine = FakeEngine()
    journey = Journey(
        name="long",
        steps=[
            SendStep(id="s1", channels=["wecom"], template="welcome"),
            WaitStep(id="w30", seconds=30 * DAY),
            SendStep(id="s2", channels=["sms"], template="month_later"),
        ],
    )
    async with build_worker(ts_env.client, engine.all(), TQ):
        handle = await start(ts_env, engine, journey)
        assert await handle.result() == "completed"
    assert engine.sent_templates() == ["welcome", "month_later"]
    assert engine.sends[1].now - engine.sends[0].now >= timedelta(days=30)


def shanghai(dt):
    from zoneinfo import ZoneInfo

    return dt.astimezone(ZoneInfo("Asia/Shanghai"))


async def test_quiet_hours_across_midnight_defer_to_morning(ts_env):
    from dsl.ir import WaitUntilStep

    engine = FakeEngine(transactional={"otp"})
    journey = Journey(
        name="quiet",
        quiet_hours=QuietHours(start="22:00", end="08:00"),
        steps=[
            WaitUntilStep(id="at23", time="23:30"),
            SendStep(id="otp", channels=["sms"], template="otp"),
            SendStep(id="promo", channels=["sms"], template="promo"),
        ],
    )
    async with build_worker(ts_env.client, engine.all(), TQ):
        handle = await start(ts_env, engine, journey)
        await handle.result()
    otp, promo = engine.sends
    assert (shanghai(otp.now).hour, shanghai(otp.now).minute) == (23, 30)  # transactional: not deferred
    local = shanghai(promo.now)
    assert (local.hour, local.minute) == (8, 0)
    assert local.date() > shanghai(otp.now).date()
    deferred = [r for r in engine.records if r.outcome == "deferred"]
    assert [r.node_id for r in deferred] == ["promo"]


async def test_wait_for_event_both_branches_and_event_properties(ts_env):
    engine = FakeEngine()
    journey = Journey(
        name="wfe",
        steps=[
            WaitEventStep(
                id="wait-order",
                event="order_paid",
                timeout_seconds=3 * DAY,
                on_event=[TagStep(id="t", action="add", tags=["first_order"])],
                on_timeout=[SendStep(id="nudge", channels=["sms"], template="nudge")],
            ),
            SendStep(id="after", channels=["wecom"], template="after"),
        ],
    )
    async with build_worker(ts_env.client, engine.all(), TQ):
        answered = await start(ts_env, engine, journey, user="buyer")
        silent = await start(ts_env, engine, journey, user="silent")
        await answered.signal("event", UserEvent(id="e0", name="viewed"))
        await answered.signal("event", UserEvent(id="e1", name="order_paid", properties={"amount": 99}))
        assert await answered.result() == "completed"
        assert await silent.result() == "completed"
    buyer = [s for s in engine.sends if s.user_id == "buyer"]
    assert [s.template for s in buyer] == ["after"]
    assert buyer[0].event["amount"] == 99
    assert engine.tags["buyer"] == {"first_order"}
    assert [s.template for s in engine.sends if s.user_id == "silent"] == ["nudge", "after"]


async def test_exit_event_interrupts_long_wait_and_duplicates_are_ignored(ts_env):
    engine = FakeEngine()
    journey = Journey(
        name="exit",
        exits=[ExitRule(event="unsubscribed")],
        goal=Goal(event="order_paid", within_seconds=14 * DAY),
        steps=[
            SendStep(id="hello", channels=["wecom"], template="hello"),
            WaitStep(id="w", seconds=20 * DAY),
            SendStep(id="never", channels=["wecom"], template="never"),
        ],
    )
    async with build_worker(ts_env.client, engine.all(), TQ):
        handle = await start(ts_env, engine, journey)
        await waiting_at(handle, "w")
        await handle.signal("event", UserEvent(id="o1", name="order_paid"))
        await handle.signal("event", UserEvent(id="o1", name="order_paid"))
        await handle.signal("event", UserEvent(id="u1", name="unsubscribed"))
        assert await handle.result() == "exited"
    assert engine.sent_templates() == ["hello"]
    goals = [r for r in engine.records if r.kind == "goal"]
    assert len(goals) == 1
    assert engine.ends[-1].outcome == "exited"


async def test_goal_then_exit_ends_run(ts_env):
    engine = FakeEngine()
    journey = Journey(
        name="goal-exit",
        goal=Goal(event="order_paid", exit_on_goal=True),
        steps=[WaitStep(id="w", seconds=5 * DAY), SendStep(id="late", channels=["sms"], template="late")],
    )
    async with build_worker(ts_env.client, engine.all(), TQ):
        handle = await start(ts_env, engine, journey)
        await handle.signal("event", UserEvent(id="o", name="order_paid"))
        assert await handle.result() == "exited"
    assert engine.sends == []
    assert any(r.kind == "goal" and r.outcome == "converted" for r in engine.records)


async def test_if_on_tags_coupon_out_of_stock_and_tag_exit(ts_env):
    engine = FakeEngine(stock={"empty": 0})
    engine.tags["u-visited"] = {"visited"}
    journey = Journey(
        name="branch",
        exits=[ExitRule(cond=TagCond(tag="blacklisted"))],
        steps=[
            IfStep(
                id="if-visited",
                branches=[
                    Branch(
                        cond=NotCond(operand=TagCond(tag="visited")),
                        steps=[SendStep(id="a", channels=["sms"], template="not_visited")],
                    )
                ],
                else_steps=[
                    CouponStep(
                        id="c", pool="empty", out_of_stock=[SendStep(id="sorry", channels=["wecom"], template="sorry")]
                    ),
                    TagStep(id="bl", action="add", tags=["blacklisted"]),
                    SendStep(id="blocked", channels=["wecom"], template="blocked"),
                ],
            )
        ],
    )
    async with build_worker(ts_env.client, engine.all(), TQ):
        assert await (await start(ts_env, engine, journey, user="u-new")).result() == "completed"
        assert await (await start(ts_env, engine, journey, user="u-visited")).result() == "exited"
    assert [(s.user_id, s.template) for s in engine.sends] == [("u-new", "not_visited"), ("u-visited", "sorry")]


async def test_split_is_recorded_and_holdout_is_suppressed(ts_env):
    engine = FakeEngine()
    journey = Journey(
        name="split",
        steps=[
            SplitStep(
                id="ab",
                variants=[
                    Variant(name="A", percent=50, steps=[SendStep(id="a", channels=["sms"], template="a")]),
                    Variant(name="holdout", percent=50, holdout=True),
                ],
            ),
            SendStep(id="all", channels=["wecom"], template="all"),
        ],
    )
    async with build_worker(ts_env.client, engine.all(), TQ):
        handles = [await start(ts_env, engine, journey, user=f"s{i}") for i in range(20)]
        for h in handles:
            await h.result()
    chosen = {r.user_id: r.outcome for r in engine.records if r.node_id == "ab"}
    assert set(chosen.values()) == {"variant:A", "variant:holdout"}
    for send in engine.sends:
        assert send.holdout == (chosen[send.user_id] == "variant:holdout")
        assert send.variant == chosen[send.user_id].split(":")[1]


async def test_goto_loop_continues_as_new_and_keeps_state(ts_env):
    from dsl.ir import GotoStep, LabelStep

    engine = FakeEngine()
    journey = Journey(
        name="loop",
        steps=[
            LabelStep(id="top", name="top"),
            WaitEventStep(
                id="invite",
                event="friend_invited",
                timeout_seconds=7 * DAY,
                on_event=[TagStep(id="t", action="add", tags=["inviter"]), GotoStep(id="again", label="top")],
                on_timeout=[SendStep(id="done", channels=["wecom"], template="done")],
            ),
        ],
    )
    async with build_worker(ts_env.client, engine.all(), TQ):
        handle = await start(ts_env, engine, journey, continue_after_steps=3)
        for i in range(4):
            await handle.signal("event", UserEvent(id=f"inv{i}", name="friend_invited"))
            # the same event again (a retried ingest) must not count twice
            await handle.signal("event", UserEvent(id=f"inv{i}", name="friend_invited"))
            await ts_env.sleep(timedelta(hours=1))
        assert await handle.result() == "completed"
        desc = await handle.describe()
    assert engine.sent_templates() == ["done"]
    answered = [r for r in engine.records if r.node_id == "invite" and r.outcome == "event"]
    assert len(answered) == 4
    assert desc.run_id != handle.result_run_id or desc.run_id != handle.first_execution_run_id
    run_keys = {r.run_key for r in engine.records}
    assert len(run_keys) == 1  # one logical run across continue-as-new


async def test_wait_date_from_attribute_best_of_and_exit_step(ts_env):
    from datetime import datetime, timedelta

    from dsl.ir import ExitStep, WaitDateStep

    engine = FakeEngine()
    engine.reachable["student"] = ["sms", "email"]
    # the term starts ten days from the (time-skipped) now; remind a week before, at 10:00 local
    now = await ts_env.get_current_time()
    term_start = (now + timedelta(days=10)).astimezone(__import__("zoneinfo").ZoneInfo("Asia/Shanghai")).date()
    engine.attributes["student"] = {"term_start": term_start.isoformat()}
    journey = Journey(
        name="term",
        steps=[
            WaitDateStep(id="week-before", attribute="term_start", offset_seconds=-7 * DAY, time="10:00"),
            SendStep(id="remind", channels=["wecom", "push", "sms"], best_of=True, template="term_offer"),
            ExitStep(id="bye"),
            SendStep(id="never", channels=["sms"], template="never"),
        ],
    )
    async with build_worker(ts_env.client, engine.all(), TQ):
        handle = await start(ts_env, engine, journey, user="student")
        assert await handle.result() == "exited"
    (send,) = engine.sends
    local = shanghai(send.now)
    assert local.date() == term_start - timedelta(days=7)
    assert (local.hour, local.minute) == (10, 0)
    assert send.best_of and send.channels == ["wecom", "push", "sms"]
    sent = [r for r in engine.records if r.node_id == "remind"]
    assert sent[-1].detail["channel"] == "sms"  # first reachable in the operator's order
    assert isinstance(now, datetime)


async def test_if_on_event_counts_stage_and_attributes(ts_env):
    from dsl.ir import CompareCond, EventCountCond, OrCond, StageCond

    engine = FakeEngine()
    engine.event_counts["order_paid|2592000"] = 3
    engine.attributes["shanghai"] = {"city": "上海"}
    journey = Journey(
        name="conds",
        steps=[
            IfStep(
                id="loyal",
                branches=[
                    Branch(
                        cond=EventCountCond(event="order_paid", within_seconds=30 * DAY, op=">=", value=2),
                        steps=[SendStep(id="loyal-msg", channels=["sms"], template="loyal")],
                    ),
                    Branch(
                        cond=OrCond(
                            operands=[
                                CompareCond(subject="user", field="city", op="==", value="上海"),
                                StageCond(stages=["silent"]),
                            ]
                        ),
                        steps=[SendStep(id="city-msg", channels=["sms"], template="city")],
                    ),
                ],
                else_steps=[SendStep(id="other-msg", channels=["sms"], template="other")],
            )
        ],
    )
    async with build_worker(ts_env.client, engine.all(), TQ):
        for user in ("loyal", "shanghai", "nobody"):
            if user != "loyal":
                engine.event_counts.clear()
            await (await start(ts_env, engine, journey, user=user)).result()
    assert [(s.user_id, s.template) for s in engine.sends] == [
        ("loyal", "loyal"),
        ("shanghai", "city"),
        ("nobody", "other"),
    ]
