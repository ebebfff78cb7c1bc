"""One person, many identifiers.

An event may carry any of a user's ids (openid from the Official Account, a
phone from an SMS form, the app's user id, a device id before login). Every
identifier resolves to one user row; when a single call presents identifiers
that currently belong to two users, the two are merged: the older user (by
creation time, then id) survives, everything the younger one owned moves over,
and the younger id is kept with ``merged_into`` so ids already handed out (to
workflows, to the API) keep resolving.

All functions here take an open write ``Session`` so callers compose them into
one transaction (see ``engine.events.ingest_event``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, exists, insert, select, update
from sqlalchemy.orm import Session, aliased

from engine import merges, run_signals
from engine.store.models import (
    IDENTITY_KINDS,
    CapUsage,
    Consent,
    ContactFollow,
    CouponGrant,
    Delivery,
    Event,
    Identity,
    Run,
    StepRecord,
    Tag,
    TagHistory,
    User,
    UserMerge,
    new_user_id,
)
from engine.store.types import utc, utcnow

Identifier = tuple[str, str]
MAX_MERGE_CHAIN = 32

# The hot lookups (every event and every send resolves a user) as Core
# statements built once: building an ORM query per call cost three times the
# query itself.
_USERS = User.__table__
_IDENTITIES = Identity.__table__
_MERGED_INTO = select(_USERS.c.merged_into).where(_USERS.c.id == bindparam("uid"))
_OWNER = select(_IDENTITIES.c.user_id).where(
    _IDENTITIES.c.kind == bindparam("kind"), _IDENTITIES.c.value == bindparam("value")
)
_IDENTITIES_OF = (
    select(_IDENTITIES.c.kind, _IDENTITIES.c.value)
    .where(_IDENTITIES.c.user_id == bindparam("uid"))
    .order_by(_IDENTITIES.c.id)
)
_INSERT_USER = insert(_USERS)
_INSERT_IDENTITY = insert(_IDENTITIES)


class IdentityError(ValueError):
    pass


def normalize_identifiers(identifiers: Mapping[str, str | None] | Iterable[Identifier]) -> list[Identifier]:
    """Validate kinds, drop empty values and duplicates, keep the caller's order."""
    pairs = identifiers.items() if isinstance(identifiers, Mapping) else identifiers
    out: list[Identifier] = []
    for kind, value in pairs:
        if kind not in IDENTITY_KINDS:
            raise IdentityError(f"unknown identity kind {kind!r} (known: {', '.join(IDENTITY_KINDS)})")
        if value is None or str(value).strip() == "":
            continue
        pair = (kind, normalize_value(kind, str(value)))
        if pair not in out:
            out.append(pair)
    return out


def normalize_value(kind: str, value: str) -> str:
    """Phones and emails arrive in many spellings; de-duplicating people by
    phone (SMS campaigns) only works if "+86 138-0000-0000" == "13800000000"."""
    value = value.strip()
    if kind == "phone":
        digits = "".join(ch for ch in value if ch.isdigit() or ch == "+")
        if digits.startswith("+86"):
            digits = digits[3:]
        elif digits.startswith("0086"):
            digits = digits[4:]
        return digits
    if kind == "email":
        return value.lower()
    return value


def canonical_user_id(session: Session, user_id: str) -> str | None:
    """The live user an id stands for (following merges), or None if unknown."""
    current = user_id
    for _ in range(MAX_MERGE_CHAIN):
        merged_into = session.execute(_MERGED_INTO, {"uid": current}).first()
        if merged_into is None:
            return None
        if merged_into[0] is None:
            return current
        current = merged_into[0]
    raise IdentityError(f"merge chain too long from {user_id}")


def get_user(session: Session, user_id: str) -> User | None:
    canonical = canonical_user_id(session, user_id)
    return session.get(User, canonical) if canonical else None


def ensure_user(session: Session, user_id: str, *, now: datetime | None = None) -> str:
    """The canonical id for ``user_id``, creating the user under exactly that id
    when unknown (the API may start a journey for an id from another system)."""
    canonical = canonical_user_id(session, user_id)
    if canonical is not None:
        return canonical
    _insert_user(session, user_id, utc(now) if now else utcnow())
    return user_id


def _insert_user(session: Session, user_id: str, stamp: datetime) -> None:
    session.execute(_INSERT_USER, {"id": user_id, "created_at": stamp, "updated_at": stamp, "attributes": {}})


