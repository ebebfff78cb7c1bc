"""What the console's pages show, read from the store (and Temporal).

These are reads the ``/v1`` API has no single route for, and which a page
wants in one go when it is rendered: every journey with its live numbers,
the users waiting at one node, a search over every kind of identifier, a
user's timeline with each step in the operator's words. Everything here is a
plain blocking read; the routes call it in a thread.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session
from temporalio.client import Client

from api.catalog_cache import JourneyCache
from api.runs import quote
from contracts import search_attributes as sa
from dsl.ir import Journey
from dsl.render import END_ID, ENTRY_ID, build_diagram
from engine import catalog, queries, stats
from engine.identity import canonical_user_id, normalize_value
from engine.stats import Window, newest_page, within
from engine.store import Store
from engine.store.models import IDENTITY_KINDS, CouponGrant, Delivery, Identity, Run, StepRecord

log = logging.getLogger("journeys.console")

# The badges every node shows, in this order (``dsl.render`` draws them).
COUNT_KEYS = ("entered", "waiting", "sent", "suppressed")
PANEL_LIMIT = 50


@dataclass(frozen=True)
class JourneyRow:
    id: str
    name: str
    status: str
    version: int | None
    in_now: int
    entered: int
    converted: int

    @property
    def conversion_rate(self) -> float:
        return self.converted / self.entered if self.entered else 0.0


def journey_rows(store: Store, include_archived: bool = False) -> list[JourneyRow]:
    """Every journey with the two numbers an operator scans the list for:
    users in it now (open runs) and conversions."""
    rows = []
    for info in catalog.list_journeys(store):
        if info.status == "archived" and not include_archived:
            continue
        summary = stats.journey_summary(store, info.id)
        rows.append(
            JourneyRow(
                id=info.id,
                name=info.name,
                status=info.status,
                version=info.current_version,
                in_now=summary.active,
                entered=summary.entered,
                converted=summary.converted,
            )
        )
    return rows


def zero_counts(journey: Journey) -> dict[str, dict[str, int]]:
    """Zeros for every node, so the SVG has a count element per node and key
    that the page's polling fills in place."""
    return {n.id: dict.fromkeys(COUNT_KEYS, 0) for n in build_diagram(journey).nodes}


def node_labels(journey: Journey) -> dict[str, str]:
    """Node id → the diagram's wording (``send wecom "welcome"`` → 发送…)."""
    labels = {n.id: n.label for n in build_diagram(journey).nodes}
    labels.setdefault("entry", labels.get(ENTRY_ID, "Entry"))
    labels.setdefault("end", labels.get(END_ID, "End"))
    return labels


def stats_node_id(diagram_id: str) -> str:
    """The diagram's entry/end ids are ``__entry__``/``__end__``; the store's are
    ``entry``/``end``."""
    return {ENTRY_ID: "entry", END_ID: "end"}.get(diagram_id, diagram_id)


@dataclass(frozen=True)
class DeliveryRow:
    at: datetime
    user_id: str
    channel: str | None
    template: str | None
    status: str
    reason: str | None


@dataclass
class NodePanel:
    journey_id: str
    node_id: str
    label: str
    waiting_source: str  # "temporal" | "store"
    waiting: list[str] = field(default_factory=list)
    deliveries: list[DeliveryRow] = field(default_factory=list)
    outcomes: dict[str, int] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        return {
            "journey_id": self.journey_id,
            "node_id": self.node_id,
            "label": self.label,
            "waiting_source": self.waiting_source,
            "waiting": self.waiting,
            "deliveries": [
                {
                    "at": d.at.isoformat(),
                    "user_id": d.user_id,
                    "channel": d.channel,
                    "template": d.template,
                    "status": d.status,
                    "reason": d.reason,
                }
                for d in self.deliveries
            ],
            "outcomes": self.outcomes,
        }


