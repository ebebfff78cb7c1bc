"""``on capped skip | defer up to D`` and calendar limits, run on the real
interpreter and the real engine (ledger, caps) in the time-skipping server:
journey text plus a user whose recent sends fill the caps."""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from runtime.simulate import simulate
from runtime.simulate_model import Case, RecentSend, ScriptedEvent, TestUser, World

SHANGHAI = ZoneInfo("Asia/Shanghai")
SMS = {"phone": "13800000001"}


def _busy_user(*hours_ago: int) -> TestUser:
    """A user other journeys texted ``hours_ago`` before the start."""
    return TestUser(
        identities=SMS,
        recent_sends=[RecentSend(channel="sms", at=f"-{h}h") for h in hours_ago],
        timezone="Asia/Shanghai",
    )


def _journey(policy: str, send_suffix: str = "") -> str:
    return f'journey "promo"\n  entry api\n{policy}  send sms "promo"{send_suffix}\n'


async def _one(sim_env, text: str, case: Case, world: World | None = None, horizon: timedelta = timedelta(days=3)):
    """The one case, started at the next Monday 09:00 (Shanghai) of the
    shared server's clock (``case.start``)."""
    result = await simulate(text, [case], env=sim_env, horizon=horizon, world=world)
    (only,) = result.cases
    assert only.start.astimezone(SHANGHAI).hour == 9
    return only


async def test_skip_is_the_default_and_says_which_cap(sim_env) -> None:
    case = await _one(sim_env, _journey(""), Case(user=_busy_user(2, 1)))
    [message] = case.messages
    assert message.status == "suppressed"
    assert "frequency cap: 2 messages per day reached (2 sent by another-journey)" in (message.reason or "")
    assert case.ended == "completed"


async def test_defer_waits_until_the_oldest_send_leaves_the_sliding_day(sim_env) -> None:
    case = await _one(sim_env, _journey("  on capped defer up to 1d\n"), Case(user=_busy_user(2, 1)))
    [message] = case.messages
    assert message.status == "sent"
    # the send of 2h before the start leaves the 24h window 22h after it
    assert timedelta(hours=22) <= message.at - case.start < timedelta(hours=22, minutes=1)
    deferred = [e for e in case.timeline if e.outcome == "deferred"]
    assert len(deferred) == 1
    assert "frequency cap: 2 messages per day" in deferred[0].text + str(deferred[0].detail)
    assert datetime.fromisoformat(deferred[0].detail["until"]) == case.start + timedelta(hours=22)


async def test_a_cap_that_frees_after_the_longest_deferral_skips_at_once(sim_env) -> None:
    case = await _one(sim_env, _journey("  on capped defer up to 12h\n"), Case(user=_busy_user(2, 1)))
    [message] = case.messages
    assert message.status == "suppressed"
    # no pointless wait: it was known at once that the cap frees only at +22h
    assert message.at - case.start < timedelta(minutes=1)
    assert "past the longest deferral" in (message.reason or "")


async def test_the_sends_own_policy_wins_over_the_headers(sim_env) -> None:
    text = _journey("  on capped defer up to 2d\n", " on capped skip")
    case = await _one(sim_env, text, Case(user=_busy_user(2, 1)))
    assert [m.status for m in case.messages] == ["suppressed"]
    text = _journey("  on capped skip\n", " on capped defer up to 1d")
    case = await _one(sim_env, text, Case(user=_busy_user(2, 1)))
    assert [m.status for m in case.messages] == ["sent"]


CALENDAR = """\
journey "daily"
  entry api
  limit 1 message per day
  quiet hours 22:00-08:00
  on capped defer up to 2d
  send sms "first"
  wait 1h
  send sms "second"
"""


async def test_a_calendar_day_defers_to_local_midnight_then_quiet_hours_to_the_morning(sim_env) -> None:
    world = World(cap_per_day=None, cap_per_week=None)
    case = await _one(sim_env, CALENDAR, Case(user=TestUser(identities=SMS, timezone="Asia/Shanghai")), world)
    first, second = case.messages
    assert (first.status, second.status) == ("sent", "sent")
    local = second.at.astimezone(SHANGHAI)
    # the journey limit frees at local midnight; quiet hours then hold it to 08:00
    assert (local.date(), local.hour, local.minute) == (
        (case.start.astimezone(SHANGHAI) + timedelta(days=1)).date(),
        8,
        0,
    )
    reasons = [e.detail.get("reason") for e in case.timeline if e.outcome == "deferred"]
    assert reasons[0].startswith("frequency cap: journey limit 1 per calendar day reached")
    assert reasons[1] == "quiet hours"


async def test_a_sliding_day_is_not_a_calendar_day(sim_env) -> None:
    text = CALENDAR.replace("per day", "per 1d").replace("  quiet hours 22:00-08:00\n", "")
    world = World(cap_per_day=None, cap_per_week=None)
    case = await _one(sim_env, text, Case(user=TestUser(identities=SMS, timezone="Asia/Shanghai")), world)
    first, second = case.messages
    # 24h after the first, not at midnight
    assert timedelta(days=1) <= second.at - first.at < timedelta(days=1, minutes=1)


async def test_an_exit_during_a_deferral_sends_nothing(sim_env) -> None:
    text = (
        'journey "promo"\n  entry api\n  exit when event unsubscribed\n  on capped defer up to 1d\n  send sms "promo"\n'
    )
    case = Case(user=_busy_user(2, 1), events=[ScriptedEvent(at="+3h", name="unsubscribed")])
    result = await _one(sim_env, text, case)
    assert result.ended == "exited"
    assert [m.status for m in result.messages] == []
    assert any(e.outcome == "deferred" for e in result.timeline)
