"""Ingesting what users did, and linking identifiers, at the store level.

``ingest_event`` is what the API's event endpoint calls before signalling the
user's runs: it stores the event exactly once (the sender's message id is the
primary key, so a redelivered webhook is a no-op), lands it on the right person
whatever identifier it carries (merging users when the identifiers say they are
one), and refreshes the derived stage / RFM tags.

With ``dispatch=True`` (the API's ingest) the event is stored as not yet
dispatched: the caller delivers it to Temporal and then calls
``mark_dispatched``. An event left undispatched (the process died in between,
or Temporal was unreachable) is delivered again when the same message is sent
again, and by the sweep over ``undispatched``; runs de-duplicate events by id
and ``engine.runs.begin`` enters a journey once per event, so delivering twice
is harmless while never delivering would lose the event.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import and_, bindparam, insert, or_, select, update
from sqlalchemy.orm import Session

from engine import identity, run_signals
from engine.derived import refresh_user
from engine.settings import DerivedRules
from engine.store import Store
from engine.store.models import Event
from engine.store.types import utc, utcnow

Identifiers = Mapping[str, str | None] | Iterable[tuple[str, str]]

_EVENTS = Event.__table__
_STORED = select(_EVENTS.c.user_id, _EVENTS.c.dispatched_at).where(_EVENTS.c.id == bindparam("id"))
_INSERT_EVENT = insert(_EVENTS)


@dataclass(frozen=True)
class IngestResult:
    user_id: str
    new: bool  # False when this event id was already stored
    event_id: str
    stage: str | None = None
    rfm: str | None = None
    dispatched: bool = True  # False: still to be delivered to Temporal
    signals: bool = False  # the store change queued run signals (a merge, derived tags): send them


@dataclass(frozen=True)
class PendingEvent:
    """A stored event not yet delivered to Temporal, on its current owner."""

    id: str
    user_id: str
    name: str
    properties: dict[str, Any]
    occurred_at: datetime
    received_at: datetime | None = None  # where the sweep's next page starts


def ingest_event(
    store: Store,
    *,
    event_id: str,
    name: str,
    identifiers: Identifiers = (),
    user_id: str | None = None,
    properties: Mapping[str, Any] | None = None,
    occurred_at: datetime | None = None,
    attributes: Mapping[str, Any] | None = None,
    rules: DerivedRules | None = None,
    now: datetime | None = None,
    dispatch: bool = False,
) -> IngestResult:
    """Store one event idempotently and return whose it is.

    ``identifiers`` (e.g. ``{"openid": "o1", "phone": "138..."}``) and/or a known
    ``user_id`` say who did it; ``attributes`` are profile updates carried along
    (``timezone``, ``city``…). ``now`` is the time the derived stage is computed
    at (defaults to the wall clock, or ``occurred_at`` when that is later).
    """
    rules = rules or DerivedRules()
    received = utcnow()
    occurred = utc(occurred_at) if occurred_at else received
    at = utc(now) if now else max(received, occurred)

    def work(s: Session) -> IngestResult:
        existing = s.execute(_STORED, {"id": event_id}).first()
        if existing is not None:
            owner = identity.canonical_user_id(s, existing.user_id) or existing.user_id
            return IngestResult(
                user_id=owner, new=False, event_id=event_id, dispatched=existing.dispatched_at is not None
            )
        uid = identity.identify(s, identifiers, user_id=user_id, now=occurred)
        if attributes:
            identity.set_attributes(s, uid, attributes, now=at)
            s.flush()
        s.execute(
            _INSERT_EVENT,
            {
                "id": event_id,
                "user_id": uid,
                "name": name,
                "properties": dict(properties or {}),
                "occurred_at": occurred,
                "received_at": received,
                "dispatched_at": None if dispatch else received,
            },
        )
        derived = refresh_user(s, uid, now=at, rules=rules)
        return IngestResult(
            user_id=uid,
            new=True,
            event_id=event_id,
            stage=derived.stage if derived else None,
            rfm=derived.rfm if derived else None,
            dispatched=not dispatch,
            signals=bool(s.info.get(run_signals.QUEUED)),
        )

    return store.transact(work)


_MARK = (
    update(_EVENTS)
    .where(_EVENTS.c.id == bindparam("event_id"), _EVENTS.c.dispatched_at.is_(None))
    .values(dispatched_at=bindparam("at"), outcome=bindparam("what"))
)


def mark_dispatched(
    store: Store,
    event_ids: Iterable[str],
    now: datetime | None = None,
    outcomes: Mapping[str, dict[str, Any]] | None = None,
) -> None:
    """These events reached every run and journey they concern (one
    statement for a batch: the API marks in batches, off the request path);
    ``outcomes`` keeps what dispatch did with each (the runs signalled and
    started, for the timeline)."""
    ids = list(event_ids)
    if not ids:
        return
    at = utc(now) if now else utcnow()
    store.transact(lambda s: mark_dispatched_in(s, ids, at, outcomes))


def mark_dispatched_in(
    session: Session, event_ids: Iterable[str], at: datetime, outcomes: Mapping[str, dict[str, Any]] | None = None
) -> None:
    """``mark_dispatched`` inside the caller's write transaction (the
    dispatcher writes its events' and its run signals' marks in one)."""
    found = outcomes or {}
    rows = [{"event_id": i, "at": utc(at), "what": found.get(i)} for i in event_ids]
    if rows:
        session.execute(_MARK, rows)


def undispatched(
    store: Store, *, received_before: datetime, limit: int = 100, after: tuple[datetime, str] | None = None
) -> list[PendingEvent]:
    """Events still to be delivered, oldest first (by receipt, then id), each
    on its user's current (merged) id. ``after`` is the last (received_at,
    id) of the previous page: the sweep drains a backlog page by page
    without reading again the rows of a page it could not deliver."""
    q = select(Event).where(Event.dispatched_at.is_(None), Event.received_at < utc(received_before))
    if after is not None:
        at, event_id = utc(after[0]), after[1]
        q = q.where(or_(Event.received_at > at, and_(Event.received_at == at, Event.id > event_id)))
    with store.read() as s:
        rows = s.scalars(q.order_by(Event.received_at, Event.id).limit(limit)).all()
        canonical: dict[str, str] = {}
        for row in rows:  # one merge lookup per user, not per row
            if row.user_id not in canonical:
                canonical[row.user_id] = identity.canonical_user_id(s, row.user_id) or row.user_id
        return [
            PendingEvent(
                id=row.id,
                user_id=canonical[row.user_id],
                name=row.name,
                properties=dict(row.properties or {}),
                occurred_at=row.occurred_at,
                received_at=row.received_at,
            )
            for row in rows
        ]


def link_identities(
    store: Store,
    identifiers: Identifiers,
    *,
    user_id: str | None = None,
    attributes: Mapping[str, Any] | None = None,
    rules: DerivedRules | None = None,
    now: datetime | None = None,
) -> str:
    """Say that these identifiers (and ``user_id``, if given) are one person:
    resolve, create or merge, optionally set profile attributes. Returns the
    surviving user id."""
    rules = rules or DerivedRules()
    at = utc(now) if now else utcnow()

    def work(s: Session) -> str:
        uid = identity.identify(s, identifiers, user_id=user_id, now=at)
        if attributes:
            identity.set_attributes(s, uid, attributes, now=at)
        refresh_user(s, uid, now=at, rules=rules)
        return uid

    return store.transact(work)


def resolve_users(
    store: Store,
    user_ids: Iterable[str],
    identifiers: Iterable[tuple[str, str]],
    *,
    rules: DerivedRules | None = None,
) -> list[str]:
    """Canonical user ids for these ids and identifiers, in order without
    repeats, creating users not seen yet (a caller may name an id from
    another system)."""
    out = [store.transact(lambda s, uid=uid: identity.ensure_user(s, uid)) for uid in user_ids]
    out += [link_identities(store, [pair], rules=rules) for pair in identifiers]
    return list(dict.fromkeys(out))