async def waiting_users_temporal(
    client: Client, journey_id: str, node_id: str, limit: int = PANEL_LIMIT, version: int | None = None
) -> list[str]:
    """Who waits at the node right now, by Temporal visibility (the same
    search attributes the "waiting" counts come from); of one version if given."""
    query = f"JourneyId = {quote(journey_id)} AND ExecutionStatus = 'Running' AND JourneyStep = {quote(stats_node_id(node_id))}"
    if version is not None:
        query += f" AND JourneyVersion = {int(version)}"
    users: list[str] = []
    async for wf in client.list_workflows(query, limit=limit):
        user = wf.typed_search_attributes.get(sa.JOURNEY_USER)
        users.append(user or wf.id)
    return users


def waiting_users_store(
    store: Store, journey_id: str, node_id: str, limit: int = PANEL_LIMIT, version: int | None = None
) -> list[str]:
    """Fallback without Temporal: open runs whose latest step is this node."""
    wanted = stats_node_id(node_id)
    q = select(Run.run_key).where(Run.journey_id == journey_id, Run.admitted.is_(True), Run.ended_at.is_(None))
    if version is not None:
        q = q.where(Run.version == version)
    with store.read() as s:
        open_keys = list(s.scalars(q))
        users: list[str] = []
        for key in open_keys:
            last = s.scalars(
                select(StepRecord)
                .where(StepRecord.run_key == key)
                .order_by(StepRecord.seq.desc(), StepRecord.id.desc())
            ).first()
            if last is not None and last.node_id == wanted and last.outcome == "waiting":
                users.append(last.user_id)
            if len(users) >= limit:
                break
        return users


def node_deliveries(
    store: Store, journey_id: str, node_id: str, limit: int = PANEL_LIMIT, version: int | None = None
) -> list[DeliveryRow]:
    q = select(Delivery).where(Delivery.journey_id == journey_id, Delivery.node_id == stats_node_id(node_id))
    if version is not None:
        q = q.where(Delivery.version == version)
    with store.read() as s:
        rows = s.scalars(q.order_by(Delivery.at.desc(), Delivery.created_at.desc()).limit(limit))
        return [DeliveryRow(r.at, r.user_id, r.channel, r.template, r.status, r.reason) for r in rows]


def node_outcomes(store: Store, journey_id: str, node_id: str, version: int | None = None) -> dict[str, int]:
    counts = stats.node_counts(store, journey_id, version).get(stats_node_id(node_id))
    return dict(counts.outcomes) if counts else {}


# ---------------------------------------------------------------- users


@dataclass(frozen=True)
class UserMatch:
    user_id: str
    kind: str  # "id" or the identity kind that matched
    value: str


def find_users(store: Store, text: str, limit: int = 20) -> list[UserMatch]:
    """Users by their id or any identifier (phone, openid, member id…). The
    operator does not say which kind they typed, so try each kind with that
    kind's normalisation ("+86 138-0000-0000" finds the phone 13800000000)."""
    text = text.strip()
    if not text:
        return []
    out: dict[str, UserMatch] = {}
    with store.read() as s:
        uid = canonical_user_id(s, text)
        if uid is not None:
            out[uid] = UserMatch(uid, "id", text)
        candidates = {(kind, normalize_value(kind, text)) for kind in IDENTITY_KINDS}
        values = {v for _, v in candidates if v}
        if values:
            rows = s.execute(select(Identity.kind, Identity.value, Identity.user_id).where(Identity.value.in_(values)))
            for kind, value, user_id in rows:
                if (kind, value) not in candidates:
                    continue
                canonical = canonical_user_id(s, user_id) or user_id
                out.setdefault(canonical, UserMatch(canonical, kind, value))
                if len(out) >= limit:
                    break
    return list(out.values())


@dataclass(frozen=True)
class TimelineRow:
    at: datetime
    kind: str  # step | delivery | coupon
    journey_id: str | None
    version: int | None
    node_id: str | None
    node_label: str | None
    summary: str
    status: str | None
    reason: str | None


