"""An ``entry audience`` journey in the simulator: each case's user is
judged by the broadcast's own selection at the start (a user it does not
select is "not entered", with each part of the condition said yes or no),
and the cases start when the schedule broadcasts."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from dsl.ir import Schedule
from runtime.journey_expect import parse_expectation
from runtime.simulate import default_start, simulate
from runtime.simulate_model import NOT_SELECTED, Case, PastEvent, TestUser
from runtime.simulate_text import format_result

SHANGHAI = ZoneInfo("Asia/Shanghai")

VIP_RECALL = """\
journey "vip recall"
  entry audience where tag vip and not tag blocked and count order_paid within 30d >= 1 every day at 10:00
  send sms "recall"
"""


def _user(*tags: str, paid: str | None = "-3d") -> TestUser:
    past = [PastEvent(name="order_paid", at=paid, properties={"amount": 100})] if paid else []
    return TestUser(identities={"phone": "13800000009"}, tags=list(tags), past_events=past)


async def test_the_audience_decides_who_enters_and_says_why_not(sim_env) -> None:
    cases = [
        Case(name="a vip who ordered", user=_user("vip")),
        Case(name="not a vip", user=_user()),
        Case(name="a blocked vip", user=_user("vip", "blocked")),
        Case(name="a vip whose order is 40 days old", user=_user("vip", paid="-40d")),
    ]
    result = await simulate(VIP_RECALL, cases, env=sim_env)
    entered, plain, blocked, stale = result.cases
    assert (entered.ended, [m.template for m in entered.messages]) == ("completed", ["recall"])
    for case in (plain, blocked, stale):
        assert case.ended == "not entered" and case.messages == [] and case.visits == {}, case
        assert case.end_reason is not None and case.end_reason.startswith(NOT_SELECTED)
    assert plain.end_reason == (
        f"{NOT_SELECTED} (tag vip: no; tag blocked: no; order_paid ≥ 1 time within 30 days: yes)"
    )
    assert "tag blocked: yes" in (blocked.end_reason or "")
    assert "order_paid ≥ 1 time within 30 days: no" in (stale.end_reason or "")
    assert "not entered (the audience does not select this user" in format_result(result)
    # the journey-test words, both ways, so each can fail
    not_in = parse_expectation("is not in the audience because order_paid >= 1 time within 30 days: no")
    assert not_in.check(stale) is None
    assert not_in.check(plain) is not None  # not selected, but for another reason
    assert parse_expectation("is not in the audience").check(entered) == "ended: completed"


async def test_the_cases_start_when_the_schedule_broadcasts(sim_env) -> None:
    result = await simulate(VIP_RECALL, [Case(user=_user("vip"))], env=sim_env)
    local = result.start.astimezone(SHANGHAI)
    assert (local.hour, local.minute) == (10, 0)
    assert abs(result.cases[0].messages[0].at - result.start) < timedelta(minutes=1)


def test_default_start_follows_the_schedule() -> None:
    now = datetime(2027, 3, 3, 1, 30, tzinfo=UTC)  # Wednesday 09:30 in Shanghai
    plain = default_start(now, SHANGHAI)
    assert plain == datetime(2027, 3, 8, 9, 0, tzinfo=SHANGHAI)  # the next Monday 09:00
    daily = Schedule(every="day", time="10:00")
    assert default_start(now, SHANGHAI, daily) == datetime(2027, 3, 3, 10, 0, tzinfo=SHANGHAI) + timedelta(days=1)
    assert default_start(now - timedelta(hours=2), SHANGHAI, daily) == datetime(2027, 3, 3, 10, 0, tzinfo=SHANGHAI)
    weekly = Schedule(every="week", time="09:30", weekday=2)  # Wednesday: today's is not an hour ahead
    assert default_start(now, SHANGHAI, weekly) == datetime(2027, 3, 10, 9, 30, tzinfo=SHANGHAI)
    once = Schedule(every="once", time="10:00", date="2027-06-18")
    assert default_start(now, SHANGHAI, once) == datetime(2027, 6, 18, 10, 0, tzinfo=SHANGHAI)
    near = Schedule(every="once", time="10:00", date="2027-03-03")  # 30 minutes ahead: too near
    with pytest.raises(ValueError, match="once at 2027-03-03 10:00, which is not an hour ahead"):
        default_start(now, SHANGHAI, near)
    # a local time a DST change skips is the hour after it
    new_york = ZoneInfo("America/New_York")
    spring = datetime(2027, 3, 13, 12, 0, tzinfo=UTC)  # Saturday; 02:30 on Sunday 14 March does not exist
    skipped = default_start(spring, new_york, Schedule(every="day", time="02:30"))
    assert (skipped.month, skipped.day, skipped.hour, skipped.minute) == (3, 14, 3, 30)


async def test_a_once_at_broadcast_does_not_move_a_shared_clock(sim_env) -> None:
    source = 'journey "once"\n  entry audience where tag vip once at 2099-06-18 10:00\n  send sms "hi"\n'
    before = await sim_env.get_current_time()
    result = await simulate(source, [Case(user=_user("vip"))], env=sim_env)
    assert result.start == datetime(2099, 6, 18, 10, 0, tzinfo=SHANGHAI)
    assert result.cases[0].ended == "completed"
    assert await sim_env.get_current_time() - before < timedelta(days=365)


def test_the_words_parse() -> None:
    assert parse_expectation("is  not in the audience").text == "is not in the audience"
    with pytest.raises(ValueError, match="not an expectation"):
        parse_expectation("is not in the audience because")
