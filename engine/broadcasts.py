"""Progress rows of tag-audience broadcasts, and who a broadcast entered.

A broadcast's row (``broadcasts``) is committed once per page with a
compare-and-set on the page number: a page whose commit got lost (crash,
activity retry) is processed again, finds its users already entered (see
:func:`entered_by`), and commits once. So the row is exact, the cursor only
moves forward, and a resumed broadcast starts where the last commit left it.

"Entered by this broadcast" is read from the runs table: every run a broadcast
starts carries the trigger event :func:`marker` ``audience:<broadcast id>``,
which ``begin_run`` stores on the run. Temporal cannot tell us this by itself
after a run has closed, and a ``reentry always`` journey would otherwise let a
redone page enter a user a second time.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from contracts.broadcast import BroadcastProgress
from engine.store import Store
from engine.store.models import Broadcast, Run
from engine.store.types import utc

MARKER_EVENT = "audience"


def marker(broadcast_id: str) -> str:
    """The trigger event id of every run a broadcast starts."""
    return f"audience:{broadcast_id}"


def _progress(row: Broadcast) -> BroadcastProgress:
    return BroadcastProgress(
        broadcast_id=row.id,
        journey_id=row.journey_id,
        version=row.version,
        trigger=row.trigger,
        status=row.status,  # type: ignore[arg-type]
        reason=row.reason,
        cursor=row.cursor,
        page_size=row.page_size,
        pages=row.pages,
        scanned=row.scanned,
        matched=row.matched,
        entered=row.entered,
        skipped=row.skipped,
        started_at=row.started_at,
        updated_at=row.updated_at,
        finished_at=row.finished_at,
    )


def begin(
    store: Store, broadcast_id: str, *, journey_id: str, version: int, trigger: str, page_size: int, now: datetime
) -> BroadcastProgress:
    """Create the row, or return the existing one unchanged (a resumed broadcast
    keeps its cursor, counts and page size)."""

    def work(s: Session) -> BroadcastProgress:
        store.lock(s, f"broadcast:{broadcast_id}")
        row = s.get(Broadcast, broadcast_id)
        if row is None:
            at = utc(now)
            row = Broadcast(
                id=broadcast_id,
                journey_id=journey_id,
                version=version,
                trigger=trigger,
                status="running",
                page_size=page_size,
                pages=0,
                scanned=0,
                matched=0,
                entered=0,
                skipped=0,
                started_at=at,
                updated_at=at,
            )
            s.add(row)
            s.flush()
        return _progress(row)

    return store.transact(work)


def commit_page(
    store: Store,
    broadcast_id: str,
    *,
    pages_before: int,
    cursor: str | None,
    scanned: int,
    matched: int,
    entered: int,
    skipped: int,
    done: bool,
    now: datetime,
) -> BroadcastProgress:
    """Count one page and move the cursor, unless page ``pages_before + 1`` is
    already committed (then the stored row is returned as it is)."""

    def work(s: Session) -> BroadcastProgress:
        store.lock(s, f"broadcast:{broadcast_id}")
        row = s.get(Broadcast, broadcast_id)
        if row is None:
            raise KeyError(broadcast_id)
        if row.pages == pages_before and row.status == "running":
            row.pages += 1
            row.cursor = cursor
            row.scanned += scanned
            row.matched += matched
            row.entered += entered
            row.skipped += skipped
            row.updated_at = utc(now)
            if done:
                row.status, row.finished_at = "completed", utc(now)
            s.flush()
        return _progress(row)

    return store.transact(work)


def finish(store: Store, broadcast_id: str, *, status: str, reason: str | None, now: datetime) -> BroadcastProgress:
    """Close a broadcast (``completed`` or ``halted``); the first close wins."""

    def work(s: Session) -> BroadcastProgress:
        store.lock(s, f"broadcast:{broadcast_id}")
        row = s.get(Broadcast, broadcast_id)
        if row is None:
            raise KeyError(broadcast_id)
        if row.finished_at is None:
            row.status, row.reason, row.finished_at, row.updated_at = status, reason, utc(now), utc(now)
            s.flush()
        return _progress(row)

    return store.transact(work)


def get(store: Store, broadcast_id: str) -> BroadcastProgress | None:
    with store.read() as s:
        row = s.get(Broadcast, broadcast_id)
        return _progress(row) if row else None


def list_for_journey(store: Store, journey_id: str, *, limit: int = 50) -> list[BroadcastProgress]:
    """The journey's broadcasts, newest first."""
    with store.read() as s:
        rows = s.scalars(
            select(Broadcast)
            .where(Broadcast.journey_id == journey_id)
            .order_by(Broadcast.started_at.desc(), Broadcast.id.desc())
            .limit(limit)
        )
        return [_progress(r) for r in rows]


def entered_by(store: Store, journey_id: str, broadcast_id: str, user_ids: Iterable[str]) -> set[str]:
    """Users of ``user_ids`` with a run of the journey started by this broadcast
    (admitted or refused by its re-entry rule: either way, it was entered).

    Reads the runs by their trigger event id (the ``uq_runs_journey_trigger``
    index: journey, user, trigger), not every run of each user in the journey
    — a user of a ``reentry always`` journey may have hundreds. Runs stored
    before ``trigger_event_id`` was kept have it null and are judged by their
    trigger event as before."""
    ids = list(user_ids)
    if not ids:
        return set()
    wanted = marker(broadcast_id)
    with store.read() as s:
        rows = s.execute(
            select(Run.user_id, Run.trigger_event_id, Run.trigger_event).where(
                Run.journey_id == journey_id,
                Run.user_id.in_(ids),
                or_(Run.trigger_event_id == wanted, Run.trigger_event_id.is_(None)),
            )
        )
        return {
            user_id
            for user_id, trigger_id, trigger in rows
            if trigger_id == wanted or (isinstance(trigger, dict) and trigger.get("id") == wanted)
        }


def entry_outcomes(store: Store, journey_id: str, broadcast_id: str) -> dict[str, int]:
    """How the runs this broadcast started fared at the door: ``admitted`` or
    ``refused`` (re-entry rule). Runs not begun yet are in neither."""
    wanted = marker(broadcast_id)
    with store.read() as s:
        rows = s.execute(
            select(Run.admitted, func.count())
            .where(Run.journey_id == journey_id, Run.trigger_event["id"].as_string() == wanted)
            .group_by(Run.admitted)
        )
        counts = {"admitted": 0, "refused": 0}
        for admitted, n in rows:
            counts["admitted" if admitted else "refused"] += int(n)
        return counts
