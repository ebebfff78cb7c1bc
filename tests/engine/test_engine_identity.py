from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import func, select

from engine import identity
from engine.consent import opted_out_channels, set_opt_out
from engine.events import ingest_event, link_identities
from engine.store import Store
from engine.store.models import Delivery, Event, Identity, Run, Tag, TagHistory, User, UserMerge
from engine.tags import add_tags, tags_of
from tests.engine.engine_support import NOW


def test_same_identifier_resolves_to_same_user(store: Store) -> None:
    a = store.transact(lambda s: identity.resolve(s, "openid", "o-1", now=NOW))
    b = store.transact(lambda s: identity.resolve(s, "openid", "o-1", now=NOW))
    c = store.transact(lambda s: identity.resolve(s, "openid", "o-2", now=NOW))
    assert a == b
    assert a != c


def test_phone_spellings_are_one_identifier(store: Store) -> None:
    a = store.transact(lambda s: identity.resolve(s, "phone", "+86 138-0013-8000"))
    b = store.transact(lambda s: identity.resolve(s, "phone", "13800138000"))
    assert a == b


def test_unknown_kind_is_refused(store: Store) -> None:
    with pytest.raises(identity.IdentityError):
        store.transact(lambda s: identity.resolve(s, "qq", "123"))


def test_identify_links_new_identifier_to_known_user(store: Store) -> None:
    uid = store.transact(lambda s: identity.resolve(s, "anonymous_id", "dev-1"))
    linked = link_identities(store, {"anonymous_id": "dev-1", "app_user_id": "app-9"})
    assert linked == uid
    with store.read() as s:
        assert identity.lookup(s, "app_user_id", "app-9") == uid


def test_merge_keeps_tags_events_attributes_and_ledgers(store: Store) -> None:
    # Two people-records: an Official Account follower and an app user, later
    # revealed to be the same person.
    old = ingest_event(
        store,
        event_id="e-old",
        name="subscribed",
        identifiers={"openid": "o-1"},
        occurred_at=NOW - timedelta(days=3),
        attributes={"city": "上海", "grade": 3},
    ).user_id
    young = ingest_event(
        store,
        event_id="e-young",
        name="app_opened",
        identifiers={"app_user_id": "app-1"},
        occurred_at=NOW - timedelta(days=1),
        attributes={"city": "北京", "vip": True},
    ).user_id
    assert old != young

    def decorate(s) -> None:  # noqa: ANN001
        add_tags(s, old, ["source:poster-7", "shared"], source="api", now=NOW - timedelta(days=3))
        add_tags(s, young, ["app_user", "shared"], source="api", now=NOW - timedelta(days=5))
        set_opt_out(s, young, "sms", source="reply TD")
        s.add(Run(run_key="r-young", journey_id="j", version=1, user_id=young, admitted=True, entered_at=NOW))
        s.add(Delivery(idempotency_key="d-young", user_id=young, status="sent", at=NOW))

    store.transact(decorate)

    survivor = link_identities(store, {"openid": "o-1", "app_user_id": "app-1"}, now=NOW)
    assert survivor == old  # the older user survives, whatever order ids were given in

    with store.read() as s:
        tags = tags_of(s, survivor)
        assert {"source:poster-7", "shared", "app_user"} <= set(tags)
        shared = s.scalars(select(Tag).where(Tag.user_id == survivor, Tag.tag == "shared")).one()
        assert shared.added_at == NOW - timedelta(days=5)  # earliest add kept
        assert set(s.scalars(select(Event.id).where(Event.user_id == survivor))) == {"e-old", "e-young"}
        user = s.get(User, survivor)
        assert user.attributes == {"city": "上海", "grade": 3, "vip": True}  # survivor wins conflicts
        assert opted_out_channels(s, survivor) == {"sms"}  # consent never widened
        assert s.scalars(select(Run.user_id).where(Run.run_key == "r-young")).one() == survivor
        assert s.scalars(select(Delivery.user_id).where(Delivery.idempotency_key == "d-young")).one() == survivor
        assert s.execute(select(func.count()).select_from(Tag).where(Tag.user_id == young)).scalar() == 0
        assert s.execute(select(func.count()).select_from(Identity).where(Identity.user_id == young)).scalar() == 0
        assert s.execute(select(func.count()).select_from(TagHistory).where(TagHistory.user_id == young)).scalar() == 0
        # Old ids keep resolving, and the merge is on record.
        assert identity.canonical_user_id(s, young) == survivor
        assert identity.lookup(s, "app_user_id", "app-1") == survivor
        merge = s.scalars(select(UserMerge)).one()
        assert (merge.loser_id, merge.survivor_id) == (young, survivor)