def lookup(session: Session, kind: str, value: str) -> str | None:
    """The canonical user for one identifier, without creating anything."""
    row = session.execute(_OWNER, {"kind": kind, "value": normalize_value(kind, value)}).first()
    return canonical_user_id(session, row[0]) if row else None


def resolve(session: Session, kind: str, value: str, *, now: datetime | None = None) -> str:
    """The user for one identifier, created with that identifier when unknown."""
    return identify(session, [(kind, value)], now=now)


def identify(
    session: Session,
    identifiers: Mapping[str, str | None] | Iterable[Identifier],
    *,
    user_id: str | None = None,
    now: datetime | None = None,
) -> str:
    """Resolve and link identifiers (and optionally a known user id) to one user.

    Unknown identifiers are attached to the resolved user; identifiers of other
    users cause merges. With nothing known, a new user is created. Returns the
    surviving user's id.
    """
    pairs = normalize_identifiers(identifiers)
    if not pairs and user_id is None:
        raise IdentityError("identify needs at least one identifier or a user id")
    stamp = utc(now) if now else utcnow()

    owners: list[str] = []
    if user_id is not None:
        owners.append(ensure_user(session, user_id, now=stamp))
    unknown: list[Identifier] = []
    for kind, value in pairs:
        owner = lookup(session, kind, value)
        if owner is None:
            unknown.append((kind, value))
        elif owner not in owners:
            owners.append(owner)

    if not owners:
        survivor = new_user_id()
        _insert_user(session, survivor, stamp)
    else:
        survivor = owners[0]
        for other in owners[1:]:
            survivor = merge_users(session, survivor, other, now=stamp)

    if unknown:
        session.execute(
            _INSERT_IDENTITY,
            [{"kind": k, "value": v, "user_id": survivor, "created_at": stamp} for k, v in unknown],
        )
    return survivor


def identities_of(session: Session, user_id: str) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for kind, value in session.execute(_IDENTITIES_OF, {"uid": user_id}):
        out.setdefault(kind, []).append(value)
    return out


def set_attributes(
    session: Session, user_id: str, attributes: Mapping[str, Any], *, now: datetime | None = None
) -> None:
    """Merge profile attributes into the user; ``timezone`` also goes to its
    own column (quiet hours and local-time waits read it)."""
    user = get_user(session, user_id)
    if user is None:
        raise IdentityError(f"unknown user {user_id}")
    merged = dict(user.attributes or {})
    merged.update(attributes)
    user.attributes = merged
    if "timezone" in attributes:
        user.timezone = str(attributes["timezone"]) if attributes["timezone"] else None
    user.updated_at = utc(now) if now else utcnow()


