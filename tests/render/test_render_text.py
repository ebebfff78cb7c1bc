"""The words of steps and conditions (``dsl.render_text``)."""

from __future__ import annotations

import pytest

from dsl.ir import (
    AndCond,
    ApiEntry,
    AudienceEntry,
    Branch,
    CompareCond,
    CouponStep,
    EventCountCond,
    EventEntry,
    ExitStep,
    GotoStep,
    IfStep,
    LabelStep,
    NotCond,
    OrCond,
    PassStep,
    ReachableCond,
    RfmCond,
    Schedule,
    SendStep,
    SplitStep,
    StageCond,
    TagCond,
    TagStep,
    Variant,
    WaitDateStep,
    WaitEventStep,
    WaitEventTimeStep,
    WaitStep,
    WaitUntilStep,
)
from dsl.render import describe_cond, describe_duration, describe_entry, describe_step
from dsl.render_text import describe_message_limit, describe_step_tooltip, text_width, wrap_text

DAY = 86400


@pytest.mark.parametrize(
    "seconds, words",
    [
        (3 * DAY, "3 days"),
        (2 * 3600, "2 hours"),
        (7 * DAY, "1 week"),
        (14 * DAY, "2 weeks"),
        (90 * 60, "90 minutes"),
        (DAY, "1 day"),
        (36 * 3600, "36 hours"),
        (60, "1 minute"),
        (45, "45 seconds"),
        (0, "0 seconds"),
    ],
)
def test_durations_in_words(seconds, words):
    assert describe_duration(seconds) == words


@pytest.mark.parametrize(
    "step, words",
    [
        (WaitStep(seconds=3 * DAY), "wait 3 days"),
        (SendStep(channels=["sms"], template="nudge_a"), "send SMS: nudge_a"),
        (
            SendStep(channels=["wecom", "push", "sms"], best_of=True, template="reminder"),
            "send best of WeCom → push → SMS: reminder",
        ),
        (SendStep(channels=["email", "official_account"], template="x"), "send email + Official Account: x"),
        (CouponStep(pool="new_user_10"), "coupon new_user_10"),
        (TagStep(action="add", tags=["vip"]), "add tag vip"),
        (TagStep(action="remove", tags=["a", "b"]), "remove tags a, b"),
        (WaitEventStep(event="order_paid", timeout_seconds=3 * DAY), "wait for order_paid (up to 3 days)"),
        (WaitEventStep(event="order_paid"), "wait for order_paid"),
        (
            WaitEventStep(
                event="order_paid",
                where=CompareCond(subject="event", field="amount", op=">=", value=100),
                timeout_seconds=2 * 3600,
            ),
            "wait for order_paid where amount ≥ 100 (up to 2 hours)",
        ),
        (WaitUntilStep(time="10:00"), "wait until 10:00"),
        (WaitUntilStep(time="09:30", weekday=0), "wait until Monday 09:30"),
        (
            WaitDateStep(attribute="term_start", offset_seconds=-7 * DAY, time="10:00"),
            "wait until 1 week before user.term_start at 10:00",
        ),
        (WaitDateStep(attribute="birthday"), "wait until user.birthday"),
        (WaitDateStep(attribute="birthday", offset_seconds=DAY), "wait until 1 day after user.birthday"),
        (
            WaitEventTimeStep(field="appointment_at", offset_seconds=-2 * 3600),
            "wait until 2 hours before event.appointment_at",
        ),
        (WaitEventTimeStep(field="live_at", time="09:00"), "wait until event.live_at at 09:00"),
        (WaitEventTimeStep(field="paid_at", offset_seconds=DAY), "wait until 1 day after event.paid_at"),
        (
            IfStep(
                branches=[
                    Branch(
                        cond=AndCond(operands=[TagCond(tag="visited"), NotCond(operand=TagCond(tag="ordered"))]),
                        steps=[],
                    )
                ]
            ),
            "if visited and not ordered",
        ),
        (
            IfStep(branches=[Branch(cond=TagCond(tag="a"), steps=[]), Branch(cond=TagCond(tag="b"), steps=[])]),
            "if a / else if b",
        ),
        (SplitStep(variants=[Variant(name="A", percent=50), Variant(name="B", percent=50)]), "split"),
        (LabelStep(name="reminder"), "label reminder"),
        (GotoStep(label="reminder"), "goto reminder"),
        (ExitStep(), "exit"),
        (PassStep(), "pass"),
    ],
)
def test_steps_in_words(step, words):
    assert describe_step(step) == words


def test_a_wait_for_event_tooltip_says_which_event_it_takes():
    """The label stays short; hovering says the event-window rule (patch
    ``buffered-events``): the earliest untaken one since entry, even one
    that came during an earlier step."""
    step = WaitEventStep(event="order_paid", timeout_seconds=3 * DAY)
    assert describe_step_tooltip(step) == (
        "wait for order_paid (up to 3 days) — takes the earliest order_paid since entry that no earlier wait "
        "took, even one that came during an earlier step; if there is none, waits for the next (up to the timeout)"
    )
    matching = WaitEventStep(event="order_paid", where=CompareCond(subject="event", field="amount", op=">", value=0))
    assert describe_step_tooltip(matching).endswith(
        "— takes the earliest matching order_paid since entry that "
        "no earlier wait took, even one that came during an earlier "
        "step; if there is none, waits for the next"
    )


