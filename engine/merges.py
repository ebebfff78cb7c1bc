"""After a merge: one person, at most one live run per journey.

Two ids of one person may each be in a run of the same journey (X entered
with a phone, Y with an email; Y is identified with the phone during the
wait). ``merge_users`` re-points both runs to the survivor, and then
``end_duplicate_runs`` keeps one per journey and ends the others, in the
merge's transaction:

- which one: the earliest entry (then the smaller row id). Had the two ids
  been known as one person when the later run began, that entry would not
  have been a second run in any re-entry mode: ``once`` and ``after`` (within
  the cool-down, which a still-live first run is in for any journey that
  waits less than its cool-down) refuse it in ``engine.runs.begin``, and an
  entry while a run is going goes to that run (one workflow per journey and
  user: ``engine.starts``) under ``always`` too. The earlier run is also the
  one furthest along, so it is the least likely to reach a step the other
  already sent.
- how: the ended run's row is closed at once (``exited``, reason ``merged``),
  so it gets no more events and a send it still attempts is suppressed
  (``engine.activities``); a ``merged`` signal queued in the same
  transaction (``engine.run_signals``) ends the workflow on Temporal at once
  even mid-wait, and survives a crash between the merge and the signal.
  Both runs get a ``merge`` step record, so the timeline says what happened.
- the same step twice to one address: a send of the kept run is suppressed
  when a run the merge ended in its favour already sent that journey's step
  to that address (``already_sent_by_merged``; the ledger keeps a digest of
  channel and address, ``Delivery.address_hash``). A send of the ended run
  that was already with the provider when the merge committed still goes:
  the guard is a read before the provider call, not a lock across runs.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import bindparam, insert, select
from sqlalchemy.orm import Session

from engine import run_signals, runs
from engine.store.models import Delivery, Run, StepRecord
from engine.store.types import utc

MERGED = "merged"  # the end reason, as the interpreter records it on the signal

_RUNS = Run.__table__
_OPEN = (
    select(_RUNS.c.id, _RUNS.c.run_key, _RUNS.c.journey_id, _RUNS.c.version, _RUNS.c.entered_at)
    .where(_RUNS.c.user_id == bindparam("uid"), _RUNS.c.admitted.is_(True), _RUNS.c.ended_at.is_(None))
    .order_by(_RUNS.c.entered_at, _RUNS.c.id)
)
_STEPS = StepRecord.__table__
_INSERT_STEP = insert(_STEPS)
# The two guards every send asks (``engine.activities``), built once in Core:
# building them per call cost more than running them.
_END_REASON = select(_RUNS.c.end_reason).where(_RUNS.c.run_key == bindparam("run_key"))
_KEPT_FROM = select(_STEPS.c.detail).where(
    _STEPS.c.run_key == bindparam("run_key"), _STEPS.c.kind == "merge", _STEPS.c.outcome == "kept"
)
_RUN_MERGES = select(_END_REASON.scalar_subquery(), _KEPT_FROM.with_only_columns(_STEPS.c.id).exists().label("kept"))
_DELIVERIES = Delivery.__table__
_SENT_BY = (
    select(_DELIVERIES.c.id)
    .where(
        _DELIVERIES.c.journey_id == bindparam("journey_id"),
        _DELIVERIES.c.node_id == bindparam("node_id"),
        _DELIVERIES.c.address_hash == bindparam("address_hash"),
        _DELIVERIES.c.status.in_(("sent", "pending")),
        _DELIVERIES.c.run_key.in_(bindparam("ended", expanding=True)),
    )
    .limit(1)
)


@dataclass(frozen=True)
class EndedRun:
    run_key: str
    journey_id: str
    kept_run_key: str


def end_duplicate_runs(session: Session, user_id: str, *, merged_from: str, now: datetime) -> list[EndedRun]:
    """Keep the earliest live run of each journey of ``user_id`` (just merged
    with ``merged_from``), end the others (see the module doc)."""
    stamp = utc(now)
    kept: dict[str, str] = {}
    ended: list[EndedRun] = []
    for row in session.execute(_OPEN, {"uid": user_id}):
        first = kept.setdefault(row.journey_id, row.run_key)
        if first == row.run_key:
            continue
        reason = f"{MERGED}: {merged_from} is the same person as {user_id}; run {first} goes on"
        runs.end(
            session,
            run_key=row.run_key,
            journey_id=row.journey_id,
            user_id=user_id,
            outcome="exited",
            reason=reason,
            now=stamp,
        )
        _record(session, row.run_key, row.journey_id, row.version, user_id, "ended", stamp, reason, first)
        _record(session, first, row.journey_id, row.version, user_id, "kept", stamp, reason, row.run_key)
        run_signals.queue_merged(session, user_id=user_id, run_key=row.run_key, kept_run_key=first, now=stamp)
        ended.append(EndedRun(row.run_key, row.journey_id, first))
    return ended


def _record(
    session: Session,
    run_key: str,
    journey_id: str,
    version: int,
    user_id: str,
    outcome: str,
    at: datetime,
    reason: str,
    other: str,
) -> None:
    """A ``merge`` step record of one of the two runs (seq 0: written by the
    engine, not the run; the natural key keeps it apart from the run's own)."""
    session.execute(
        _INSERT_STEP,
        {
            "run_key": run_key,
            "seq": 0,
            "journey_id": journey_id,
            "version": version,
            "user_id": user_id,
            "node_id": "merge",
            "kind": "merge",
            "outcome": outcome,
            "variant": None,
            "at": at,
            "detail": {"reason": reason, "other_run_key": other},
        },
    )


@dataclass(frozen=True)
class RunMerges:
    """What merges did to one run, as its sends ask: was it ended in favour
    of another, and were others ended in its favour."""

    ended: bool
    kept: bool


def run_merges(session: Session, run_key: str) -> RunMerges:
    """Both guards' first question in one statement (a send asks every time)."""
    reason, kept = session.execute(_RUN_MERGES, {"run_key": run_key}).one()
    return RunMerges(ended=bool(reason and reason.startswith(MERGED)), kept=bool(kept))


def ended_by_merge(session: Session, run_key: str) -> bool:
    """This run was ended because its person has another run of the journey."""
    return run_merges(session, run_key).ended


def already_sent_by_merged(session: Session, *, run_key: str, journey_id: str, node_id: str, address_hash: str) -> bool:
    """A run a merge ended in favour of this one already sent this step of
    the journey to this address: sending it again would reach the same
    person twice. (Which runs: this run's ``merge``/``kept`` records, not a
    comparison of times, which the store and the runs keep on two clocks.)
    Only asked when :func:`run_merges` says others were ended for it."""
    ended = [(detail or {}).get("other_run_key") for detail in session.scalars(_KEPT_FROM, {"run_key": run_key})]
    ended = [key for key in ended if key]
    if not ended:
        return False
    found = session.execute(
        _SENT_BY, {"journey_id": journey_id, "node_id": node_id, "address_hash": address_hash, "ended": ended}
    ).first()
    return found is not None
