"""Pages of a journey's runs (all of them, or those that reached one node),
of who waits at a node (as the store knows it) and of a node's deliveries,
newest first, by keyset: a journey with 100k runs waiting is never read whole.

Runs come by user (then run id), descending: the order of the runs'
``(journey_id, user_id)`` index, so a page is an index range however deep
it is and however many runs the journey has (newest first by id sorted all
100k runs for every page: 0.6 s; an ``OFFSET`` would read and drop every
earlier row). The cursor is the last run of the previous page, opaque to
callers (``encode_cursor``); a run started meanwhile shifts no page already
read.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import and_, exists, not_, or_, select
from sqlalchemy.orm import aliased

from engine.queries import RunInfo, _run
from engine.store import Store
from engine.store.models import Delivery, Run, StepRecord
from engine.views import DeliveryRow

__all__ = [
    "MAX_PAGE",
    "DeliveryPage",
    "RunPage",
    "WaitingPage",
    "decode_cursor",
    "encode_cursor",
    "journey_runs",
    "node_deliveries",
    "run_cursor",
    "waiting_users",
]

MAX_PAGE = 500  # the most runs one page holds (the API's ``limit`` bound)


def encode_cursor(value: dict[str, Any] | None) -> str | None:
    """An opaque, URL-safe page cursor; None stays None."""
    if value is None:
        return None
    return base64.urlsafe_b64encode(json.dumps(value, separators=(",", ":")).encode()).decode().rstrip("=")


def decode_cursor(text: str | None) -> dict[str, Any] | None:
    """The cursor ``encode_cursor`` made; ValueError for anything else."""
    if text is None:
        return None
    try:
        value = json.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))
    except (binascii.Error, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError("not a cursor a page gave") from exc
    if not isinstance(value, dict):
        raise ValueError("not a cursor a page gave")
    return value


def run_cursor(value: dict[str, Any] | None) -> tuple[str, int] | None:
    """A runs page cursor ``(user_id, run id)``; ValueError if it is not one."""
    if value is None:
        return None
    user, run_id = value.get("u"), value.get("r")
    if not isinstance(user, str) or not isinstance(run_id, int) or isinstance(run_id, bool):
        raise ValueError("not a runs cursor")
    return user, run_id


def _after(cursor: tuple[str, int] | None) -> Any:
    """Runs after the cursor in the pages' order (user, then id, descending)."""
    if cursor is None:
        return None
    user, run_id = cursor
    return or_(Run.user_id < user, and_(Run.user_id == user, Run.id < run_id))


def _next(rows: list[Any], limit: int) -> tuple[list[Any], str | None]:
    """The page's rows and the cursor after its last one (None: no more)."""
    if len(rows) <= limit:
        return rows, None
    rows = rows[:limit]
    return rows, encode_cursor({"u": rows[-1].user_id, "r": rows[-1].id})


_ORDER = (Run.user_id.desc(), Run.id.desc())


@dataclass(frozen=True)
class RunPage:
    runs: list[RunInfo]
    next_cursor: str | None  # pass back as ``cursor`` for the next page; None on the last page


def journey_runs(
    store: Store,
    journey_id: str,
    *,
    limit: int,
    cursor: tuple[str, int] | None = None,
    node_id: str | None = None,
    open_only: bool = False,
    version: int | None = None,
) -> RunPage:
    """Up to ``limit`` runs of the journey after ``cursor``: of one
    version, that reached ``node_id`` (a step record there, any outcome),
    still going (``open_only``) when asked."""
    limit = max(1, min(limit, MAX_PAGE))
    q = select(Run).where(Run.journey_id == journey_id)
    if cursor is not None:
        q = q.where(_after(cursor))
    if version is not None:
        q = q.where(Run.version == version)
    if open_only:
        q = q.where(Run.admitted.is_(True), Run.ended_at.is_(None))
    if node_id is not None:
        # the step records' (run_key, seq) index answers this per run
        q = q.where(exists().where(StepRecord.run_key == Run.run_key, StepRecord.node_id == node_id))
    with store.read() as s:
        rows, following = _next(list(s.scalars(q.order_by(*_ORDER).limit(limit + 1))), limit)
    return RunPage([_run(r) for r in rows], following)


@dataclass(frozen=True)
class WaitingPage:
    users: list[str]
    next_cursor: str | None  # the cursor of the next page; None on the last page


def waiting_users(
    store: Store,
    journey_id: str,
    node_id: str,
    *,
    limit: int,
    cursor: tuple[str, int] | None = None,
    version: int | None = None,
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
        q = q.where(_after(cursor))
    if version is not None:
        q = q.where(Run.version == version)
    with store.read() as s:
        rows, following = _next(s.execute(q.order_by(*_ORDER).limit(limit + 1)).all(), limit)
    return WaitingPage([r.user_id for r in rows], following)


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