def test_a_kind_whose_label_says_it_all_has_the_label_as_tooltip():
    for step in (WaitStep(seconds=DAY), SendStep(channels=["sms"], template="t"), GotoStep(label="x")):
        assert describe_step_tooltip(step) == describe_step(step)


@pytest.mark.parametrize(
    "cond, words",
    [
        (TagCond(tag="visited"), "visited"),
        (NotCond(operand=TagCond(tag="ordered")), "not ordered"),
        (CompareCond(subject="user", field="city", op="==", value="上海"), 'user.city = "上海"'),
        (CompareCond(subject="user", field="age", op="!=", value=3), "user.age ≠ 3"),
        (CompareCond(subject="event", field="amount", op="<=", value=9.5), "event.amount ≤ 9.5"),
        (CompareCond(subject="user", field="vip", op="==", value=True), "user.vip = true"),
        (CompareCond(subject="user", field="city", op="in", value=["北京", "上海"]), 'user.city in ["北京", "上海"]'),
        (CompareCond(subject="user", field="n", op="not in", value=[1, 2]), "user.n not in [1, 2]"),
        (StageCond(stages=["silent"]), "stage is silent"),
        (StageCond(stages=["silent", "churned"]), "stage in [silent, churned]"),
        (RfmCond(layers=["high"]), "RFM is high"),
        (RfmCond(layers=["high", "mid"]), "RFM in [high, mid]"),
        (
            EventCountCond(event="order_paid", within_seconds=30 * DAY, op=">=", value=2),
            "order_paid ≥ 2 times within 30 days",
        ),
        (EventCountCond(event="login", op="==", value=1), "login = 1 time"),
        (ReachableCond(channel="wecom"), "reachable on WeCom"),
        (
            AndCond(operands=[TagCond(tag="a"), OrCond(operands=[TagCond(tag="b"), TagCond(tag="c")])]),
            "a and (b or c)",
        ),
        (
            OrCond(operands=[TagCond(tag="a"), AndCond(operands=[TagCond(tag="b"), TagCond(tag="c")])]),
            "a or (b and c)",
        ),
        (NotCond(operand=OrCond(operands=[TagCond(tag="a"), TagCond(tag="b")])), "not (a or b)"),
        (AndCond(operands=[TagCond(tag="a"), AndCond(operands=[TagCond(tag="b"), TagCond(tag="c")])]), "a and b and c"),
    ],
)
def test_conditions_in_words(cond, words):
    assert describe_cond(cond) == words


def test_event_fields_are_bare_in_where_clauses():
    cond = CompareCond(subject="event", field="amount", op=">", value=100)
    assert describe_cond(cond) == "event.amount > 100"
    assert describe_cond(cond, bare_event=True) == "amount > 100"


def test_entries_in_words():
    assert describe_entry(ApiEntry()) == "via API"
    assert describe_entry(EventEntry(event="signup")) == "on event signup"
    where = CompareCond(subject="event", field="channel", op="==", value="app")
    assert describe_entry(EventEntry(event="signup", where=where)) == 'on event signup where channel = "app"'
    audience = AudienceEntry(where=StageCond(stages=["silent"]), schedule=Schedule(every="day", time="10:00"))
    assert describe_entry(audience) == "audience stage is silent, every day at 10:00"
    weekly = AudienceEntry(where=TagCond(tag="x"), schedule=Schedule(every="week", time="09:30", weekday=4))
    assert describe_entry(weekly) == "audience x, every Friday at 09:30"
    once = AudienceEntry(where=TagCond(tag="x"), schedule=Schedule(every="once", time="10:00", date="2026-12-01"))
    assert describe_entry(once) == "audience x, once at 2026-12-01 10:00"


def test_message_limit_in_words():
    from dsl.ir import MessageLimit

    assert describe_message_limit(MessageLimit(count=3, window_seconds=DAY)) == "at most 3 messages in any 24 hours"
    assert describe_message_limit(MessageLimit(count=1, window_seconds=2 * DAY)) == "at most 1 message in any 2 days"
    calendar = MessageLimit(count=2, window_seconds=DAY, calendar="day")
    assert describe_message_limit(calendar) == "at most 2 messages per calendar day"


def test_cap_policy_in_words_on_the_send_and_in_the_notes():
    from dsl import parse
    from dsl.diagram import build_diagram

    journey = parse(
        'journey t\n  on capped defer up to 2d\n  send sms "a" on capped skip\n  send sms "b"\n', "t.journey"
    )
    a, b = journey.steps
    assert describe_step_tooltip(a) == "send SMS: a — when a frequency cap stops a message, it is skipped"
    assert describe_step_tooltip(b) == "send SMS: b"
    notes = build_diagram(journey).notes
    assert (
        "when a frequency cap stops a message, it waits until the caps allow it (up to 2 days), else it is skipped"
        in notes
    )


def test_cjk_counts_double_width():
    assert text_width("abc") == 3
    assert text_width("上海") == 4
    assert text_width("ＡＢ") == 4  # fullwidth


def test_wrap_text_breaks_at_spaces_and_between_cjk():
    assert wrap_text("wait for order_paid (up to 3 days)", 20) == ["wait for order_paid", "(up to 3 days)"]
    lines = wrap_text("发送上海专属优惠券给所有高价值用户", 10)
    assert all(text_width(line) <= 10 for line in lines)
    assert "".join(lines) == "发送上海专属优惠券给所有高价值用户"
    long = wrap_text("x" * 25, 10)
    assert long == ["x" * 10, "x" * 10, "x" * 5]
    assert wrap_text("", 10) == [""]
