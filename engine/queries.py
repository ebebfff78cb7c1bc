"""Read-side helpers the API needs that the business modules do not offer.

Kept apart from ``engine.stats`` / ``engine.identity`` so those stay focused
on what the workflow uses; everything here is a plain read over the store
(no writes), safe to call from any thread.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, func, select
from sqlalchemy.orm import Session

from contracts.activities import EventCountQuery, UserSnapshot, UserSnapshotRequest
from engine import identity
from engine.activities import JourneyActivities
from engine.catalog import JourneyInfo
from engine.coupons import PoolInfo, _pool_info
from engine.settings import Settings
from engine.store import Store
from engine.store.models import Consent, CouponPool, Delivery, Run, Tag, User
from engine.store.models import Journey as JourneyRow
from engine.timeline import newest_page


@dataclass(frozen=True)
class TagInfo:
    tag: str
    source: str
    added_at: datetime


@dataclass(frozen=True)
class ConsentInfo:
    channel: str
    opted_out: bool
    source: str | None
    updated_at: datetime


@dataclass
class UserProfile:
    id: str
    created_at: datetime
    updated_at: datetime
    attributes: dict[str, Any]
    timezone: str | None
    stage: str | None
    rfm: str | None
    identities: dict[str, list[str]] = field(default_factory=dict)
    tags: list[TagInfo] = field(default_factory=list)
    consents: list[ConsentInfo] = field(default_factory=list)
    merged_ids: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class RunInfo:
    run_key: str
    workflow_id: str
    journey_id: str
    version: int
    user_id: str
    admitted: bool
    reason: str | None
    entered_at: datetime
    ended_at: datetime | None
    outcome: str | None
    end_reason: str | None
    variant: str | None
    converted_at: datetime | None


def workflow_id_of(run_key: str) -> str:
    """A run key is ``<workflow id>:<first run id>`` (see the interpreter's
    ``_begin``); the workflow id survives user merges, so signals use it."""
    return run_key.rsplit(":", 1)[0]


def canonical(store: Store, user_id: str) -> str | None:
    with store.read() as s:
        return identity.canonical_user_id(s, user_id)


def user_profile(store: Store, user_id: str) -> UserProfile | None:
    """Everything an operator sees on a user's page, or None if unknown."""
    with store.read() as s:
        uid = identity.canonical_user_id(s, user_id)
        user = s.get(User, uid) if uid else None
        if user is None:
            return None
        tags = [
            TagInfo(t.tag, t.source, t.added_at)
            for t in s.scalars(select(Tag).where(Tag.user_id == user.id).order_by(Tag.tag))
        ]
        consents = [
            ConsentInfo(c.channel, c.opted_out, c.source, c.updated_at)
            for c in s.scalars(select(Consent).where(Consent.user_id == user.id).order_by(Consent.channel))
        ]
        merged = list(s.scalars(select(User.id).where(User.merged_into == user.id).order_by(User.id)))
        return UserProfile(
            id=user.id,
            created_at=user.created_at,
            updated_at=user.updated_at,
            attributes=dict(user.attributes or {}),
            timezone=user.timezone,
            stage=user.stage,
            rfm=user.rfm,
            identities=identity.identities_of(s, user.id),
            tags=tags,
            consents=consents,
            merged_ids=merged,
        )


def lookup(store: Store, kind: str, value: str) -> str | None:
    with store.read() as s:
        return identity.lookup(s, kind, value)


def _run(r: Run) -> RunInfo:
    return RunInfo(
        run_key=r.run_key,
        workflow_id=workflow_id_of(r.run_key),
        journey_id=r.journey_id,
        version=r.version,
        user_id=r.user_id,
        admitted=r.admitted,
        reason=r.reason,
        entered_at=r.entered_at,
        ended_at=r.ended_at,
        outcome=r.outcome,
        end_reason=r.end_reason,
        variant=r.variant,
        converted_at=r.converted_at,
    )


def user_runs(store: Store, user_id: str, *, limit: int = 200) -> list[RunInfo]:
    """A user's newest runs, newest first (refused entries included, with the reason)."""
    return user_runs_page(store, user_id, limit=limit)[0]


