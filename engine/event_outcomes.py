"""What became of each event a user sent, run by run, for the timeline.

Two sides know parts of it: dispatch knows where an event went (the runs it
was signalled to, the runs it started, ``Event.outcome``), and the runs know
what they did with it (a ``wait for event`` step record with its
``event_id``, a goal, an exit on it; a refused entry keeps its reason on the
run row). ``outcomes`` puts them together:

- ``consumed``: a ``wait for event`` took it (``node_id`` says which);
- ``goal``: it reached the run's goal; ``exit``: an exit rule ended the run;
- ``entered``: it started the run; ``refused``: it would have, and the
  re-entry rule said no (``reason``);
- ``not taken``: the run got it and no wait took it (yet: a later ``wait for
  event`` may, while the run keeps it);
- ``gone``: the run had ended before it arrived;
- ``joined``: the journey enters on it and the person's run of it was going
  (under an id merged into them), which got it instead.

An event none of this applies to was ``ignored`` (no open run, no journey
entering on it), or is not delivered yet (``pending``: the sweep delivers it).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from engine.run_signals import workflow_of
from engine.store.models import Event, Run, StepRecord

_TAKEN_BY = ("wait_event", "goal", "end")  # step kinds whose records may name an event
# Step records carry workflow time, events the API's receipt: a run may
# record an event a moment "before" it was received when the clocks differ.
_CLOCK_SLACK = timedelta(minutes=5)


@dataclass(frozen=True)
class RunOutcome:
    journey_id: str | None
    workflow_id: str
    outcome: str
    run_key: str | None = None
    node_id: str | None = None
    reason: str | None = None

    def shown(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None}


@dataclass(frozen=True)
class EventOutcome:
    status: str  # the most telling of the runs' outcomes, "ignored" or "pending"
    reason: str | None
    runs: list[RunOutcome]


# Which outcome says most about an event when runs disagree.
_RANK = ("consumed", "goal", "exit", "entered", "refused", "joined", "not taken", "gone")


def outcomes(session: Session, user_id: str, events: Sequence[Event]) -> dict[str, EventOutcome]:
    """Event id -> what became of it, for events of one user."""
    if not events:
        return {}
    ids = [e.id for e in events]
    since = min(e.received_at for e in events) - _CLOCK_SLACK
    entries = list(session.scalars(select(Run).where(Run.user_id == user_id, Run.trigger_event_id.in_(ids))))
    records = [
        r
        for r in session.scalars(
            select(StepRecord).where(
                StepRecord.user_id == user_id, StepRecord.kind.in_(_TAKEN_BY), StepRecord.at >= since
            )
        )
        if (r.detail or {}).get("event_id") in ids or r.kind == "end"
    ]
    return {e.id: _outcome(e, entries, records) for e in events}


def _outcome(event: Event, entries: list[Run], records: list[StepRecord]) -> EventOutcome:
    if event.dispatched_at is None:
        return EventOutcome("pending", "not delivered to the runs yet (the sweep delivers it)", [])
    done = event.outcome or {}
    runs: list[RunOutcome] = []
    started = {workflow_of(r.run_key): r for r in entries if r.trigger_event_id == event.id}
    for wid, run in started.items():
        if run.admitted:
            runs.append(RunOutcome(run.journey_id, wid, "entered", run.run_key))
        else:
            runs.append(RunOutcome(run.journey_id, wid, "refused", run.run_key, reason=run.reason))
    # a start that found the run going delivered the event to it, as a signal does
    delivered = [w for w in [*done.get("signalled", []), *done.get("started", [])] if w not in started]
    for wid in dict.fromkeys(delivered):
        runs.append(_in_run(event, wid, records))
    runs += [RunOutcome(None, wid, "gone", reason="the run had ended") for wid in done.get("gone", [])]
    for journey_id in done.get("joined", []):
        reason = "the person's run of this journey under a merged id got it"
        runs.append(RunOutcome(journey_id, "", "joined", reason=reason))
    if not runs:
        return EventOutcome("ignored", "no open run and no journey entering on it", [])
    best = min(runs, key=lambda r: _RANK.index(r.outcome))
    return EventOutcome(best.outcome, best.reason, runs)


def _in_run(event: Event, wid: str, records: list[StepRecord]) -> RunOutcome:
    """What the run (by workflow id) did with the event."""
    prefix = f"{wid}:"
    mine = [r for r in records if r.run_key.startswith(prefix)]
    journey_id = mine[0].journey_id if mine else _journey_of(wid)
    for r in mine:
        detail = r.detail or {}
        if r.kind == "wait_event" and detail.get("event_id") == event.id:
            return RunOutcome(r.journey_id, wid, "consumed", r.run_key, r.node_id)
        if r.kind == "goal" and detail.get("event_id") == event.id:
            return RunOutcome(r.journey_id, wid, "goal", r.run_key, r.node_id)
    for r in mine:
        if r.kind == "end" and (r.detail or {}).get("reason") == f"event {event.name}" and r.at >= event.received_at:
            return RunOutcome(r.journey_id, wid, "exit", r.run_key, reason=f"exit when event {event.name}")
    return RunOutcome(journey_id, wid, "not taken", reason="no wait for event took it (yet)")


def _journey_of(wid: str) -> str | None:
    """The journey id in a workflow id (``journey:<journey>:<user>``)."""
    parts = wid.split(":")
    return parts[1] if len(parts) >= 3 and parts[0] == "journey" else None
