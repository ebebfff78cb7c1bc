"""Reads the console's pages want in one go, which the ``/v1`` API has no
single route for: every journey with its live numbers, a node's latest
sends and who waits there (from the store, when Temporal cannot say), a
search over every kind of identifier. Plain blocking reads; callers run
them in a thread.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select

from dsl.render import END_ID, ENTRY_ID
from engine import catalog, stats
from engine.identity import canonical_user_id, normalize_value
from engine.store import Store
from engine.store.models import IDENTITY_KINDS, Delivery, Identity, Run, StepRecord


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
    users in it now (open runs) and conversions (``engine.goals``: the goal
    judged from the stored events, ended runs included)."""
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
                converted=len(stats.goal_attribution(store, info.id).conversions),
            )
        )
    return rows


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


def waiting_users_store(
    store: Store, journey_id: str, node_id: str, limit: int, version: int | None = None
) -> list[str]:
    """Open runs whose latest step is waiting at this node: who waits there,
    as far as the store knows (the fallback when Temporal cannot be asked)."""
    wanted = stats_node_id(node_id)
    q = select(Run.run_key).where(Run.journey_id == journey_id, Run.admitted.is_(True), Run.ended_at.is_(None))
    if version is not None:
        q = q.where(Run.version == version)
    with store.read() as s:
        users: list[str] = []
        for key in list(s.scalars(q)):
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
    store: Store, journey_id: str, node_id: str, limit: int, version: int | None = None
) -> list[DeliveryRow]:
    """The node's latest sends, newest first."""
    q = select(Delivery).where(Delivery.journey_id == journey_id, Delivery.node_id == stats_node_id(node_id))
    if version is not None:
        q = q.where(Delivery.version == version)
    with store.read() as s:
        rows = s.scalars(q.order_by(Delivery.at.desc(), Delivery.created_at.desc()).limit(limit))
        return [DeliveryRow(r.at, r.user_id, r.channel, r.template, r.status, r.reason) for r in rows]


def node_stats(store: Store, journey_id: str, node_id: str, version: int | None = None) -> stats.NodeStats:
    """One node's numbers (outcomes, failed sends…), zeros when it has none."""
    step = stats_node_id(node_id)
    return stats.node_counts(store, journey_id, version).get(step) or stats.NodeStats(node_id=step)


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