def user_runs_page(
    store: Store, user_id: str, *, limit: int = 200, until: datetime | None = None
) -> tuple[list[RunInfo], datetime | None]:
    """The user's newest ``limit`` runs entered at or before ``until``, newest
    first, and the ``until`` of the older page (None when there is none):
    paged as the timeline is (``engine.timeline.newest_page``: runs entered at
    one instant are never split), so a user with 10k runs is read a page at a
    time."""
    with store.read() as s:
        uid = identity.canonical_user_id(s, user_id) or user_id
        q = select(Run).where(Run.user_id == uid)
        if until is not None:
            q = q.where(Run.entered_at <= until)
        rows = list(s.scalars(q.order_by(Run.entered_at.desc(), Run.id.desc()).limit(limit + 1)))
        page, older, crowded = newest_page(rows, limit, lambda r: r.entered_at)
        if crowded is not None:  # more than a page entered at one instant: all of it
            page = list(
                s.scalars(select(Run).where(Run.user_id == uid, Run.entered_at == crowded).order_by(Run.id.desc()))
            )
        return [_run(r) for r in page], older


def open_runs(store: Store, user_id: str, journey_id: str | None = None) -> list[RunInfo]:
    """Admitted runs not ended yet: the ones an event must be delivered to."""
    with store.read() as s:
        return open_runs_in(s, user_id, journey_id)


def open_runs_in(session: Session, user_id: str, journey_id: str | None = None) -> list[RunInfo]:
    """``open_runs`` inside a session the caller holds, so dispatch reads the
    runs and the user's queued run signals in one read transaction."""
    stmt = _OPEN_RUNS if journey_id is None else _OPEN_RUNS_IN
    return [_run(r) for r in session.execute(stmt, {"uid": user_id, "journey_id": journey_id})]


# Every ingested event asks for the user's open runs: built once, in Core.
_RUNS = Run.__table__
_OPEN_RUNS = (
    select(_RUNS)
    .where(_RUNS.c.user_id == bindparam("uid"), _RUNS.c.admitted.is_(True), _RUNS.c.ended_at.is_(None))
    .order_by(_RUNS.c.id)
)
_OPEN_RUNS_IN = _OPEN_RUNS.where(_RUNS.c.journey_id == bindparam("journey_id"))


def count_open_runs(store: Store, journey_id: str) -> int:
    with store.read() as s:
        return int(
            s.execute(
                select(func.count())
                .select_from(Run)
                .where(Run.journey_id == journey_id, Run.admitted.is_(True), Run.ended_at.is_(None))
            ).scalar_one()
        )


def list_pools(store: Store) -> list[PoolInfo]:
    with store.read() as s:
        return [_pool_info(r) for r in s.scalars(select(CouponPool).order_by(CouponPool.name))]


def delivery_totals(store: Store) -> dict[tuple[str, str], int]:
    """(channel, status) -> deliveries, for the metrics scrape."""
    with store.read() as s:
        rows = s.execute(
            select(Delivery.channel, Delivery.status, func.count()).group_by(Delivery.channel, Delivery.status)
        )
        return {(channel or "none", status): int(n) for channel, status, n in rows}


def delivery_times(
    store: Store, journey_id: str, since: datetime, until: datetime, version: int | None = None
) -> list[tuple[datetime, str]]:
    """(time, status) of the journey's deliveries in a window, for time buckets."""
    with store.read() as s:
        q = select(Delivery.at, Delivery.status).where(
            Delivery.journey_id == journey_id, Delivery.at >= since, Delivery.at < until
        )
        if version is not None:
            q = q.where(Delivery.version == version)
        return [(at, status) for at, status in s.execute(q)]


def run_times(
    store: Store, journey_id: str, since: datetime, until: datetime, version: int | None = None
) -> tuple[list[datetime], list[datetime]]:
    """Entry times and conversion times of admitted runs in a window."""
    with store.read() as s:
        base = select(Run.entered_at, Run.converted_at).where(Run.journey_id == journey_id, Run.admitted.is_(True))
        if version is not None:
            base = base.where(Run.version == version)
        entered: list[datetime] = []
        converted: list[datetime] = []
        q_entered = base.where(Run.entered_at >= since, Run.entered_at < until)
        for at, _ in s.execute(q_entered):
            entered.append(at)
        q_conv = base.where(Run.converted_at.is_not(None), Run.converted_at >= since, Run.converted_at < until)
        for _, conv in s.execute(q_conv):
            converted.append(conv)
        return entered, converted


def user_snapshot(
    store: Store, settings: Settings, user_id: str, now: datetime, event_counts: list[EventCountQuery] | None = None
) -> UserSnapshot:
    """The same snapshot the workflow's conditions see, for evaluating an
    event entry's ``where`` before starting a run."""
    activities = JourneyActivities(store, {}, settings)
    return activities._snapshot(UserSnapshotRequest(user_id=user_id, now=now, event_counts=event_counts or []))


def get_journey(store: Store, journey_id: str) -> JourneyInfo | None:
    with store.read() as s:
        row = s.get(JourneyRow, journey_id)
        return JourneyInfo(row.id, row.name, row.status, row.current_version) if row else None
