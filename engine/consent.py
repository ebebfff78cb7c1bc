"""Per-channel consent and reachability.

A user is reachable on a channel when they have the address identity for it
(``ADDRESS_KIND``: a phone for SMS, an external userid for WeCom, …) and have
not opted out of it. ``webhook`` needs no address and is always reachable.
Best-of sends walk the requested channels in order and take the first
reachable one, so an app user gets free push before a paid SMS.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import bindparam, select
from sqlalchemy.orm import Session

from engine.channels.base import ADDRESS_KIND
from engine.identity import identities_of
from engine.store import Store
from engine.store.models import Consent, ContactFollow, User
from engine.store.types import utc, utcnow

_CONSENTS = Consent.__table__
_OPTED_OUT = select(_CONSENTS.c.channel).where(_CONSENTS.c.user_id == bindparam("uid"), _CONSENTS.c.opted_out.is_(True))


def opted_out_channels(session: Session, user_id: str) -> set[str]:
    return set(session.scalars(_OPTED_OUT, {"uid": user_id}))


def set_opt_out(
    session: Session,
    user_id: str,
    channel: str,
    opted_out: bool = True,
    *,
    source: str | None = None,
    now: datetime | None = None,
) -> None:
    stamp = utc(now) if now else utcnow()
    row = session.scalars(select(Consent).where(Consent.user_id == user_id, Consent.channel == channel)).first()
    if row is None:
        session.add(Consent(user_id=user_id, channel=channel, opted_out=opted_out, source=source, updated_at=stamp))
    else:
        row.opted_out, row.source, row.updated_at = opted_out, source, stamp
    session.flush()


def opt_out(store: Store, user_id: str, channel: str, *, opted_out: bool = True, source: str | None = None) -> None:
    """Store-level convenience (API / unsubscribe handlers)."""
    from engine.identity import ensure_user

    def work(s: Session) -> None:
        set_opt_out(s, ensure_user(s, user_id), channel, opted_out, source=source)

    store.transact(work)


# The source of an opt-out the vendor made (the user unfollowed the account):
# a follow clears it again, while an opt-out of any other source stays.
FOLLOW_SOURCE = "vendor:unfollowed"


def follow_state(
    session: Session, user_id: str, channel: str, *, following: bool, at: datetime, via: str | None = None
) -> str | None:
    """What a follow (``following``) or an unfollow the vendor told us does
    to the user's consent on ``channel``: an unfollow opts them out (an
    Official Account cannot send template messages to a non-follower:
    errcode 43004), a follow opts back in only an opt-out an unfollow made.
    A report older than the consent's last change is not applied (WeChat
    may deliver a retried ``subscribe`` after a later ``unsubscribe``).
    Returns what changed (``opted_out``, ``opted_in``) or None.

    ``via``: the relation is with one staff member (WeCom: ``UserID``). It
    is kept per staff member (``ContactFollow``), a report older than that
    relation's last change is not applied, and the consent follows the
    whole: out once no staff member the store knows of is still a contact,
    back in when one is again."""
    if via is not None:
        return _follow_via(session, user_id, channel, via, following=following, at=utc(at))
    row = session.scalars(select(Consent).where(Consent.user_id == user_id, Consent.channel == channel)).first()
    stamp = utc(at)
    if row is not None and utc(row.updated_at) > stamp:
        return None
    return _settle(session, user_id, channel, row, following=following, at=stamp)


def _settle(
    session: Session, user_id: str, channel: str, row: Consent | None, *, following: bool, at: datetime
) -> str | None:
    """Not following: out, unless out already (by the user's own choice or
    an earlier unfollow). Following: back in, only from an opt-out an
    unfollow made."""
    if not following:
        if row is not None and row.opted_out:
            return None
        set_opt_out(session, user_id, channel, True, source=FOLLOW_SOURCE, now=at)
        return "opted_out"
    if row is None or not row.opted_out or row.source != FOLLOW_SOURCE:
        return None
    set_opt_out(session, user_id, channel, False, source=FOLLOW_SOURCE, now=at)
    return "opted_in"


def _follow_via(session: Session, user_id: str, channel: str, via: str, *, following: bool, at: datetime) -> str | None:
    # One report of a person at a time: two removals of two staff members
    # processed side by side would each read the other's relation as still
    # following (PostgreSQL, READ COMMITTED), and neither would opt out.
    session.execute(select(User.id).where(User.id == user_id).with_for_update())
    key = {"user_id": user_id, "channel": channel, "via": via}
    relation = session.get(ContactFollow, key)
    if relation is not None and utc(relation.changed_at) > at:
        return None
    if relation is None:
        session.add(ContactFollow(**key, following=following, changed_at=at))
    else:
        relation.following, relation.changed_at = following, at
    session.flush()
    return settle_relations(session, user_id, channel, at=at)


def settle_relations(session: Session, user_id: str, channel: str, *, at: datetime) -> str | None:
    """The consent on ``channel`` as the kept relations (``ContactFollow``)
    say, as of ``at``: out (``FOLLOW_SOURCE``) when relations are kept and
    none follows, in again when one does and the opt-out was theirs. A
    consent someone else changed after ``at`` (an operator's opt-in or
    opt-out) is left as it is. Returns what changed, or None."""
    states = list(
        session.scalars(
            select(ContactFollow.following).where(ContactFollow.user_id == user_id, ContactFollow.channel == channel)
        )
    )
    if not states:
        return None
    row = session.scalars(select(Consent).where(Consent.user_id == user_id, Consent.channel == channel)).first()
    stamp = utc(at)
    if row is not None:
        if row.source != FOLLOW_SOURCE and utc(row.updated_at) > stamp:
            return None
        stamp = max(stamp, utc(row.updated_at))  # a consent's time never goes back
    return _settle(session, user_id, channel, row, following=any(states), at=stamp)


def addresses_from(ids: dict[str, list[str]]) -> dict[str, str | None]:
    """Channel -> address for every channel the user has an address on (the
    most recently linked identity of that kind), from their identities
    (``identity.identities_of``)."""
    out: dict[str, str | None] = {}
    for channel, kind in ADDRESS_KIND.items():
        if kind is None:
            out[channel] = None
        elif ids.get(kind):
            out[channel] = ids[kind][-1]
    return out


@dataclass(frozen=True)
class Reach:
    """Where a user can be messaged: their address per channel and the channels
    they opted out of. The one answer to "reachable on X?" that the snapshot
    (``reachable`` conditions, best-of) and the send decision share."""

    addresses: Mapping[str, str | None]
    opted_out: frozenset[str] = frozenset()

    def why_not(self, channel: str) -> str | None:
        """Why ``channel`` cannot reach the user, or None when it can."""
        if channel in self.opted_out:
            return f"opted out of {channel}"
        if channel not in self.addresses:
            return f"unreachable on {channel}: no address"
        return None

    def reachable(self, channels: list[str] | None = None) -> list[str]:
        """The channels (``channels`` in their order, else every channel in
        ``ADDRESS_KIND`` order) that reach the user."""
        return [c for c in (self.addresses if channels is None else channels) if self.why_not(c) is None]


# A user the store does not know: only channels that need no address.
UNKNOWN_USER = Reach(addresses_from({}))


def reach(session: Session, user_id: str, ids: dict[str, list[str]] | None = None) -> Reach:
    """The user's ``Reach``; ``ids`` are their identities when already read."""
    found = addresses_from(identities_of(session, user_id) if ids is None else ids)
    return Reach(found, frozenset(opted_out_channels(session, user_id)))


def reachable_channels(session: Session, user_id: str) -> list[str]:
    """Channels (in ``ADDRESS_KIND`` order) with an address and no opt-out."""
    return reach(session, user_id).reachable()
