"""One user's timeline: every event the user sent (with what became of it in
each run: ``engine.event_outcomes``), step, send (with its status and
reason, and its attempts and last error while it is retried) and coupon, a
page at a time. The API's ``/v1/users/{id}/timeline`` and the
console's user page both read it here; the console adds node labels on top.

Order, decided here once: by time (an event by when it was received);
within one instant the events first, then (an activity writes several
records with one timestamp) a run's steps in the order they happened (their
``seq``), then that instant's sends (a send's ledger row
right after the step that made it), then its coupons; rows of one kind at
one instant by their row id. A page is the newest ``limit`` entries at or
before ``until``, oldest first, and an instant is never split between two
pages (``newest_page``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, TypeVar

from sqlalchemy import select
from sqlalchemy.orm import Session

from engine import event_outcomes
from engine.identity import canonical_user_id
from engine.store import Store
from engine.store.models import CouponGrant, Delivery, Event, StepRecord

T = TypeVar("T")

Window = tuple[datetime | None, datetime | None]  # (since, until), both inclusive

_AFTER_STEPS = 1 << 62  # sorts a delivery or coupon after every step seq of its instant
_BEFORE_STEPS = -1  # sorts an event before the steps of its instant


@dataclass(frozen=True)
class TimelineItem:
    at: datetime
    kind: str  # "event", "step", "delivery", "coupon"
    journey_id: str | None
    version: int | None  # the version the run was on (None for coupons: the ledger does not keep it)
    node_id: str | None
    summary: str
    status: str | None  # a step's outcome, a delivery's status
    reason: str | None  # why: a suppression's reason, a step's (e.g. a refused entry)
    detail: dict[str, Any]
    # (seq, kind: step 0 / delivery 1 / coupon 2 / event 3, row id) within an instant
    order: tuple[int, int, int] = (0, 0, 0)

    def sort_key(self) -> tuple[datetime, int, int, int]:
        return (self.at, *self.order)


def newest_page(
    rows: list[T], limit: int, at: Callable[[T], datetime]
) -> tuple[list[T], datetime | None, datetime | None]:
    """The first ``limit`` of ``rows`` (sorted newest first, each source read
    ``limit + 1`` deep), the inclusive ``until`` of the next page (None when
    nothing is left), and the instant to read whole (else None).

    An instant is never split between two pages (steps of one activity share
    their time): the page stops before it and the next one starts with it.
    An instant holding more than a page is shown whole on its own page; the
    caller reads all of it, since the sources were cut at ``limit + 1``."""
    if len(rows) <= limit:
        return rows, None, None
    boundary = at(rows[limit])
    page = [r for r in rows[:limit] if at(r) > boundary]
    if page:
        return page, boundary, None
    return [r for r in rows if at(r) == boundary], boundary - timedelta(microseconds=1), boundary


def within(q: Any, column: Any, window: Window) -> Any:
    """``q`` limited to rows whose ``column`` lies in ``window``."""
    since, until = window
    if since is not None:
        q = q.where(column >= since)
    if until is not None:
        q = q.where(column <= until)
    return q


def user_timeline_page(
    store: Store, user_id: str, *, journey_id: str | None = None, limit: int = 200, until: datetime | None = None
) -> tuple[list[TimelineItem], datetime | None]:
    """The newest ``limit`` entries of the user (of one journey if given) at
    or before ``until``, oldest first, and the ``until`` of the older page
    (None when there is none). A merged-away user id reads the survivor's."""

    def newest_first(s: Session, uid: str, limit: int | None, window: Window) -> list[TimelineItem]:
        items = _steps(s, uid, journey_id, limit, window) + _deliveries(s, uid, journey_id, limit, window)
        items += _grants(s, uid, journey_id, limit, window)
        if journey_id is None:  # an event belongs to the user, not to one journey
            items += _events(s, uid, limit, window)
        return sorted(items, key=TimelineItem.sort_key, reverse=True)

    with store.read() as s:
        uid = canonical_user_id(s, user_id) or user_id
        page, older, crowded = newest_page(newest_first(s, uid, limit + 1, (None, until)), limit, lambda i: i.at)
        if crowded is not None:
            page = newest_first(s, uid, None, (crowded, crowded))
    return page[::-1], older


