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

from sqlalchemy import bindparam, insert, select, update
from sqlalchemy.orm import Session

from contracts import activities as contracts
from engine.store import Store
from engine.store.models import Run, StepRecord
from engine.store.types import utc

# Every run begins, records its steps and ends: these statements are built
# once (Core, not ORM: building and flushing ORM objects cost more than the
# queries themselves).
_RUNS = Run.__table__
_STEPS = StepRecord.__table__
_BY_KEY = select(_RUNS.c.admitted, _RUNS.c.reason).where(_RUNS.c.run_key == bindparam("run_key"))
_BY_TRIGGER = select(_RUNS.c.run_key).where(
    _RUNS.c.journey_id == bindparam("journey_id"),
    _RUNS.c.user_id == bindparam("user_id"),
    _RUNS.c.trigger_event_id == bindparam("trigger_id"),
)
_LAST_ADMITTED = (
    select(_RUNS.c.entered_at)
    .where(
        _RUNS.c.journey_id == bindparam("journey_id"),
        _RUNS.c.user_id == bindparam("user_id"),
        _RUNS.c.admitted.is_(True),
    )
    .order_by(_RUNS.c.entered_at.desc())
    .limit(1)
)
_INSERT_RUN = insert(_RUNS)
_END_STATE = select(_RUNS.c.ended_at, _RUNS.c.outcome, _RUNS.c.converted_at).where(
    _RUNS.c.run_key == bindparam("run_key")
)
_SET = update(_RUNS).where(_RUNS.c.run_key == bindparam("key"))
_STORED_STEPS = select(
    _STEPS.c.id,
    _STEPS.c.run_key,
    _STEPS.c.seq,
    _STEPS.c.node_id,
    _STEPS.c.kind,
    _STEPS.c.outcome,
    _STEPS.c.variant,
    _STEPS.c.at,
    _STEPS.c.detail,
).where(
    _STEPS.c.run_key.in_(bindparam("run_keys", expanding=True)),
    _STEPS.c.seq.in_(bindparam("seqs", expanding=True)),
)
_INSERT_STEPS = insert(_STEPS)
_REWRITE_STEP = update(_STEPS).where(_STEPS.c.id == bindparam("step_id"))
_REWRITTEN = ("node_id", "kind", "outcome", "variant", "at", "detail")
_VARIANT_AND_CONVERSION = select(_RUNS.c.run_key, _RUNS.c.variant, _RUNS.c.converted_at).where(
    _RUNS.c.run_key.in_(bindparam("run_keys", expanding=True))
)


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
    existing = session.execute(_BY_KEY, {"run_key": run_key}).first()
    if existing is not None:
        return BeginAnswer(existing.admitted, existing.reason)
    trigger_id = str(trigger_event["id"]) if trigger_event and trigger_event.get("id") else None
    who = {"journey_id": journey_id, "user_id": user_id}
    if trigger_id is not None:
        # The same event delivered again (a resend, the ingest sweep) after the
        # run it started had already ended: that entry happened; not another.
        if session.execute(_BY_TRIGGER, {**who, "trigger_id": trigger_id}).first() is not None:
            return BeginAnswer(False, f"event {trigger_id} already entered this journey")
    now = utc(now)
    reason: str | None = None
    previous: datetime | None = None
    if mode in ("once", "after"):  # "always" admits whatever came before: no need to look
        store.lock(session, f"entry:{journey_id}:{user_id}")
        previous = session.scalars(_LAST_ADMITTED, who).first()
    if previous is not None:
        if mode == "once":
            reason = f"reentry once: already entered at {previous.isoformat()}"
        elif mode == "after":
            cooldown = timedelta(seconds=cooldown_seconds or 0)
            if now < previous + cooldown:
                until = (previous + cooldown).isoformat()
                reason = f"reentry after {int(cooldown.total_seconds())}s: cooling down until {until}"
    session.execute(
        _INSERT_RUN,
        {
            **who,
            "run_key": run_key,
            "version": version,
            "admitted": reason is None,
            "reason": reason,
            "entered_at": now,
            "ended_at": None if reason is None else now,
            "outcome": None if reason is None else "refused",
            "trigger_event": trigger_event,
            "trigger_event_id": trigger_id,
        },
    )
    return BeginAnswer(reason is None, reason)


def end(
    session: Session, *, run_key: str, journey_id: str, user_id: str, outcome: str, reason: str | None, now: datetime
) -> None:
    """Close the run; the first recorded end wins (retries change nothing)."""
    now = utc(now)
    run = session.execute(_END_STATE, {"run_key": run_key}).first()
    if run is None:
        # The run was never begun in this store (e.g. started before the store
        # existed); keep the outcome anyway so stats stay complete.
        session.execute(
            _INSERT_RUN,
            {
                "run_key": run_key,
                "journey_id": journey_id,
                "version": 0,
                "user_id": user_id,
                "admitted": True,
                "entered_at": now,
                "ended_at": now,
                "outcome": outcome,
                "end_reason": reason,
                "converted_at": now if outcome == "converted" else None,
            },
        )
        return
    if run.ended_at is None or run.outcome is None:
        values: dict[str, Any] = {"ended_at": now, "outcome": outcome, "end_reason": reason}
        if outcome == "converted" and run.converted_at is None:
            values["converted_at"] = now
        session.execute(_SET.values(**values), {"key": run_key})


