"""Follows and unfollows a vendor reports, onto consent
(``engine.consent.follow_state``): an unfollow opts out, a follow opts
back in only what an unfollow opted out, and a report older than the last
change is not applied (a retried ``subscribe`` arriving after a later
``unsubscribe``). Where the relation is per staff member (WeCom), the
channel is out once no staff member is left."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import select

from engine import consent, identity
from engine.store import Store
from engine.store.models import ContactFollow

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


def _staff(store: Store, uid: str, staff: str, following: bool, at: datetime) -> str | None:
    return store.transact(lambda s: consent.follow_state(s, uid, "wecom", following=following, at=at, via=staff))


def _wecom_out(store: Store, uid: str) -> bool:
    with store.read() as s:
        return "wecom" in consent.opted_out_channels(s, uid)


def test_wecom_is_out_only_when_no_staff_member_is_left(store: Store) -> None:
    uid = store.transact(lambda s: identity.resolve(s, "wecom_external_userid", "wm-staff-1"))
    assert _staff(store, uid, "zhangsan", True, T0) is None
    assert _staff(store, uid, "lisi", True, T0 + timedelta(minutes=1)) is None
    assert _staff(store, uid, "zhangsan", False, T0 + timedelta(minutes=2)) is None and not _wecom_out(store, uid)
    assert _staff(store, uid, "lisi", False, T0 + timedelta(minutes=3)) == "opted_out" and _wecom_out(store, uid)
    assert _staff(store, uid, "lisi", False, T0 + timedelta(minutes=4)) is None  # already out
    assert _staff(store, uid, "zhangsan", True, T0 + timedelta(minutes=5)) == "opted_in"
    assert not _wecom_out(store, uid)


def test_a_late_report_of_one_staff_member_is_judged_on_its_own(store: Store) -> None:
    uid = store.transact(lambda s: identity.resolve(s, "wecom_external_userid", "wm-staff-2"))
    assert _staff(store, uid, "zhangsan", False, T0 + timedelta(minutes=5)) == "opted_out"
    assert _staff(store, uid, "zhangsan", True, T0) is None and _wecom_out(store, uid)  # older than the removal
    # an add of another staff member, even reported late, is a contact the removal did not end
    assert _staff(store, uid, "lisi", True, T0 + timedelta(minutes=1)) == "opted_in"


def test_an_operators_wecom_opt_out_stays_whoever_is_added(store: Store) -> None:
    uid = store.transact(lambda s: identity.resolve(s, "wecom_external_userid", "wm-staff-3"))
    store.transact(lambda s: consent.set_opt_out(s, uid, "wecom", True, source="operator", now=T0))
    assert _staff(store, uid, "zhangsan", True, T0 + timedelta(days=1)) is None and _wecom_out(store, uid)
    assert _staff(store, uid, "zhangsan", False, T0 + timedelta(days=2)) is None
    assert _staff(store, uid, "lisi", True, T0 + timedelta(days=3)) is None and _wecom_out(store, uid)


def test_a_merge_keeps_the_newer_word_on_each_staff_member(store: Store) -> None:
    older = store.transact(lambda s: identity.resolve(s, "wecom_external_userid", "wm-staff-4"))
    newer = store.transact(lambda s: identity.resolve(s, "phone", "13800004444"))
    assert _staff(store, older, "zhangsan", True, T0) is None
    assert _staff(store, newer, "zhangsan", False, T0 + timedelta(minutes=1)) == "opted_out"
    assert _staff(store, newer, "lisi", True, T0 + timedelta(minutes=2)) == "opted_in"
    survivor = store.transact(lambda s: identity.merge_users(s, older, newer))
    assert survivor == older
    with store.read() as s:
        rows = s.scalars(select(ContactFollow).order_by(ContactFollow.via)).all()
        kept = [(r.user_id, r.via, r.following) for r in rows if r.user_id in (older, newer)]
    assert kept == [(older, "lisi", True), (older, "zhangsan", False)]
    # the survivor is still a contact of lisi: removing zhangsan again changes nothing, removing lisi opts out
    assert _staff(store, older, "zhangsan", False, T0 + timedelta(minutes=3)) is None
    assert _staff(store, older, "lisi", False, T0 + timedelta(minutes=4)) == "opted_out"


def test_a_merge_takes_the_vendors_opt_out_with_its_source_so_an_add_undoes_it(store: Store) -> None:
    older = store.transact(lambda s: identity.resolve(s, "wecom_external_userid", "wm-staff-5"))
    newer = store.transact(lambda s: identity.resolve(s, "phone", "13800005555"))
    store.transact(lambda s: consent.set_opt_out(s, older, "wecom", False, source="api", now=T0))
    assert _staff(store, newer, "zhangsan", False, T0 + timedelta(minutes=1)) == "opted_out"
    assert store.transact(lambda s: identity.merge_users(s, older, newer)) == older
    assert _wecom_out(store, older)
    assert _staff(store, older, "lisi", True, T0 + timedelta(minutes=2)) == "opted_in"
    assert not _wecom_out(store, older)


def test_a_merge_settles_wecom_by_the_merged_relations(store: Store) -> None:
    """The survivor was out (its one staff member gone); the other id still
    follows someone: after the merge the person is reachable again."""
    older = store.transact(lambda s: identity.resolve(s, "wecom_external_userid", "wm-staff-6"))
    newer = store.transact(lambda s: identity.resolve(s, "phone", "13800006666"))
    assert _staff(store, older, "zhangsan", False, T0) == "opted_out"
    assert _staff(store, newer, "lisi", True, T0 + timedelta(minutes=1)) is None
    store.transact(lambda s: identity.merge_users(s, older, newer))
    assert not _wecom_out(store, older)


def _mapped(change: str, **fields: str) -> tuple[bool | None, str | None]:
    from engine.callbacks.wecom import map_message

    message = {"MsgType": "event", "Event": "change_external_contact", "ChangeType": change, "CreateTime": "1"}
    (event,) = map_message({**message, "ExternalUserID": "wm-x", **fields}, corp_id="corp").events
    return event.following, event.via


def test_which_wecom_changes_start_or_end_a_relation() -> None:
    assert _mapped("add_external_contact", UserID="zhangsan") == (True, "zhangsan")
    assert _mapped("add_half_external_contact", UserID="zhangsan") == (True, "zhangsan")
    assert _mapped("del_follow_user", UserID="zhangsan") == (False, "zhangsan")
    assert _mapped("del_external_contact", UserID="zhangsan", Source="DELETE_BY_STAFF") == (False, "zhangsan")
    # a hand-over: the taker's add comes with it, so it ends no contact
    assert _mapped("del_external_contact", UserID="zhangsan", Source="DELETE_BY_TRANSFER") == (None, None)
    assert _mapped("edit_external_contact", UserID="zhangsan") == (None, None)
    assert _mapped("del_follow_user") == (None, None)  # no staff member named: says nothing
    assert _mapped("del_follow_user", UserID="z" * 300) == (None, None)
