"""``engine.recipient``: the send's two reads of its recipient give what the
one-by-one lookups give (``canonical_user_id``, the profile row,
``identities_of``, ``opted_out_channels``, ``tags_of``), in their order, for
a user with several identities of a kind, opt-ins and opt-outs, tags, after a
merge and for an unknown id; on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime

from engine import identity
from engine.consent import addresses_from, opted_out_channels, set_opt_out
from engine.recipient import Profile, canonical_profile, recipient
from engine.store import Store
from engine.tags import add_tags, tags_of

NOW = datetime(2026, 12, 1, 10, 0, tzinfo=UTC)


def _one_by_one(store: Store, user_id: str) -> tuple[str, dict, set, list]:
    with store.read() as s:
        uid = identity.canonical_user_id(s, user_id) or user_id
        return uid, identity.identities_of(s, uid), opted_out_channels(s, uid), tags_of(s, uid)


def test_a_busy_user_reads_the_same_as_one_lookup_at_a_time(store: Store) -> None:
    def make(s) -> str:  # noqa: ANN001
        uid = identity.identify(s, {"phone": "13900000002"}, user_id="u-busy", now=NOW)
        identity.identify(s, {"phone": "13900000001", "openid": "o-2"}, user_id=uid, now=NOW)
        identity.identify(s, {"openid": "o-1", "email": "a@example.com"}, user_id=uid, now=NOW)
        identity.set_attributes(s, uid, {"city": "上海", "timezone": "Asia/Shanghai"}, now=NOW)
        add_tags(s, uid, ["vip", "Zeta", "alpha", "新客"], source="test", now=NOW)
        set_opt_out(s, uid, "sms", True, now=NOW)
        set_opt_out(s, uid, "email", False, now=NOW)  # opted back in: not an opt-out
        set_opt_out(s, uid, "push", True, now=NOW)
        return uid

    uid = store.transact(make)
    with store.read() as s:
        got_uid, profile = canonical_profile(s, uid)
        got = recipient(s, uid)
    want_uid, ids, opted_out, tags = _one_by_one(store, uid)
    assert got_uid == want_uid == uid
    assert profile == Profile({"city": "上海", "timezone": "Asia/Shanghai"}, "Asia/Shanghai", None, None)
    assert got.identities == ids and len(ids["phone"]) == 2  # oldest first: the address is the newest
    assert got.reach.addresses == addresses_from(ids)
    assert got.reach.opted_out == frozenset(opted_out) == {"sms", "push"}
    assert got.tags == tags


def test_a_merged_id_reads_the_survivor_and_an_unknown_id_nothing(store: Store) -> None:
    def make(s) -> tuple[str, str]:  # noqa: ANN001
        a = identity.identify(s, {"phone": "13900000010"}, user_id="u-a", now=NOW)
        b = identity.identify(s, {"email": "b@example.com"}, user_id="u-b", now=NOW)
        identity.set_attributes(s, b, {"grade": "gold"}, now=NOW)
        add_tags(s, a, ["from-a"], source="test", now=NOW)
        return a, identity.merge_users(s, a, b, now=NOW)

    a, survivor = store.transact(make)
    loser = "u-b" if survivor == a else a
    with store.read() as s:
        uid, profile = canonical_profile(s, loser)
        got = recipient(s, uid)
        assert canonical_profile(s, "u-nobody") == ("u-nobody", None)
        nobody = recipient(s, "u-nobody")
        assert (nobody.identities, nobody.reach.opted_out, nobody.tags) == ({}, frozenset(), [])
    want_uid, ids, opted_out, tags = _one_by_one(store, loser)
    assert uid == want_uid == survivor
    assert profile is not None and profile.attributes == {"grade": "gold"}
    assert (got.identities, set(got.reach.opted_out), got.tags) == (ids, opted_out, tags) == (ids, set(), ["from-a"])