def test_merge_is_deterministic_regardless_of_argument_order(store: Store) -> None:
    def make(s) -> tuple[str, str]:  # noqa: ANN001
        a = identity.ensure_user(s, "u-a", now=NOW - timedelta(days=10))
        b = identity.ensure_user(s, "u-b", now=NOW)
        return a, b

    a, b = store.transact(make)
    assert store.transact(lambda s: identity.merge_users(s, b, a)) == "u-a"
    with store.read() as s:
        assert identity.canonical_user_id(s, "u-b") == "u-a"


def test_chained_merges_resolve_to_final_survivor(store: Store) -> None:
    def make(s) -> None:  # noqa: ANN001
        for i, name in enumerate(["u1", "u2", "u3"]):
            identity.ensure_user(s, name, now=NOW + timedelta(minutes=i))

    store.transact(make)
    store.transact(lambda s: identity.merge_users(s, "u2", "u3"))
    store.transact(lambda s: identity.merge_users(s, "u1", "u2"))
    with store.read() as s:
        assert identity.canonical_user_id(s, "u3") == "u1"
        assert identity.canonical_user_id(s, "nobody") is None


def test_users_who_entered_on_one_broadcast_can_still_be_merged(store: Store) -> None:
    """A broadcast's marker is one trigger id for everyone it entered, and a
    user enters a journey once per trigger (unique per journey, user and
    trigger). Two such users found to be one person merge anyway: the
    survivor's entry keeps the marker, the other run keeps its history, and
    the marker delivered again enters nobody."""
    from engine import runs

    marker = {"id": "broadcast:recall:2026-11-23T02:00:00Z", "name": "broadcast"}
    a = store.transact(lambda s: identity.resolve(s, "phone", "13800138000", now=NOW))
    b = store.transact(lambda s: identity.resolve(s, "openid", "o-merge", now=NOW + timedelta(seconds=1)))

    def enter(user: str, run_key: str) -> runs.BeginAnswer:
        return store.transact(
            lambda s: runs.begin(
                s,
                store,
                run_key=run_key,
                journey_id="recall",
                version=1,
                user_id=user,
                mode="always",
                cooldown_seconds=None,
                now=NOW,
                trigger_event=marker,
            )
        )

    assert enter(a, "journey:recall:a:1").allowed and enter(b, "journey:recall:b:1").allowed
    survivor = link_identities(store, {"phone": "13800138000", "openid": "o-merge"})
    assert survivor == a
    with store.read() as s:
        rows = s.execute(select(Run.run_key, Run.trigger_event_id, Run.trigger_event).where(Run.user_id == a)).all()
    assert {r.run_key for r in rows} == {"journey:recall:a:1", "journey:recall:b:1"}
    assert sorted((r.run_key, r.trigger_event_id) for r in rows) == [
        ("journey:recall:a:1", marker["id"]),
        ("journey:recall:b:1", None),
    ]
    assert all(r.trigger_event == marker for r in rows)  # what started each run is still on record
    again = enter(survivor, "journey:recall:a:2")
    assert not again.allowed and "already entered" in (again.reason or "")
