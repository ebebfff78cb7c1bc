"""Priority between journeys for a user's last slot under the caps
(``engine.caps.arbitrate``), on SQLite and PostgreSQL: who waits, who wins,
what the loser's reason says, and two journeys racing in threads."""

from __future__ import annotations

import threading
from datetime import timedelta

from engine.caps import CapRequest, Denial, check_and_count
from engine.settings import Settings
from engine.store import Store
from tests.engine.engine_support import NOW

S = timedelta(seconds=1)
ONE_A_DAY = Settings(cap_per_day=1, cap_per_week=None)


def ask(store: Store, key: str, journey: str, priority: int, rival: int | None, at=NOW) -> Denial | None:  # noqa: ANN001
    req = CapRequest(
        user_id="u1",
        channel="sms",
        delivery_key=key,
        now=at,
        journey_id=journey,
        priority=priority,
        rival_priority=rival,
        arbitration_seconds=30,
    )
    return store.transact(lambda s: check_and_count(s, store, ONE_A_DAY, req))


def test_a_send_with_nobody_better_takes_the_last_slot_at_once(store: Store) -> None:
    assert ask(store, "core-1", "core", priority=1, rival=5) is None
    denial = ask(store, "promo-1", "promo", priority=5, rival=1, at=NOW + S)
    assert denial is not None and not denial.wait
    assert denial.reason == "frequency cap: 1 messages per day reached (1 sent by core)"


def test_a_lower_priority_send_waits_and_a_better_one_arriving_meanwhile_wins(store: Store) -> None:
    waiting = ask(store, "promo-1", "promo", priority=5, rival=1)
    assert waiting is not None and waiting.wait and waiting.retry_at == NOW + 30 * S
    assert "last message under the caps" in waiting.reason
    assert ask(store, "core-1", "core", priority=1, rival=5, at=NOW + 5 * S) is None  # nothing better: now
    late = ask(store, "promo-1", "promo", priority=5, rival=1, at=NOW + 30 * S)
    assert late is not None and not late.wait and "by core" in late.reason


def test_two_waiting_sends_the_better_claim_wins(store: Store) -> None:
    # a priority-1 journey exists, so a priority-2 send waits too
    assert ask(store, "promo-1", "promo", priority=5, rival=1).wait  # type: ignore[union-attr]
    assert ask(store, "vip-1", "vip", priority=2, rival=1, at=NOW + 5 * S).wait  # type: ignore[union-attr]
    lost = ask(store, "promo-1", "promo", priority=5, rival=1, at=NOW + 30 * S)
    assert lost is not None and not lost.wait
    assert lost.reason == "frequency cap: the user's last message went to journey vip (priority 2)"
    assert ask(store, "vip-1", "vip", priority=2, rival=1, at=NOW + 35 * S) is None


def test_nobody_came_the_waiting_send_takes_the_slot(store: Store) -> None:
    assert ask(store, "promo-1", "promo", priority=5, rival=1).wait  # type: ignore[union-attr]
    assert ask(store, "promo-1", "promo", priority=5, rival=1, at=NOW + 30 * S) is None


def test_room_for_more_than_one_never_waits(store: Store) -> None:
    two = Settings(cap_per_day=2, cap_per_week=None)
    req = CapRequest(
        "u1", "sms", "promo-1", NOW, journey_id="promo", priority=5, rival_priority=1, arbitration_seconds=30
    )
    assert store.transact(lambda s: check_and_count(s, store, two, req)) is None


def test_two_journeys_racing_in_threads_for_the_last_slot(store: Store) -> None:
    """Both at the same instant, many times over (fresh users): the better
    priority gets the slot every time, and only one send is counted."""
    winners: list[str] = []
    guard = threading.Lock()
    # The waiting send asks again 30 s later (workflow time): after both
    # same-instant first asks, however a loaded machine schedules the threads.
    later_on = threading.Barrier(2)

    def send(user: str, journey: str, priority: int, rival: int) -> None:
        req = CapRequest(
            user, "sms", f"{journey}-{user}", NOW, journey_id=journey, priority=priority,
            rival_priority=rival, arbitration_seconds=30,
        )  # fmt: skip
        first = store.transact(lambda s: check_and_count(s, store, ONE_A_DAY, req))
        later_on.wait(timeout=60)
        if first is not None and first.wait:
            later = CapRequest(**{**req.__dict__, "now": first.retry_at})
            first = store.transact(lambda s: check_and_count(s, store, ONE_A_DAY, later))
        if first is None:
            with guard:
                winners.append(journey)

    for n in range(10):
        user = f"racer-{n}"
        threads = [
            threading.Thread(target=send, args=(user, "core", 1, 5)),
            threading.Thread(target=send, args=(user, "promo", 5, 1)),
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert winners == ["core"] * 10
