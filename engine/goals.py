"""Goal attribution from the stored events: did the run's user do the goal's
event within the window after entering?

The interpreter marks a run converted only while the run is still going
(``workflows.goals_exits``; ``runs.converted_at``, the timeline's "goal:
converted"). A journey that ends right after its last send — an SMS recall's
A/B batches — would then never convert, however many users buy a minute
later. Stats therefore judge each admitted run by the stored events, whether
the run is open, completed or exited early:

- the event: one named as the goal of the run's own version (each version
  keeps its goal), by the run's user — ``events.user_id`` is the canonical
  user (``engine.identity.merge_users`` re-points a merged user's events and
  runs alike), so an event sent under another id of the same person counts;
- the time: ``occurred_at`` (when the user did it, the time every other
  event count in the engine uses, and the indexed one) in ``(entered_at,
  entered_at + within]``; without ``within``, any time after entry (the
  interpreter's "while the run lasts" is exactly what made ended runs read
  0; an unbounded goal keeps counting, so operators should write ``within``);
- the event that entered the run is not its conversion;
- a run ended because its user turned out to be the same person as another
  run's (``engine.merges``: end reason ``merged…``) is a duplicate entry: the
  person converts through the run that was kept;
- ``where``: the interpreter's own evaluator on the event's properties
  (``contracts.conditions.evaluate`` with no user snapshot), over the
  candidate rows SQL found in the window;
- once per run, at the first qualifying event.

The join (runs × events on user, name and window) runs in SQL, one query per
version of the journey; only ``where`` is checked in Python.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import ColumnElement, Interval, Select, and_, func, literal_column, not_, or_, select
from sqlalchemy.orm import Session

from contracts.conditions import evaluate
from dsl.ir import Goal
from engine.broadcasts import marker
from engine.merges import MERGED
from engine.store import Store
from engine.store.models import Delivery, Event, JourneyVersion, Run
from engine.store.types import utc

__all__ = [
    "MAX_WHERE_CANDIDATES",
    "Attribution",
    "Conversion",
    "Entry",
    "attribute",
    "deliveries",
    "entries",
    "version_goals",
]

# A goal with ``where`` reads the window's candidate events into Python; past
# this many rows the answer is marked incomplete rather than left to run on.
MAX_WHERE_CANDIDATES = 200_000


@dataclass(frozen=True)
class Conversion:
    run_id: int
    version: int
    variant: str | None
    entered_at: datetime
    at: datetime  # occurred_at of the first qualifying event


@dataclass(frozen=True)
class Attribution:
    conversions: list[Conversion]
    incomplete: bool = False  # a ``where`` goal stopped at MAX_WHERE_CANDIDATES rows

    def per_variant(self) -> dict[str | None, int]:
        out: dict[str | None, int] = {}
        for c in self.conversions:
            out[c.variant] = out.get(c.variant, 0) + 1
        return out


@dataclass(frozen=True)
class Entry:
    run_id: int
    version: int
    variant: str | None
    entered_at: datetime


def version_goals(store: Store, journey_id: str, version: int | None = None) -> dict[int, Goal | None]:
    """Each deployed version's goal (None: that version has none)."""
    q = select(JourneyVersion.version, JourneyVersion.ir).where(JourneyVersion.journey_id == journey_id)
    if version is not None:
        q = q.where(JourneyVersion.version == version)
    with store.read() as s:
        rows = s.execute(q).all()
    out: dict[int, Goal | None] = {}
    for v, ir in rows:
        goal = (ir or {}).get("goal")
        out[int(v)] = Goal.model_validate(goal) if goal else None
    return out


def _admitted(journey_id: str, version: int | None, broadcast_id: str | None) -> ColumnElement[bool]:
    """The runs a number is about: admitted, of this journey (and version),
    entered by that broadcast when one is named."""
    conds = [Run.journey_id == journey_id, Run.admitted.is_(True)]
    if version is not None:
        conds.append(Run.version == version)
    if broadcast_id is not None:
        conds.append(Run.trigger_event["id"].as_string() == marker(broadcast_id))
    return and_(*conds)


def _not_after(session: Session, event_at: ColumnElement[datetime], seconds: int) -> ColumnElement[bool]:
    """``event_at <= runs.entered_at + seconds``, in each dialect's words
    (SQLite keeps datetimes as text: compare them as Julian days)."""
    if session.get_bind().dialect.name == "sqlite":
        return (func.julianday(event_at) - func.julianday(Run.entered_at)) * 86400.0 <= seconds
    return event_at <= Run.entered_at + literal_column(f"INTERVAL '{int(seconds)} seconds'", Interval())


