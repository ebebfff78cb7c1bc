"""Timeline paging: the newest page first, an ``until`` for the older one,
and walking every page shows each entry exactly once, even when an activity
wrote several steps at one instant right at a page's edge."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy.orm import Session

from contracts.activities import StepRecord
from engine import runs
from engine.store import Store
from engine.store.models import CouponGrant, Delivery
from engine.timeline import newest_page, user_timeline_page

NOW = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)


def _tagged(seq: int, at: datetime) -> StepRecord:
    """Step ``seq`` of run r1 of user u1, at node ``n<seq>``."""
    return StepRecord(
        run_key="r1",
        seq=seq,
        journey_id="j",
        version=1,
        user_id="u1",
        node_id=f"n{seq}",
        kind="tag",
        outcome="passed",
        at=at,
    )


def test_newest_page_never_splits_an_instant() -> None:
    t = [NOW + timedelta(seconds=n) for n in range(10)]
    at = lambda row: row[0]  # noqa: E731
    rows = [(t[9], "a"), (t[8], "b"), (t[7], "c"), (t[7], "d"), (t[6], "e")]
    assert newest_page(rows, 5, at) == (rows, None, None)
    assert newest_page(rows, 2, at) == (rows[:2], t[7], None)  # the next page starts at t7, inclusive
    assert newest_page(rows, 3, at) == (rows[:2], t[7], None)  # t7 would be split: stop before it
    same = [(t[7], "x"), (t[7], "y"), (t[7], "z")]
    page, older, crowded = newest_page(same, 2, at)  # one instant larger than a page: shown whole
    assert (page, older, crowded) == (same, t[7] - timedelta(microseconds=1), t[7])


@pytest.mark.parametrize("limit", [1, 2, 3, 5, 50])
def test_walking_the_pages_shows_every_entry_once(store: Store, limit: int) -> None:
    times = [NOW, NOW, NOW + timedelta(seconds=1), NOW + timedelta(seconds=2), NOW + timedelta(seconds=2)]
    times += [NOW + timedelta(seconds=2), NOW + timedelta(minutes=5)]
    records = [_tagged(i, at) for i, at in enumerate(times)]
    runs.record_steps(store, records)
    seen: list[str] = []
    until = None
    for _ in range(len(times) + 1):
        page, until = user_timeline_page(store, "u1", limit=limit, until=until)
        assert [i.at for i in page] == sorted(i.at for i in page)  # each page oldest first
        seen = [i.node_id for i in page] + seen
        if until is None:
            break
    assert sorted(seen) == sorted(r.node_id for r in records) and len(seen) == len(set(seen))


def test_one_instant_reads_steps_in_their_order_then_sends_then_coupons(store: Store) -> None:
    """The same-instant order is the timeline's (the API and the console read
    the same function): a run's steps by ``seq``, then the send, then the coupon."""
    runs.record_steps(store, [_tagged(seq, NOW) for seq in (3, 1, 2)])

    def ledger(s: Session) -> None:
        s.add(
            CouponGrant(
                idempotency_key="c1", pool="p", user_id="u1", code="C-1", journey_id="j", node_id="c", issued_at=NOW
            )
        )
        s.add(
            Delivery(
                idempotency_key="d1",
                journey_id="j",
                version=1,
                node_id="s",
                user_id="u1",
                channel="sms",
                template="t",
                status="suppressed",
                reason="quiet hours",
                at=NOW,
            )
        )

    store.transact(ledger)
    page, older = user_timeline_page(store, "u1")
    assert older is None
    assert [(i.kind, i.node_id) for i in page] == [
        ("step", "n1"),
        ("step", "n2"),
        ("step", "n3"),
        ("delivery", "s"),
        ("coupon", "c"),
    ]
    send = page[3]
    assert (send.status, send.reason, send.version, send.summary) == (
        "suppressed",
        "quiet hours",
        1,
        "sms · t: suppressed",
    )
