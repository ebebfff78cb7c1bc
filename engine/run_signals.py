"""Signals to a user's runs that a store change makes necessary, kept in the
store until Temporal accepted them (``run_signals``), like undispatched events.

Two kinds:

- ``merged`` (``engine.merges``): a merge left one person with two live runs
  of a journey; the one ended in the store must stop on Temporal too. Its
  signal (``contracts.names.MERGED_SIGNAL``) ends the workflow at once with
  reason ``merged``.
- ``tags``: a tag was added or removed (API, journey step, derived stage/RFM,
  a merge): every open run of the user hears it as a ``tag_added`` /
  ``tag_removed`` event (``properties``: ``tag``, ``source``), so ``exit when
  tag …`` fires at once and ``wait for event tag_added where event.tag == "vip"``
  wakes. A change a journey's tag step made (source ``journey:<id>``) is not
  sent to that journey's run: it knows, and telling it would echo.

The rows are written in the transaction of the change itself
(``queue_merged``, ``queue_tags``), so a crash right after the commit leaves
them to be sent: by whoever made the change and holds a Temporal client (the
dispatcher after an ingest, the tags route, the tag-step activity), and else
by the dispatcher's sweep (``engine.dispatch.Dispatcher.sweep``). Sending
twice is harmless: ``merged`` is idempotent, and a tag event's id is the same
on every delivery, so a run takes it once.

Sent rows are only history: ``prune_sent`` deletes those sent more than
``KEEP_SENT`` ago, a bounded number of short batches per call, from the
dispatcher's sweep, so a store with a tag step in a 100k-user journey does not
grow by 100k rows a day for ever.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import bindparam, delete, insert, select, update
from sqlalchemy.orm import Session
from temporalio.client import Client

from contracts import names
from contracts.runs import MergedNotice, UserEvent
from engine import identity  # a module: identity → merges → run_signals → identity
from engine.starts import signal_event, signal_merged
from engine.store import Store
from engine.store.models import Run, RunSignal
from engine.store.types import utc, utcnow

log = logging.getLogger("journeys.run_signals")

QUEUED = "run_signals"  # Session.info key: this transaction queued signals
JOURNEY_SOURCE = "journey:"

_SIGNALS = RunSignal.__table__
_RUNS = Run.__table__
_INSERT = insert(_SIGNALS)
_UNSENT = select(_SIGNALS).where(_SIGNALS.c.sent_at.is_(None)).order_by(_SIGNALS.c.id)
# a user's, as every ingest that queued one asks: built once, not per event
_UNSENT_OF = _UNSENT.where(_SIGNALS.c.user_id.in_(bindparam("uids", expanding=True))).limit(bindparam("n"))
_MARK = (
    update(_SIGNALS)
    .where(_SIGNALS.c.id.in_(bindparam("ids", expanding=True)), _SIGNALS.c.sent_at.is_(None))
    .values(sent_at=bindparam("at"))
)
# Sent rows kept a week for the timeline and for debugging a send; older ones go.
KEEP_SENT = timedelta(days=7)
# One delete's rows: short enough that a batch holds its locks for a few ms
# (on PostgreSQL a batch of 1000 by ``ix_run_signals_sent_at`` takes ~10 ms).
PRUNE_BATCH = 1000
PRUNE_BATCHES = 20  # per call: a backlog of sent rows drains over a few sweeps
_OLD_SENT = (
    select(_SIGNALS.c.id)
    .where(_SIGNALS.c.sent_at < bindparam("cut"))
    .order_by(_SIGNALS.c.sent_at)
    .limit(bindparam("n"))
    .scalar_subquery()
)
_PRUNE = delete(_SIGNALS).where(_SIGNALS.c.id.in_(_OLD_SENT))
_OPEN_RUNS = select(_RUNS.c.run_key, _RUNS.c.journey_id).where(
    _RUNS.c.user_id == bindparam("uid"), _RUNS.c.admitted.is_(True), _RUNS.c.ended_at.is_(None)
)


@dataclass(frozen=True)
class PendingSignal:
    id: int
    user_id: str
    kind: str
    workflow_id: str | None
    run_key: str | None
    source: str | None
    payload: dict[str, Any]
    created_at: datetime
    # the user's open runs as (workflow id, journey id), read with the row (tags)
    open_runs: tuple[tuple[str, str], ...] = ()


def workflow_of(run_key: str) -> str:
    """The workflow id a run key (``<workflow id>:<first run id>``) belongs to."""
    return run_key.rsplit(":", 1)[0]


def queue_merged(session: Session, *, user_id: str, run_key: str, kept_run_key: str, now: datetime) -> None:
    """Tell the run ``run_key`` that it ended as ``merged`` (the person's run
    ``kept_run_key`` goes on)."""
    _queue(
        session,
        user_id=user_id,
        kind="merged",
        workflow_id=workflow_of(run_key),
        run_key=run_key,
        source=None,
        payload={"kept_run_key": kept_run_key},
        now=now,
    )


def queue_tags(
    session: Session,
    user_id: str,
    *,
    added: Sequence[str] = (),
    removed: Sequence[str] = (),
    source: str,
    now: datetime,
) -> None:
    """Tell the user's open runs that these tags were added or removed."""
    if not added and not removed:
        return
    payload = {"added": list(added), "removed": list(removed)}
    _queue(
        session, user_id=user_id, kind="tags", workflow_id=None, run_key=None, source=source, payload=payload, now=now
    )


