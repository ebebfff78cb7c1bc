"""Follows and unfollows a vendor reports, onto consent
(``engine.consent.follow_state``): an unfollow opts out, a follow opts
back in only what an unfollow opted out, and a report older than the last
change is not applied (a retried ``subscribe`` arriving after a later
``unsubscribe``)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from engine import consent, identity
from engine.store import Store

T0 = datetime(2026, 11, 1, 9, 0, tzinfo=UTC)
CHANNEL = "official_account"


def _apply(store: Store, uid: str, following: bool, at: datetime) -> str | None:
    return store.transact(lambda s: consent.follow_state(s, uid, CHANNEL, following=following, at=at))


def _out(store: Store, uid: str) -> bool:
    with store.read() as s:
        return CHANNEL in consent.opted_out_channels(s, uid)


def test_unfollow_then_follow_back(store: Store) -> None:
    uid = store.transact(lambda s: identity.resolve(s, "openid", "o-follow-1"))
    assert _apply(store, uid, True, T0) is None  # following, never out: nothing to change
    assert _apply(store, uid, False, T0 + timedelta(minutes=1)) == "opted_out" and _out(store, uid)
    assert _apply(store, uid, False, T0 + timedelta(minutes=2)) is None  # already out
    assert _apply(store, uid, True, T0 + timedelta(minutes=3)) == "opted_in" and not _out(store, uid)


def test_a_late_older_follow_does_not_undo_a_newer_unfollow(store: Store) -> None:
    uid = store.transact(lambda s: identity.resolve(s, "openid", "o-follow-2"))
    assert _apply(store, uid, False, T0 + timedelta(minutes=5)) == "opted_out"
    assert _apply(store, uid, True, T0) is None and _out(store, uid)


def test_a_follow_leaves_an_opt_out_of_another_source(store: Store) -> None:
    uid = store.transact(lambda s: identity.resolve(s, "openid", "o-follow-3"))
    store.transact(lambda s: consent.set_opt_out(s, uid, CHANNEL, True, source="operator", now=T0))
    assert _apply(store, uid, True, T0 + timedelta(days=1)) is None and _out(store, uid)
    assert _apply(store, uid, False, T0 + timedelta(days=2)) is None  # out already: the operator's source stays
    assert _apply(store, uid, True, T0 + timedelta(days=3)) is None and _out(store, uid)
