"""Runs (entries of a user into a journey) and the step records they leave.

Re-entry rules are enforced here, from the store, because Temporal's
workflow-id reuse policy forgets closed runs after the namespace's retention
period: "once" must mean once forever. ``begin`` is idempotent per ``run_key``:
the answer (admitted or refused, with the reason) is stored with the key, so a
retried activity or a replay asking again gets exactly the same answer.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from engine import contracts
from engine.store import Store
from engine.store.models import Run, StepRecord
from engine.store.types import utc


@dataclass(frozen=True)
class BeginAnswer:
    allowed: bool
    reason: str | None = None


def begin(
    session: Session,
    store: Store,
    *,
    run_key: str,
    journey_id: str,
    version: int,
    user_id: str,
    mode: str,
    cooldown_seconds: int | None,
    now: datetime,
    trigger_event: dict[str, Any] | None = None,
) -> BeginAnswer:
    existing = session.scalars(select(Run).where(Run.run_key == run_key)).first()
    if existing is not None:
        return BeginAnswer(existing.admitted, existing.reason)
    store.lock(session, f"entry:{journey_id}:{user_id}")
    now = utc(now)
    previous = session.scalars(
        select(Run)
        .where(Run.journey_id == journey_id, Run.user_id == user_id, Run.admitted.is_(True))
        .order_by(Run.entered_at.desc())
    ).first()
    reason: str | None = None
    if previous is not None:
        if mode == "once":
            reason = f"reentry once: already entered at {previous.entered_at.isoformat()}"
        elif mode == "after":
            cooldown = timedelta(seconds=cooldown_seconds or 0)
            if now < previous.entered_at + cooldown:
                until = (previous.entered_at + cooldown).isoformat()
                reason = f"reentry after {int(cooldown.total_seconds())}s: cooling down until {until}"
    session.add(
        Run(
            run_key=run_key,
            journey_id=journey_id,
            version=version,
            user_id=user_id,
            admitted=reason is None,
            reason=reason,
            entered_at=now,
            ended_at=None if reason is None else now,
            outcome=None if reason is None else "refused",
            trigger_event=trigger_event,
        )
    )
    session.flush()
    return BeginAnswer(reason is None, reason)


def end(
    session: Session, *, run_key: str, journey_id: str, user_id: str, outcome: str, reason: str | None, now: datetime
) -> None:
    """Close the run; the first recorded end wins (retries change nothing)."""
    run = session.scalars(select(Run).where(Run.run_key == run_key)).first()
    now = utc(now)
    if run is None:
        # The run was never begun in this store (e.g. started before the store
        # existed); keep the outcome anyway so stats stay complete.
        run = Run(
            run_key=run_key,
            journey_id=journey_id,
            version=0,
            user_id=user_id,
            admitted=True,
            entered_at=now,
        )
        session.add(run)
    if run.ended_at is None or run.outcome is None:
        run.ended_at, run.outcome, run.end_reason = now, outcome, reason
        if outcome == "converted" and run.converted_at is None:
            run.converted_at = now
    session.flush()


def record_steps(store: Store, records: Iterable[contracts.StepRecord]) -> int:
    """Insert step records, ignoring ones already stored (same run, seq, node,
    kind, outcome and time). Also keeps ``runs.variant`` and ``runs.converted_at`` in
    step with "split" and "goal" records. Returns how many were new."""
    batch = list(records)
    if not batch:
        return 0

    def work(s: Session) -> int:
        added = 0
        for rec in batch:
            at = utc(rec.at)
            exists = s.scalars(
                select(StepRecord.id).where(
                    StepRecord.run_key == rec.run_key,
                    StepRecord.seq == rec.seq,
                    StepRecord.node_id == rec.node_id,
                    StepRecord.kind == rec.kind,
                    StepRecord.outcome == rec.outcome,
                    StepRecord.at == at,
                )
            ).first()
            if exists is None:
                try:
                    with s.begin_nested():
                        s.add(
                            StepRecord(
                                run_key=rec.run_key,
                                seq=rec.seq,
                                journey_id=rec.journey_id,
                                version=rec.version,
                                user_id=rec.user_id,
                                node_id=rec.node_id,
                                kind=rec.kind,
                                outcome=rec.outcome,
                                variant=rec.variant,
                                at=at,
                                detail=dict(rec.detail or {}),
                            )
                        )
                        s.flush()
                    added += 1
                except IntegrityError:
                    pass  # a concurrent retry stored it first
            run = s.scalars(select(Run).where(Run.run_key == rec.run_key)).first()
            if run is not None:
                if rec.variant and run.variant is None:
                    run.variant = rec.variant
                if rec.kind == "goal" and run.converted_at is None:
                    run.converted_at = at
        s.flush()
        return added

    return store.transact(work)