def _queue(
    session: Session,
    *,
    user_id: str,
    kind: str,
    workflow_id: str | None,
    run_key: str | None,
    source: str | None,
    payload: dict[str, Any],
    now: datetime,
) -> None:
    session.execute(
        _INSERT,
        {
            "user_id": user_id,
            "kind": kind,
            "workflow_id": workflow_id,
            "run_key": run_key,
            "source": source,
            "payload": payload,
            "created_at": utc(now),
            "sent_at": None,
        },
    )
    session.info[QUEUED] = True


def unsent(
    store: Store, *, user_id: str | None = None, created_before: datetime | None = None, limit: int = 100
) -> list[PendingSignal]:
    """Signals not sent yet, oldest first (of one user, or older than a time),
    each on its user's current id with that user's open runs."""
    with store.read() as s:
        return unsent_in(s, user_id=user_id, created_before=created_before, limit=limit)


def unsent_in(
    session: Session,
    *,
    user_id: str | None = None,
    created_before: datetime | None = None,
    limit: int = 100,
    skip: Collection[int] = (),
    open_runs: Mapping[str, Sequence[tuple[str, str]]] | None = None,
) -> list[PendingSignal]:
    """``unsent`` inside a session the caller holds. ``skip``: ids sent but
    whose mark is not written yet (the dispatcher batches marks), left out so
    they are not sent twice by this process. ``open_runs``: (workflow id,
    journey id) pairs per user the caller read in this session already, so
    the ingest path reads a user's runs once for its event and its signals;
    those users are taken as current ids (the caller just resolved them, and
    targets its event by the same runs), which spares their merge lookup."""
    canonical: dict[str, str] = {uid: uid for uid in open_runs or {}}

    def owner(uid: str) -> str:
        if uid not in canonical:  # one lookup per user, not per row
            canonical[uid] = identity.canonical_user_id(session, uid) or uid
        return canonical[uid]

    wanted = limit + len(skip)  # the skipped are filtered below, after the limit
    uids = sorted({user_id, owner(user_id)}) if user_id is not None else None
    if uids is not None and created_before is None:
        rows = session.execute(_UNSENT_OF, {"uids": uids, "n": wanted})
    else:
        q = _UNSENT
        if created_before is not None:
            q = q.where(_SIGNALS.c.created_at < utc(created_before))
        if uids is not None:
            q = q.where(_SIGNALS.c.user_id.in_(uids))
        rows = session.execute(q.limit(wanted))
    runs: dict[str, tuple[tuple[str, str], ...]] = {u: tuple(pairs) for u, pairs in (open_runs or {}).items()}
    out: list[PendingSignal] = []
    for row in rows:
        if row.id in skip:
            continue
        uid = owner(row.user_id)
        if row.kind == "tags" and uid not in runs:
            found = session.execute(_OPEN_RUNS, {"uid": uid})
            runs[uid] = tuple(dict.fromkeys((workflow_of(r.run_key), r.journey_id) for r in found))
        out.append(
            PendingSignal(
                id=row.id,
                user_id=uid,
                kind=row.kind,
                workflow_id=row.workflow_id,
                run_key=row.run_key,
                source=row.source,
                payload=dict(row.payload or {}),
                created_at=utc(row.created_at),
                open_runs=runs.get(uid, ()),
            )
        )
    return out[:limit]