def _timeline_rows(
    s: Session, uid: str, limit: int | None, window: Window
) -> list[tuple[tuple[Any, ...], TimelineRow]]:
    """(sort key, row) for the user's steps, deliveries and coupons. The key
    keeps a run's steps in the order they happened even at one instant (a
    step's ``seq``), and puts a send's ledger row right after its step."""
    out: list[tuple[tuple[Any, ...], TimelineRow]] = []
    steps_q = select(StepRecord).where(StepRecord.user_id == uid)
    deliveries_q = select(Delivery).where(Delivery.user_id == uid)
    grants_q = select(CouponGrant).where(CouponGrant.user_id == uid)
    steps_q = within(steps_q, StepRecord.at, window)
    deliveries_q = within(deliveries_q, Delivery.at, window)
    grants_q = within(grants_q, CouponGrant.issued_at, window)
    steps = s.scalars(steps_q.order_by(StepRecord.at.desc(), StepRecord.id.desc()).limit(limit))
    for r in steps:
        detail = r.detail or {}
        reason = detail.get("reason")
        out.append(
            (
                (r.at, r.seq, 0, r.id),
                TimelineRow(
                    r.at,
                    "step",
                    r.journey_id,
                    r.version,
                    r.node_id,
                    None,
                    f"{r.kind}: {r.outcome}",
                    r.outcome,
                    str(reason) if reason else None,
                ),
            )
        )
    deliveries = s.scalars(deliveries_q.order_by(Delivery.at.desc()).limit(limit))
    for d in deliveries:
        out.append(
            (
                (d.at, 1 << 30, 1, 0),
                TimelineRow(
                    d.at,
                    "delivery",
                    d.journey_id,
                    d.version,
                    d.node_id,
                    None,
                    f"{d.channel or '-'} · {d.template}: {d.status}",
                    d.status,
                    d.reason,
                ),
            )
        )
    grants = s.scalars(grants_q.order_by(CouponGrant.issued_at.desc()).limit(limit))
    for g in grants:
        out.append(
            (
                (g.issued_at, 1 << 30, 2, g.id),
                TimelineRow(
                    g.issued_at, "coupon", g.journey_id, None, g.node_id, None, f"coupon {g.pool}: {g.code}", None, None
                ),
            )
        )
    return out


def user_timeline(
    store: Store, cache: JourneyCache, user_id: str, limit: int = 300, until: datetime | None = None
) -> tuple[list[TimelineRow], datetime | None]:
    """Every step, send, suppression (with its reason) and coupon of the user
    at or before ``until``, newest first, each step worded as the diagram of
    the version the run was on words it; the most recent ``limit`` of them,
    and the ``until`` of the older page (None when there is none)."""

    def newest_first(s: Session, uid: str, limit: int | None, window: Window) -> list[tuple[Any, TimelineRow]]:
        return sorted(_timeline_rows(s, uid, limit, window), key=lambda pair: pair[0], reverse=True)

    with store.read() as s:
        uid = canonical_user_id(s, user_id) or user_id
        newest = newest_first(s, uid, limit + 1, (None, until))
        keyed, older, crowded = newest_page(newest, limit, lambda pair: pair[1].at)
        if crowded is not None:
            keyed = newest_first(s, uid, None, (crowded, crowded))
    labels: dict[tuple[str, int | None], dict[str, str]] = {}

    def label(row: TimelineRow) -> str | None:
        if not row.journey_id or not row.node_id:
            return None
        key = (row.journey_id, row.version)
        if key not in labels:
            labels[key] = {}
            try:
                if row.version is not None:
                    found = cache.version(row.journey_id, row.version)
                    ir = found[1] if found else None
                else:
                    info = queries.get_journey(store, row.journey_id)
                    deployed = cache.current(info) if info else None
                    ir = deployed.ir if deployed else None
                if ir is not None:
                    labels[key] = node_labels(ir)
            except Exception:  # noqa: BLE001 - wording is a courtesy; the ids still show
                log.debug("labels for %s failed", key, exc_info=True)
        return labels[key].get(row.node_id)

    return [replace(row, node_label=label(row)) for _, row in keyed], older