def record_steps(store: Store, records: Iterable[contracts.StepRecord]) -> int:
    """Store step records: one per (run, seq), the last written (see
    ``add_steps``). Also keeps ``runs.variant`` and ``runs.converted_at`` in
    step with "split" and "goal" records. Returns how many were new."""
    batch = list(records)
    if not batch:
        return 0
    return store.transact(lambda s: add_steps(s, batch))


def _natural_key(run_key: str, seq: int, node_id: str, kind: str, outcome: str, at: datetime) -> tuple:
    return (run_key, seq, node_id, kind, outcome, utc(at))


def _step_row(rec: contracts.StepRecord) -> dict[str, Any]:
    return {
        "run_key": rec.run_key,
        "seq": rec.seq,
        "journey_id": rec.journey_id,
        "version": rec.version,
        "user_id": rec.user_id,
        "node_id": rec.node_id,
        "kind": rec.kind,
        "outcome": rec.outcome,
        "variant": rec.variant,
        "at": utc(rec.at),
        "detail": dict(rec.detail or {}),
    }


def add_steps(session: Session, records: Iterable[contracts.StepRecord]) -> int:
    """``record_steps`` inside an open write transaction: one SELECT of the
    records already stored for the batch's runs and seqs, one bulk INSERT of
    the new ones, one Run lookup for all of the batch's runs.

    A run's records (seq 1, 2, …) are one per (run, seq), the last written:
    the same local activity run twice writes the same rows (a no-op), and a
    workflow task retried from its start (a signal arrived as it completed)
    writes its seqs again at its own ``workflow.now()``, perhaps with another
    outcome, and is what the run went on from, so it replaces the stored row.
    seq 0 is the engine's (``engine.merges``), kept apart by the natural key.
    A concurrent duplicate makes the INSERT fail on the unique index, and
    ``Store.transact`` retries the whole unit, which then finds it."""
    batch = list(records)
    if not batch:
        return 0
    run_keys = list(dict.fromkeys(r.run_key for r in batch))
    seqs = list(dict.fromkeys(r.seq for r in batch))
    found = list(session.execute(_STORED_STEPS, {"run_keys": run_keys, "seqs": seqs}))
    by_seq = {(r.run_key, r.seq): r for r in found if r.seq > 0}
    natural = {_natural_key(r.run_key, r.seq, r.node_id, r.kind, r.outcome, r.at) for r in found if r.seq <= 0}
    new: dict[tuple[str, int], dict[str, Any]] = {}  # the last of the batch per (run, seq)
    engine_rows: list[dict[str, Any]] = []
    rewrites: list[dict[str, Any]] = []
    for rec in batch:
        row = _step_row(rec)
        if rec.seq <= 0:
            key = _natural_key(rec.run_key, rec.seq, rec.node_id, rec.kind, rec.outcome, rec.at)
            if key not in natural:
                natural.add(key)
                engine_rows.append(row)
            continue
        old = by_seq.get((rec.run_key, rec.seq))
        if old is None:
            new[(rec.run_key, rec.seq)] = row
        elif any(_stored_value(old, name) != row[name] for name in _REWRITTEN):
            rewrites.append({"step_id": old.id, **{name: row[name] for name in _REWRITTEN}})
    rows = [*new.values(), *engine_rows]
    if rows:
        session.execute(_INSERT_STEPS, rows)
    if rewrites:
        session.execute(_REWRITE_STEP, rewrites)
    if any(rec.variant or rec.kind == "goal" for rec in batch):
        found = {
            r.run_key: {"variant": r.variant, "converted_at": r.converted_at}
            for r in session.execute(_VARIANT_AND_CONVERSION, {"run_keys": run_keys})
        }
        for rec in batch:
            run = found.get(rec.run_key)
            if run is None:
                continue
            values: dict[str, Any] = {}
            if rec.variant and run["variant"] is None:
                values["variant"] = rec.variant
            if rec.kind == "goal" and run["converted_at"] is None:
                values["converted_at"] = utc(rec.at)
            if values:
                session.execute(_SET.values(**values), {"key": rec.run_key})
                run.update(values)
    return len(rows)


def _stored_value(row: Any, name: str) -> Any:
    value = getattr(row, name)
    if name == "at":
        return utc(value)
    if name == "detail":
        return dict(value or {})
    return value