def merge_users(session: Session, a: str, b: str, *, now: datetime | None = None) -> str:
    """Merge two users; the older one survives. Returns the survivor's id.

    Runs: a journey both were in keeps one live run, the other ends as
    ``merged`` (``engine.merges``, signalled through ``engine.run_signals``).

    Conflicts: the survivor's attribute values win, tags are unioned (earliest
    ``added_at`` kept), an opt-out on either side stays an opt-out (consent is
    never widened by a merge). Derived tags are not recomputed here (callers
    that know the rules do it: ``engine.events.link_identities``). Ledgers (events, runs, deliveries, grants, cap
    counters, steps, tag history) are re-pointed, so nothing is lost and caps
    keep counting the messages the other id already received.
    """
    ua, ub = get_user(session, a), get_user(session, b)
    if ua is None or ub is None:
        raise IdentityError(f"cannot merge unknown user {a if ua is None else b}")
    if ua.id == ub.id:
        return ua.id
    survivor, loser = sorted((ua, ub), key=lambda u: (u.created_at, u.id))
    stamp = utc(now) if now else utcnow()
    moved: dict[str, int] = {}

    def repoint(model: Any, name: str) -> None:
        result = session.execute(update(model).where(model.user_id == loser.id).values(user_id=survivor.id))
        moved[name] = result.rowcount or 0

    repoint(Identity, "identities")
    repoint(Event, "events")
    repoint(TagHistory, "tag_history")
    _release_shared_triggers(session, survivor.id, loser.id)
    repoint(Run, "runs")
    repoint(Delivery, "deliveries")
    repoint(CouponGrant, "coupon_grants")
    repoint(CapUsage, "cap_usage")
    repoint(StepRecord, "step_records")
    moved["runs_ended"] = len(merges.end_duplicate_runs(session, survivor.id, merged_from=loser.id, now=stamp))

    survivor_tags = {t.tag: t for t in session.scalars(select(Tag).where(Tag.user_id == survivor.id))}
    loser_tags = list(session.scalars(select(Tag).where(Tag.user_id == loser.id)))
    gained: list[str] = []
    for tag in loser_tags:
        kept = survivor_tags.get(tag.tag)
        if kept is None:
            tag.user_id = survivor.id
            gained.append(tag.tag)
        else:
            kept.added_at = min(kept.added_at, tag.added_at)
            session.delete(tag)
    moved["tags"] = len(loser_tags)
    # the survivor's runs hear of the tags the merge gave them (exit rules)
    run_signals.queue_tags(session, survivor.id, added=gained, source="merge", now=stamp)

    survivor_consent = {c.channel: c for c in session.scalars(select(Consent).where(Consent.user_id == survivor.id))}
    for consent in list(session.scalars(select(Consent).where(Consent.user_id == loser.id))):
        kept = survivor_consent.get(consent.channel)
        if kept is None:
            consent.user_id = survivor.id
        else:
            if consent.opted_out and not kept.opted_out:  # the opt-out wins, with whose it was
                kept.opted_out, kept.source, kept.updated_at = True, consent.source, consent.updated_at
            session.delete(consent)

    # one relation per staff member: the newer word on it holds
    survivor_follows = {
        (f.channel, f.via): f
        for f in session.scalars(select(ContactFollow).where(ContactFollow.user_id == survivor.id))
    }
    for follow in list(session.scalars(select(ContactFollow).where(ContactFollow.user_id == loser.id))):
        kept = survivor_follows.get((follow.channel, follow.via))
        if kept is None:
            follow.user_id = survivor.id
            continue
        if utc(follow.changed_at) > utc(kept.changed_at):
            kept.following, kept.changed_at = follow.following, follow.changed_at
        session.delete(follow)
    session.flush()
    # a vendor's opt-out follows the merged relations (a user's own choice stays)
    from engine.consent import settle_relations

    followed = select(ContactFollow.channel).where(ContactFollow.user_id == survivor.id).distinct()
    for channel in sorted(session.scalars(followed)):
        settle_relations(session, survivor.id, channel, at=stamp)

    attrs = dict(loser.attributes or {})
    attrs.update(survivor.attributes or {})
    survivor.attributes = attrs
    survivor.timezone = survivor.timezone or loser.timezone
    # The survivor now holds both users' events: the spans of the union.
    survivor.first_event_at = _end(min, survivor.first_event_at, loser.first_event_at)
    survivor.last_event_at = _end(max, survivor.last_event_at, loser.last_event_at)
    if survivor.payment_events == loser.payment_events:  # taken with the same payment names
        survivor.last_payment_at = _end(max, survivor.last_payment_at, loser.last_payment_at)
    else:  # not comparable: not kept until retaken (the survivor's next event)
        survivor.last_payment_at, survivor.payment_events = None, None
    survivor.updated_at = stamp
    loser.merged_into = survivor.id
    loser.merged_at = stamp
    loser.updated_at = stamp
    session.execute(update(User).where(User.merged_into == loser.id).values(merged_into=survivor.id))
    session.add(UserMerge(loser_id=loser.id, survivor_id=survivor.id, at=stamp, detail=moved))
    session.flush()
    return survivor.id


def _end(pick: Callable[..., datetime], *times: datetime | None) -> datetime | None:
    present = [utc(at) for at in times if at is not None]
    return pick(present) if present else None


def _release_shared_triggers(session: Session, survivor: str, loser: str) -> None:
    """Both users entered a journey on the same trigger (an audience
    broadcast's marker is one id for everyone it entered): one entry per
    (journey, user, trigger) is the rule, so the survivor's entry keeps the
    id and the loser's run keeps its history (``trigger_event`` still says
    what started it) without it. Otherwise the merge could never happen."""
    theirs = aliased(Run)
    shared = exists().where(
        theirs.user_id == survivor,
        theirs.journey_id == Run.journey_id,
        theirs.trigger_event_id == Run.trigger_event_id,
    )
    session.execute(
        update(Run)
        .where(Run.user_id == loser, Run.trigger_event_id.is_not(None), shared)
        .values(trigger_event_id=None)
        .execution_options(synchronize_session=False)
    )
