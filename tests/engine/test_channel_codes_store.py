"""Channel codes in the store, on SQLite and PostgreSQL: a placement is one
code, a callback's effects through a code are written once, and the
numbers follow people through merges and count conversions only after the
scan."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from engine import channel_codes, tags
from engine.callbacks import receipts
from engine.callbacks.mapping import JourneyEvent
from engine.channel_codes import CodeError, Through
from engine.events import ingest_event, link_identities
from engine.store import Store
from engine.store.models import TagHistory

T0 = datetime(2026, 11, 11, 2, 0, tzinfo=UTC)


def _code(store: Store, placement: str = "card-a", **kw: object) -> channel_codes.CodeInfo:
    code = channel_codes.reserve(
        store,
        vendor="official_account",
        placement=placement,
        name=placement,
        tags_=["src_card", "src_card"],
        welcome_journey=None,
        group=kw.get("group"),  # type: ignore[arg-type]
        staff=[],
    )
    return channel_codes.activate(
        store, code.id, vendor_ref="t", qr_url="http://weixin.qq.com/q/t", image=None, image_type=None
    )


def _scan(store: Store, code: channel_codes.CodeInfo, openid: str, at: datetime, *, contact: bool = True) -> str:
    message = {"FromUserName": openid, "CreateTime": str(int(at.timestamp())), "Event": "subscribe"}
    receipt, _ = receipts.store(store, vendor="official_account", receiver="wx", kind="event", message=message)
    event = JourneyEvent("subscribe", (("openid", openid),), {"placement": code.placement}, at, contact=contact)
    item = Through(receipt.id, event, code)
    assert channel_codes.apply(store, receipt.id, [item]) is True
    assert channel_codes.apply(store, receipt.id, [item]) is False  # processed again: nothing more
    ingest_event(store, event_id=receipt.id, name="subscribe", identifiers=[("openid", openid)], occurred_at=at)
    return receipt.id


def test_a_placement_is_one_code_and_an_unfinished_one_resumes(store: Store) -> None:
    first = channel_codes.reserve(
        store, vendor="wecom", placement="p1", name="", tags_=[], welcome_journey=None, group=None, staff=["a"]
    )
    again = channel_codes.reserve(
        store, vendor="wecom", placement="p1", name="P1", tags_=["x"], welcome_journey=None, group=None, staff=["b"]
    )
    assert again.id == first.id and again.status == "creating" and again.staff == ["b"]
    channel_codes.activate(store, first.id, vendor_ref="cfg", qr_url="http://q", image=b"png", image_type="image/png")
    with pytest.raises(CodeError) as taken:
        channel_codes.reserve(
            store, vendor="wecom", placement="p1", name="", tags_=[], welcome_journey=None, group=None, staff=["a"]
        )
    assert taken.value.kind == "taken"
    # the same placement at the other vendor is another code
    other = channel_codes.reserve(
        store, vendor="official_account", placement="p1", name="", tags_=[], welcome_journey=None, group=None, staff=[]
    )
    assert other.id != first.id
    assert channel_codes.image(store, first.id) == (b"png", "image/png")
    with pytest.raises(CodeError):
        channel_codes.check_placement("wecom", "x" * 31)


def test_tags_once_and_the_numbers(store: Store) -> None:
    code = _code(store)
    other = _code(store, "card-b")
    _scan(store, code, "o1", T0)
    _scan(store, code, "o1", T0 + timedelta(hours=1), contact=False)  # a scan by a follower
    _scan(store, code, "o2", T0 + timedelta(hours=2))
    known = link_identities(store, [("openid", "o3")])
    _scan(store, other, "o3", T0)
    uid1 = link_identities(store, [("openid", "o1")])
    with store.read() as s:
        assert [t for t in tags.tags_of(s, uid1) if not t.startswith("stage:")] == ["src_card"]  # once, deduplicated
        history = s.scalars(select(TagHistory).where(TagHistory.user_id == uid1, TagHistory.tag == "src_card")).all()
        assert [(h.action, h.source) for h in history] == [("add", "channel_code")]
    # o1 paid after scanning; o2 paid only before (not a conversion of the code)
    paid = {"amount": 129.5}
    ingest_event(
        store, event_id="pay-1", name="order_paid", user_id=uid1, occurred_at=T0 + timedelta(days=1), properties=paid
    )
    uid2 = link_identities(store, [("openid", "o2")])
    ingest_event(
        store, event_id="pay-2", name="order_paid", user_id=uid2, occurred_at=T0 - timedelta(days=1), properties=paid
    )
    n = channel_codes.numbers(store, ["order_paid"])
    assert (n[code.id].scans, n[code.id].contacts, n[code.id].new_users, n[code.id].people) == (3, 2, 2, 2)
    assert n[code.id].conversions == 1 and n[code.id].conversion_rate == 0.5
    assert n[code.id].revenue == 129.5 and n[other.id].revenue == 0  # o2's payment came before the scan
    assert (n[other.id].scans, n[other.id].new_users, n[other.id].conversions) == (1, 0, 0)  # o3 was known
    assert known
    # o2 turns out to be o1 (one person, two openids): counted once from now on
    link_identities(store, [("openid", "o1"), ("openid", "o2")])
    n = channel_codes.numbers(store, ["order_paid"])
    assert n[code.id].people == 1 and n[code.id].contacts == 1 and n[code.id].conversions == 1
    # a window counts only the scans inside it
    late = channel_codes.numbers(store, ["order_paid"], since=T0 + timedelta(minutes=30))
    assert late[code.id].scans == 2
    assert channel_codes.numbers(store, ["order_paid"], code_ids=[]) == {}