def mark_sent(store: Store, ids: Iterable[int], now: datetime | None = None) -> None:
    batch = list(ids)
    if batch:
        at = utc(now) if now else utcnow()
        store.transact(lambda s: mark_sent_in(s, batch, at))


def mark_sent_in(session: Session, ids: Sequence[int], at: datetime) -> None:
    """``mark_sent`` inside the caller's write transaction (the dispatcher
    writes these marks with its events' in one transaction)."""
    if ids:
        session.execute(_MARK, {"ids": list(ids), "at": utc(at)})


def prune_sent(
    store: Store,
    *,
    now: datetime | None = None,
    keep: timedelta = KEEP_SENT,
    batch: int = PRUNE_BATCH,
    batches: int = PRUNE_BATCHES,
) -> int:
    """Delete signals sent more than ``keep`` ago, at most ``batches`` batches
    of ``batch`` rows, each in a transaction of its own (no long lock on a
    table every ingest writes); unsent rows are never touched, however old.
    Returns how many rows went; the next call goes on where this one stopped."""
    cut = utc(now or utcnow()) - keep
    removed = 0
    for _ in range(max(0, batches)):
        gone = store.transact(lambda s: s.execute(_PRUNE, {"cut": cut, "n": batch}).rowcount or 0)
        removed += gone
        if gone < batch:
            break
    return removed


def tag_events(signal: PendingSignal) -> list[UserEvent]:
    """The events a tag change is heard as; ids fixed by the row, so a
    redelivery is the same event."""
    events: list[UserEvent] = []
    for action, name in (("added", names.TAG_ADDED), ("removed", names.TAG_REMOVED)):
        for tag in signal.payload.get(action) or []:
            events.append(
                UserEvent(
                    id=f"tags-{signal.id}-{action}-{tag}",
                    name=name,
                    properties={"tag": tag, "source": signal.source},
                    occurred_at=signal.created_at,
                )
            )
    return events


def _targets(signal: PendingSignal) -> list[str]:
    """The workflows a tag change goes to: the user's open runs but the one
    whose own step made it."""
    source = signal.source or ""
    own = source.removeprefix(JOURNEY_SOURCE) if source.startswith(JOURNEY_SOURCE) else None
    return [wid for wid, journey_id in signal.open_runs if journey_id != own]


async def send(client: Client, signal: PendingSignal) -> bool:
    """Deliver one signal; True when Temporal accepted all of it (or the run
    is gone, which is as good)."""
    try:
        if signal.kind == "merged":
            notice = MergedNotice(kept_run_key=signal.payload.get("kept_run_key"), survivor_user_id=signal.user_id)
            await signal_merged(client, signal.workflow_id or "", notice)
            return True
        events = tag_events(signal)
        await asyncio.gather(*(signal_event(client, wid, e) for wid in _targets(signal) for e in events))
        return True
    except Exception as exc:  # noqa: BLE001 - left unsent: the sweep tries again
        log.warning("could not send %s signal %d: %s", signal.kind, signal.id, exc)
        return False


async def deliver(
    store: Store,
    client: Client,
    *,
    user_id: str | None = None,
    created_before: datetime | None = None,
    limit: int = 100,
) -> int:
    """Send what is unsent (of one user, or older than ``created_before``) and
    mark it; returns how many were sent."""
    pending = await asyncio.to_thread(unsent, store, user_id=user_id, created_before=created_before, limit=limit)
    if not pending:
        return 0
    sent = [signal.id for signal in pending if await send(client, signal)]  # in order: an add before its removal
    await asyncio.to_thread(mark_sent, store, sent)
    return len(sent)
