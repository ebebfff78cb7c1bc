"""Per-channel consent and reachability.

A user is reachable on a channel when they have the address identity for it
(``ADDRESS_KIND``: a phone for SMS, an external userid for WeCom, …) and have
not opted out of it. ``webhook`` needs no address and is always reachable.
Best-of sends walk the requested channels in order and take the first
reachable one, so an app user gets free push before a paid SMS.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import bindparam, select
from sqlalchemy.orm import Session

from engine.channels.base import ADDRESS_KIND
from engine.identity import identities_of
from engine.store import Store
from engine.store.models import Consent
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


def addresses(session: Session, user_id: str) -> dict[str, str | None]:
    """Channel -> address for every channel the user has an address on (the
    most recently linked identity of that kind)."""
    return addresses_from(identities_of(session, user_id))


def addresses_from(ids: dict[str, list[str]]) -> dict[str, str | None]:
    """``addresses`` from the user's identities (``identity.identities_of``)."""
    out: dict[str, str | None] = {}
    for channel, kind in ADDRESS_KIND.items():
        if kind is None:
            out[channel] = None
        elif ids.get(kind):
            out[channel] = ids[kind][-1]
    return out


def reachable_channels(session: Session, user_id: str) -> list[str]:
    """Channels (in ``ADDRESS_KIND`` order) with an address and no opt-out."""
    blocked = opted_out_channels(session, user_id)
    return [channel for channel in addresses(session, user_id) if channel not in blocked]
