"""Read-side queries for the operator's views: numbers on every node, variants
side by side, one user's timeline.

Counts are of distinct runs, so a node visited twice by a looping run counts
that run once per outcome; deliveries count messages by final status.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, TypeVar

from sqlalchemy import and_, distinct, func, select
from sqlalchemy.orm import Session

from engine.identity import canonical_user_id
from engine.store import Store
from engine.store.models import CouponGrant, Delivery, Event, Run, StepRecord

T = TypeVar("T")

PASS_OUTCOMES = ("passed",)


@dataclass
class NodeStats:
    node_id: str
    entered: int = 0  # distinct runs that reached the node
    passed: int = 0
    waiting: int = 0
    sent: int = 0
    pending: int = 0
    suppressed: int = 0
    failed: int = 0
    outcomes: dict[str, int] = field(default_factory=dict)  # outcome -> distinct runs


@dataclass(frozen=True)
class VariantStats:
    variant: str | None
    entered: int
    converted: int

    @property
    def conversion_rate(self) -> float:
        return self.converted / self.entered if self.entered else 0.0


@dataclass(frozen=True)
class JourneySummary:
    entered: int
    active: int
    refused: int
    converted: int
    outcomes: dict[str, int]


@dataclass(frozen=True)
class TimelineItem:
    at: datetime
    kind: str  # "step", "delivery", "coupon"
    journey_id: str | None
    node_id: str | None
    summary: str
    detail: dict[str, Any]


def node_counts(store: Store, journey_id: str, version: int | None = None) -> dict[str, NodeStats]:
    with store.read() as s:
        out: dict[str, NodeStats] = {}

        def node(node_id: str) -> NodeStats:
            return out.setdefault(node_id, NodeStats(node_id=node_id))

        q = select(StepRecord.node_id, StepRecord.outcome, func.count(distinct(StepRecord.run_key))).where(
            StepRecord.journey_id == journey_id
        )
        entered_q = select(StepRecord.node_id, func.count(distinct(StepRecord.run_key))).where(
            StepRecord.journey_id == journey_id
        )
        dq = select(Delivery.node_id, Delivery.status, func.count()).where(Delivery.journey_id == journey_id)
        if version is not None:
            q = q.where(StepRecord.version == version)
            entered_q = entered_q.where(StepRecord.version == version)
            dq = dq.where(Delivery.version == version)
        for node_id, outcome, n in s.execute(q.group_by(StepRecord.node_id, StepRecord.outcome)):
            stats = node(node_id)
            stats.outcomes[outcome] = int(n)
            if outcome in PASS_OUTCOMES:
                stats.passed += int(n)
            elif outcome == "waiting":
                stats.waiting += int(n)
        for node_id, n in s.execute(entered_q.group_by(StepRecord.node_id)):
            node(node_id).entered = int(n)
        for node_id, status, n in s.execute(dq.group_by(Delivery.node_id, Delivery.status)):
            if node_id is None:
                continue
            stats = node(node_id)
            if status in ("sent", "pending", "suppressed", "failed"):
                setattr(stats, status, getattr(stats, status) + int(n))
        return out


def variant_counts(store: Store, journey_id: str, version: int | None = None) -> list[VariantStats]:
    """Admitted runs and conversions (goal reached) per split variant."""
    with store.read() as s:
        q = select(Run.variant, func.count(), func.count(Run.converted_at)).where(
            Run.journey_id == journey_id, Run.admitted.is_(True)
        )
        if version is not None:
            q = q.where(Run.version == version)
        rows = s.execute(q.group_by(Run.variant)).all()
        return sorted(
            (VariantStats(v, int(n), int(c)) for v, n, c in rows),
            key=lambda v: (v.variant is None, v.variant or ""),
        )


def events_after_entry(store: Store, journey_id: str, event: str, version: int | None = None) -> dict[str | None, int]:
    """Per split variant: how many ``event`` events the entered users did at
    or after entering (each event once per variant). Divided by the entries
    it is a referral campaign's "new users won / users reached" (``event`` =
    ``friend_joined``) or a package card's orders per recalled buyer."""
    with store.read() as s:
        after_entry = and_(Event.user_id == Run.user_id, Event.name == event, Event.occurred_at >= Run.entered_at)
        q = (
            select(Run.variant, func.count(distinct(Event.id)))
            .join(Event, after_entry)
            .where(Run.journey_id == journey_id, Run.admitted.is_(True))
        )
        if version is not None:
            q = q.where(Run.version == version)
        return {variant: int(n) for variant, n in s.execute(q.group_by(Run.variant))}


