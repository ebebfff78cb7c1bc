from __future__ import annotations

import threading
from datetime import timedelta

from engine.caps import CapRequest, check_and_count, release
from engine.settings import ChannelCap, Settings
from engine.store import Store
from tests.engine.engine_support import NOW

H = timedelta(hours=1)


def ask(store: Store, settings: Settings, key: str, at=NOW, **kw) -> str | None:  # noqa: ANN001
    req = CapRequest(user_id=kw.pop("user_id", "u1"), channel=kw.pop("channel", "sms"), delivery_key=key, now=at, **kw)
    return store.transact(lambda s: check_and_count(s, store, settings, req))


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