def _window(session: Session, goal: Goal) -> ColumnElement[bool]:
    conds = [
        Event.user_id == Run.user_id,
        Event.name == goal.event,
        Event.occurred_at > Run.entered_at,
        or_(Run.trigger_event_id.is_(None), Event.id != Run.trigger_event_id),
    ]
    if goal.within_seconds is not None:
        conds.append(_not_after(session, Event.occurred_at, goal.within_seconds))
    return and_(*conds)


def _first_events(session: Session, goal: Goal, runs: ColumnElement[bool]) -> Select:
    return (
        select(Run.id, Run.version, Run.variant, Run.entered_at, func.min(Event.occurred_at))
        .join(Event, _window(session, goal))
        .where(runs)
        .group_by(Run.id, Run.version, Run.variant, Run.entered_at)
    )


def _candidates(session: Session, goal: Goal, runs: ColumnElement[bool]) -> Select:
    return (
        select(Run.id, Run.version, Run.variant, Run.entered_at, Event.occurred_at, Event.properties)
        .join(Event, _window(session, goal))
        .where(runs)
        .order_by(Run.id, Event.occurred_at, Event.id)
    )


def _filtered(session: Session, goal: Goal, runs: ColumnElement[bool]) -> tuple[list[Conversion], bool]:
    """First event per run that satisfies ``where``, streamed in run order."""
    assert goal.where is not None
    out: list[Conversion] = []
    done: int | None = None
    rows: Iterator = iter(session.execute(_candidates(session, goal, runs).execution_options(yield_per=2000)))
    for n, (run_id, version, variant, entered_at, at, props) in enumerate(rows):
        if n >= MAX_WHERE_CANDIDATES:
            return out, True
        if run_id == done:
            continue
        if evaluate(goal.where, None, dict(props or {})):
            out.append(Conversion(run_id, version, variant, utc(entered_at), utc(at)))
            done = run_id
    return out, False


def attribute(
    store: Store, journey_id: str, version: int | None = None, *, broadcast_id: str | None = None
) -> Attribution:
    """Every admitted run of the journey (one version, one broadcast's runs)
    that reached its version's goal, with when."""
    goals = version_goals(store, journey_id, version)
    found: list[Conversion] = []
    incomplete = False
    with store.read() as s:
        for v, goal in sorted(goals.items()):
            if goal is None:
                continue
            runs = and_(
                _admitted(journey_id, v, broadcast_id),
                or_(Run.end_reason.is_(None), not_(Run.end_reason.like(f"{MERGED}%"))),
            )
            if goal.where is None:
                for run_id, ver, variant, entered_at, at in s.execute(_first_events(s, goal, runs)):
                    found.append(Conversion(run_id, ver, variant, utc(entered_at), utc(at)))
            else:
                rows, cut = _filtered(s, goal, runs)
                found.extend(rows)
                incomplete = incomplete or cut
    return Attribution(found, incomplete)


def entries(
    store: Store,
    journey_id: str,
    version: int | None = None,
    *,
    broadcast_id: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
) -> list[Entry]:
    """Admitted runs (optionally entered in ``[since, until)``), with variant."""
    conds = [_admitted(journey_id, version, broadcast_id)]
    if since is not None:
        conds.append(Run.entered_at >= since)
    if until is not None:
        conds.append(Run.entered_at < until)
    q = select(Run.id, Run.version, Run.variant, Run.entered_at).where(*conds)
    with store.read() as s:
        return [Entry(i, v, var, utc(at)) for i, v, var, at in s.execute(q)]


def deliveries(
    store: Store,
    journey_id: str,
    since: datetime,
    until: datetime,
    version: int | None = None,
    *,
    broadcast_id: str | None = None,
) -> list[tuple[datetime, str, str | None]]:
    """(time, status, variant) of the journey's deliveries in ``[since,
    until)``; with a broadcast, only those of the runs it entered."""
    q = select(Delivery.at, Delivery.status, Delivery.variant).where(
        Delivery.journey_id == journey_id, Delivery.at >= since, Delivery.at < until
    )
    if version is not None:
        q = q.where(Delivery.version == version)
    if broadcast_id is not None:
        q = q.join(Run, Run.run_key == Delivery.run_key).where(_admitted(journey_id, version, broadcast_id))
    with store.read() as s:
        return [(utc(at), status, variant) for at, status, variant in s.execute(q)]