def journey_summary(store: Store, journey_id: str, version: int | None = None) -> JourneySummary:
    with store.read() as s:
        q = select(Run.admitted, Run.outcome, Run.ended_at.is_(None), func.count(), func.count(Run.converted_at)).where(
            Run.journey_id == journey_id
        )
        if version is not None:
            q = q.where(Run.version == version)
        entered = active = refused = converted = 0
        outcomes: dict[str, int] = {}
        for admitted, outcome, open_, n, conv in s.execute(
            q.group_by(Run.admitted, Run.outcome, Run.ended_at.is_(None))
        ):
            if not admitted:
                refused += int(n)
                continue
            entered += int(n)
            converted += int(conv)
            if open_:
                active += int(n)
            elif outcome:
                outcomes[outcome] = outcomes.get(outcome, 0) + int(n)
        return JourneySummary(entered, active, refused, converted, outcomes)


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


Window = tuple[datetime | None, datetime | None]  # (since, until), both inclusive


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
    """Steps, deliveries and coupons of one user at or before ``until``: the
    newest ``limit``, oldest first, and the ``until`` of the older page."""
    order = {"step": 0, "coupon": 1, "delivery": 2}

    def newest_first(s: Session, uid: str, limit: int | None, window: Window) -> list[TimelineItem]:
        items = _steps(s, uid, journey_id, limit, window) + _deliveries(s, uid, journey_id, limit, window)
        items += _grants(s, uid, journey_id, limit, window)
        return sorted(items, key=lambda i: (i.at, order.get(i.kind, 3)), reverse=True)

    with store.read() as s:
        uid = canonical_user_id(s, user_id) or user_id
        page, older, crowded = newest_page(newest_first(s, uid, limit + 1, (None, until)), limit, lambda i: i.at)
        if crowded is not None:
            page = newest_first(s, uid, None, (crowded, crowded))
    return page[::-1], older


def user_timeline(store: Store, user_id: str, *, journey_id: str | None = None, limit: int = 200) -> list[TimelineItem]:
    """The newest page of ``user_timeline_page``, oldest first."""
    return user_timeline_page(store, user_id, journey_id=journey_id, limit=limit)[0]


def _steps(s: Session, uid: str, journey_id: str | None, limit: int | None, window: Window) -> list[TimelineItem]:
    q = select(StepRecord).where(StepRecord.user_id == uid)
    if journey_id:
        q = q.where(StepRecord.journey_id == journey_id)
    q = within(q, StepRecord.at, window)
    rows = s.scalars(q.order_by(StepRecord.at.desc()).limit(limit))
    return [
        TimelineItem(
            r.at,
            "step",
            r.journey_id,
            r.node_id,
            f"{r.kind}: {r.outcome}",
            {"run_key": r.run_key, "variant": r.variant, **(r.detail or {})},
        )
        for r in rows
    ]


def _deliveries(s: Session, uid: str, journey_id: str | None, limit: int | None, window: Window) -> list[TimelineItem]:
    q = select(Delivery).where(Delivery.user_id == uid)
    if journey_id:
        q = q.where(Delivery.journey_id == journey_id)
    q = within(q, Delivery.at, window)
    rows = s.scalars(q.order_by(Delivery.at.desc()).limit(limit))
    return [
        TimelineItem(
            r.at,
            "delivery",
            r.journey_id,
            r.node_id,
            f"{r.channel or '-'} {r.template}: {r.status}" + (f" ({r.reason})" if r.reason else ""),
            {"run_key": r.run_key, "status": r.status, "reason": r.reason, "channel": r.channel, "id": r.id},
        )
        for r in rows
    ]


def _grants(s: Session, uid: str, journey_id: str | None, limit: int | None, window: Window) -> list[TimelineItem]:
    q = select(CouponGrant).where(CouponGrant.user_id == uid)
    if journey_id:
        q = q.where(CouponGrant.journey_id == journey_id)
    q = within(q, CouponGrant.issued_at, window)
    rows = s.scalars(q.order_by(CouponGrant.issued_at.desc()).limit(limit))
    return [
        TimelineItem(
            r.issued_at,
            "coupon",
            r.journey_id,
            r.node_id,
            f"coupon {r.pool}: {r.code}",
            {"run_key": r.run_key, "pool": r.pool, "code": r.code},
        )
        for r in rows
    ]
