from __future__ import annotations

import threading
from datetime import datetime, timedelta

from engine.caps import CapRequest, Denial, check_and_count, release
from engine.settings import ChannelCap, Settings
from engine.store import Store
from tests.engine.engine_support import NOW

H = timedelta(hours=1)


def deny(store: Store, settings: Settings, key: str, at=NOW, **kw) -> Denial | None:  # noqa: ANN001
    req = CapRequest(user_id=kw.pop("user_id", "u1"), channel=kw.pop("channel", "sms"), delivery_key=key, now=at, **kw)
    return store.transact(lambda s: check_and_count(s, store, settings, req))


def ask(store: Store, settings: Settings, key: str, at=NOW, **kw) -> str | None:  # noqa: ANN001
    denial = deny(store, settings, key, at, **kw)
    return denial.reason if denial is not None else None


def test_a_denial_says_when_the_sliding_window_frees_a_slot(store: Store) -> None:
    settings = Settings(cap_per_day=2, cap_per_week=None)
    assert ask(store, settings, "a", NOW) is None
    assert ask(store, settings, "b", NOW + 3 * H) is None
    denial = deny(store, settings, "c", NOW + 5 * H)
    assert denial is not None and denial.retry_at == NOW + 24 * H  # the first send leaves the window
    assert ask(store, settings, "c", NOW + 24 * H - timedelta(seconds=1)) is not None
    assert ask(store, settings, "c", NOW + 24 * H) is None  # exactly then it goes
    # over a lower cap (b at +3h and c at +24h counted, 1 allowed): both
    # must leave, so it is when c leaves
    tighter = Settings(cap_per_day=1, cap_per_week=None)
    denial = deny(store, tighter, "d", NOW + 25 * H)
    assert denial is not None and denial.retry_at == NOW + 48 * H


def test_calendar_caps_count_since_local_midnight_and_free_at_the_next(store: Store) -> None:
    from zoneinfo import ZoneInfo

    shanghai = ZoneInfo("Asia/Shanghai")
    late = datetime(2027, 1, 6, 23, 0, tzinfo=shanghai)  # a Wednesday, 23:00 local
    settings = Settings(cap_per_day=1, cap_per_week=None, cap_calendar=True)
    assert ask(store, settings, "a", late, timezone="Asia/Shanghai") is None
    denial = deny(store, settings, "b", late + 30 * timedelta(minutes=1), timezone="Asia/Shanghai")
    assert denial is not None and "per calendar day" in denial.reason
    assert denial.retry_at == datetime(2027, 1, 7, 0, 0, tzinfo=shanghai)
    assert ask(store, settings, "b", late + 61 * timedelta(minutes=1), timezone="Asia/Shanghai") is None  # 00:01
    # sliding, the same two sends an hour apart are one day: the second is refused
    sliding = Settings(cap_per_day=1, cap_per_week=None)
    assert ask(store, sliding, "c", late + 62 * timedelta(minutes=1), user_id="u2") is None
    assert ask(store, sliding, "d", late + 2 * H, user_id="u2") is not None


def test_a_calendar_week_starts_on_monday_in_the_users_zone(store: Store) -> None:
    from zoneinfo import ZoneInfo

    ny = ZoneInfo("America/New_York")
    sunday = datetime(2027, 1, 10, 20, 0, tzinfo=ny)
    kw = {"timezone": "America/New_York", "journey_id": "j", "journey_limit_count": 1}
    kw |= {"journey_limit_window_seconds": 7 * 86400, "journey_limit_calendar": "week"}
    assert ask(store, Settings(cap_per_day=None, cap_per_week=None), "a", sunday, **kw) is None
    denial = deny(store, Settings(cap_per_day=None, cap_per_week=None), "b", sunday + H, **kw)
    assert denial is not None and denial.reason.startswith("frequency cap: journey limit 1 per calendar week")
    assert denial.retry_at == datetime(2027, 1, 11, 0, 0, tzinfo=ny)


def test_daily_and_weekly_caps_slide_with_request_time(store: Store) -> None:
    settings = Settings(cap_per_day=2, cap_per_week=3)
    assert ask(store, settings, "a", NOW) is None
    assert ask(store, settings, "b", NOW + H) is None
    assert "2 messages per day" in ask(store, settings, "c", NOW + 2 * H)
    # a day after the first two the day window is free again, the week is not far off
    assert ask(store, settings, "d", NOW + 25 * H) is None
    assert "3 messages per week" in ask(store, settings, "e", NOW + 50 * H)
    assert ask(store, settings, "f", NOW + 8 * 24 * H) is None  # a week later


def test_same_delivery_key_counts_once(store: Store) -> None:
    settings = Settings(cap_per_day=1)
    assert ask(store, settings, "a") is None
    assert ask(store, settings, "a") is None  # retry of the same send
    assert ask(store, settings, "b") is not None


def test_transactional_is_exempt_and_not_counted(store: Store) -> None:
    settings = Settings(cap_per_day=1)
    assert ask(store, settings, "otp1", transactional=True) is None
    assert ask(store, settings, "otp2", transactional=True) is None
    assert ask(store, settings, "promo") is None  # the transactional ones did not use the slot
    assert ask(store, settings, "otp3", transactional=True) is None  # and still go when capped
    assert ask(store, settings, "promo2") is not None


def test_per_channel_and_per_journey_limits(store: Store) -> None:
    settings = Settings(cap_per_day=10, channel_caps={"sms": ChannelCap(per_day=1)})
    assert ask(store, settings, "s1", channel="sms") is None
    assert "sms messages per day" in ask(store, settings, "s2", channel="sms")
    assert ask(store, settings, "p1", channel="push") is None
    limit = dict(journey_id="j1", journey_limit_count=1, journey_limit_window_seconds=3600)
    assert ask(store, settings, "j1", channel="push", **limit) is None
    assert "journey limit" in ask(store, settings, "j2", channel="push", **limit)
    assert ask(store, settings, "j3", channel="push", at=NOW + 2 * H, **limit) is None


def test_released_slot_is_reusable(store: Store) -> None:
    settings = Settings(cap_per_day=1)
    assert ask(store, settings, "a") is None
    store.transact(lambda s: release(s, "a"))
    assert ask(store, settings, "b") is None


def test_caps_hold_under_concurrency(store: Store) -> None:
    settings = Settings(cap_per_day=2, cap_per_week=5)
    allowed: list[str] = []
    guard = threading.Lock()

    def journey(n: int) -> None:
        for i in range(3):
            key = f"j{n}-{i}"
            if ask(store, settings, key) is None:
                with guard:
                    allowed.append(key)

    threads = [threading.Thread(target=journey, args=(n,)) for n in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(allowed) == 2
