"""Pages of a journey's runs (all of them, or those that reached one node),
of who waits at a node (as the store knows it) and of a node's deliveries,
newest first, by keyset: a journey with 100k runs waiting is never read whole.

The cursor is the id of the last run of the previous page; the next page is
the runs with a smaller id. That is an index range however deep the page
(an ``OFFSET`` would read and drop every earlier row), and a run started
meanwhile does not shift the pages already read.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import and_, exists, not_, or_, select
from sqlalchemy.orm import aliased

from engine.queries import RunInfo, _run
from engine.store import Store
from engine.store.models import Delivery, Run, StepRecord
from engine.views import DeliveryRow

__all__ = ["MAX_PAGE", "DeliveryPage", "RunPage", "WaitingPage", "journey_runs", "node_deliveries", "waiting_users"]

MAX_PAGE = 500  # the most runs one page holds (the API's ``limit`` bound)


@dataclass(frozen=True)
class RunPage:
    runs: list[RunInfo]
    next_cursor: str | None  # pass back as ``cursor`` for the next page; None on the last page


def journey_runs(
    store: Store,
    journey_id: str,
    *,
    limit: int,
    cursor: int | None = None,
    node_id: str | None = None,
    open_only: bool = False,
    version: int | None = None,
) -> RunPage:
    """Up to ``limit`` runs of the journey older than ``cursor``: of one
    version, that reached ``node_id`` (a step record there, any outcome),
    still going (``open_only``) when asked."""
    limit = max(1, min(limit, MAX_PAGE))
    q = select(Run).where(Run.journey_id == journey_id)
    if cursor is not None:
        q = q.where(Run.id < cursor)
    if version is not None:
        q = q.where(Run.version == version)
    if open_only:
        q = q.where(Run.admitted.is_(True), Run.ended_at.is_(None))
    if node_id is not None:
        # the step records' (run_key, seq) index answers this per run
        q = q.where(exists().where(StepRecord.run_key == Run.run_key, StepRecord.node_id == node_id))
    with store.read() as s:
        rows = list(s.scalars(q.order_by(Run.id.desc()).limit(limit + 1)))
    more = len(rows) > limit
    rows = rows[:limit]
    return RunPage([_run(r) for r in rows], str(rows[-1].id) if more and rows else None)


@dataclass(frozen=True)
class WaitingPage:
    users: list[str]
    next_cursor: int | None  # the last run id of the page; None on the last page


def waiting_users(
    store: Store, journey_id: str, node_id: str, *, limit: int, cursor: int | None = None, version: int | None = None
) -> WaitingPage:
    """Open runs whose latest step record is "waiting" at the node, newest
    first: who waits there as far as the store knows (the node panel's answer
    when Temporal cannot be asked). One query a page, where reading every
    open run's latest record took one query per open run."""
    limit = max(1, min(limit, MAX_PAGE))
    later = aliased(StepRecord)
    at_node = exists().where(
        StepRecord.run_key == Run.run_key,
        StepRecord.node_id == node_id,
        StepRecord.outcome == "waiting",
        not_(exists().where(later.run_key == StepRecord.run_key, later.seq > StepRecord.seq)),
    )
    q = select(Run.id, Run.user_id).where(
        Run.journey_id == journey_id, Run.admitted.is_(True), Run.ended_at.is_(None), at_node
    )
    if cursor is not None:
        q = q.where(Run.id < cursor)
    if version is not None:
        q = q.where(Run.version == version)
    with store.read() as s:
        rows = s.execute(q.order_by(Run.id.desc()).limit(limit + 1)).all()
    more = len(rows) > limit
    rows = rows[:limit]
    return WaitingPage([u for _, u in rows], int(rows[-1][0]) if more and rows else None)


@dataclass(frozen=True)
class DeliveryPage:
    deliveries: list[DeliveryRow]
    next_cursor: tuple[datetime, str] | None  # (at, id) of the page's last delivery; None on the last page


def node_deliveries(
    store: Store,
    journey_id: str,
    node_id: str,
    *,
    limit: int,
    cursor: tuple[datetime, str] | None = None,
    version: int | None = None,
) -> DeliveryPage:
    """The node's sends, newest first (by send time, then id), a page after ``cursor``."""
    limit = max(1, min(limit, MAX_PAGE))
    q = select(Delivery).where(Delivery.journey_id == journey_id, Delivery.node_id == node_id)
    if version is not None:
        q = q.where(Delivery.version == version)
    if cursor is not None:
        at, last_id = cursor
        q = q.where(or_(Delivery.at < at, and_(Delivery.at == at, Delivery.id < last_id)))
    with store.read() as s:
        rows = list(s.scalars(q.order_by(Delivery.at.desc(), Delivery.id.desc()).limit(limit + 1)))
    more = len(rows) > limit
    rows = rows[:limit]
    out = [DeliveryRow(r.at, r.user_id, r.channel, r.template, r.status, r.reason) for r in rows]
    return DeliveryPage(out, (rows[-1].at, rows[-1].id) if more and rows else None)