def user_timeline(store: Store, user_id: str, *, journey_id: str | None = None, limit: int = 200) -> list[TimelineItem]:
    """The newest page of ``user_timeline_page``, oldest first."""
    return user_timeline_page(store, user_id, journey_id=journey_id, limit=limit)[0]


def _newest(
    s: Session, model: Any, at: Any, uid: str, journey_id: str | None, limit: int | None, window: Window
) -> list[Any]:
    """The user's newest rows of one ledger (steps, deliveries, coupons), as
    Core rows (same attribute names): a page reads ``limit + 1`` of each of
    four sources and keeps ``limit``, and building ORM objects for them was a
    quarter of a page's time (cProfile, ``bench/store_bench.py``)."""
    q = select(model.__table__).where(model.user_id == uid)
    if journey_id:
        q = q.where(model.journey_id == journey_id)
    q = within(q, at, window)
    return list(s.execute(q.order_by(at.desc(), model.id.desc()).limit(limit)))


def _steps(s: Session, uid: str, journey_id: str | None, limit: int | None, window: Window) -> list[TimelineItem]:
    out = []
    for r in _newest(s, StepRecord, StepRecord.at, uid, journey_id, limit, window):
        detail = {"run_key": r.run_key, "variant": r.variant, **(r.detail or {})}
        reason = (r.detail or {}).get("reason")
        why = str(reason) if reason else None
        summary = f"{r.kind}: {r.outcome}"
        order = (r.seq, 0, r.id)
        out.append(
            TimelineItem(r.at, "step", r.journey_id, r.version, r.node_id, summary, r.outcome, why, detail, order)
        )
    return out


def _deliveries(s: Session, uid: str, journey_id: str | None, limit: int | None, window: Window) -> list[TimelineItem]:
    out = []
    for r in _newest(s, Delivery, Delivery.at, uid, journey_id, limit, window):
        detail = {"run_key": r.run_key, "status": r.status, "reason": r.reason, "channel": r.channel, "id": r.id}
        detail.update(attempts=r.attempts, last_error=r.last_error)
        status, reason = r.status, r.reason
        if r.status == "reserved" and r.last_error:
            status, reason = "retrying", f"attempt {r.attempts} failed: {r.last_error}"
        summary = f"{r.channel or '-'} · {r.template}: {status}"
        if r.status != "reserved" and r.last_error and r.attempts > 1:
            summary += f" after {r.attempts} attempts"
        order = (_AFTER_STEPS, 1, 0)
        out.append(
            TimelineItem(r.at, "delivery", r.journey_id, r.version, r.node_id, summary, status, reason, detail, order)
        )
    return out


def _events(s: Session, uid: str, limit: int | None, window: Window) -> list[TimelineItem]:
    rows = list(
        s.execute(
            within(select(Event.__table__).where(Event.user_id == uid), Event.received_at, window)
            .order_by(Event.received_at.desc(), Event.id.desc())
            .limit(limit)
        )
    )
    became = event_outcomes.outcomes(s, uid, rows)
    out = []
    for r in rows:
        what = became[r.id]
        detail = {
            "event_id": r.id,
            "name": r.name,
            "properties": dict(r.properties or {}),
            "occurred_at": r.occurred_at.isoformat(),
            "runs": [run.shown() for run in what.runs],
        }
        summary = f"event {r.name}: {what.status}"
        order = (_BEFORE_STEPS, 3, 0)
        out.append(
            TimelineItem(r.received_at, "event", None, None, None, summary, what.status, what.reason, detail, order)
        )
    return out


def _grants(s: Session, uid: str, journey_id: str | None, limit: int | None, window: Window) -> list[TimelineItem]:
    out = []
    for r in _newest(s, CouponGrant, CouponGrant.issued_at, uid, journey_id, limit, window):
        detail = {"run_key": r.run_key, "pool": r.pool, "code": r.code}
        summary = f"coupon {r.pool}: {r.code}"
        order = (_AFTER_STEPS, 2, r.id)
        out.append(
            TimelineItem(r.issued_at, "coupon", r.journey_id, None, r.node_id, summary, None, None, detail, order)
        )
    return out
