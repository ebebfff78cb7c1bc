"""``split test`` decisions: test on a sample, then the winner for the rest.

One row per (journey, version, split node) (``SplitTestRow``):

- ``start`` — the first run to reach the split starts the window (its
  workflow time); later runs read the same start.
- ``decide`` — once the window is over, the first run (or worker) to ask
  decides, in one transaction: the per-variant metric over the test's runs
  (the runs whose split record says ``test``), the variant with the best
  rate wins if it beats every other at p < ``ALPHA`` (the stats' two-
  proportion z-test) with at least ``MIN_PER_VARIANT`` runs each; else the
  split's ``otherwise`` variant. The row is only written while it has no
  winner, so a second decider (a retried activity, a worker killed after the
  commit, another run at the same moment) reads the first decision: decided
  once, whatever crashes.
- ``override`` — an operator picks the winner, before the test has decided
  (the waiting runs take it when the window ends) or after (later runs take
  it; runs already past the split keep their variant).

The metric: ``by goal`` is the journey's goal judged from the stored events
(``engine.goals``, as the stats do); ``by event E`` is whether the user did
E after reaching the split.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import insert, select, update
from sqlalchemy.exc import IntegrityError

from dsl.ir import Journey, SplitStep, iter_steps
from engine import catalog, goals
from engine.experiments import two_proportion_z
from engine.store import Store
from engine.store.models import Event, Run, SplitTestRow, StepRecord
from engine.store.types import utc, utcnow

ALPHA = 0.05
MIN_PER_VARIANT = 30
MAX_PARTICIPANTS = 200_000  # test runs read for a decision (bounded; the test is a sample)

_T = SplitTestRow.__table__


@dataclass(frozen=True)
class Decision:
    started_at: datetime
    winner: str | None
    decided_by: str | None
    decided_at: datetime | None
    reason: str | None
    numbers: dict[str, Any] | None


def _row(store: Store, journey_id: str, version: int, node_id: str) -> Decision | None:
    with store.read() as s:
        row = s.execute(
            select(_T.c.started_at, _T.c.winner, _T.c.decided_by, _T.c.decided_at, _T.c.reason, _T.c.numbers).where(
                _T.c.journey_id == journey_id, _T.c.version == version, _T.c.node_id == node_id
            )
        ).first()
    if row is None:
        return None
    decided_at = utc(row.decided_at) if row.decided_at is not None else None
    return Decision(utc(row.started_at), row.winner, row.decided_by, decided_at, row.reason, row.numbers)


def get(store: Store, journey_id: str, version: int, node_id: str) -> Decision | None:
    """The test as it stands (None: no run has reached the split yet)."""
    return _row(store, journey_id, version, node_id)


def start(store: Store, journey_id: str, version: int, node_id: str, at: datetime) -> Decision:
    """The test, started at ``at`` if no run started it before."""
    found = _row(store, journey_id, version, node_id)
    if found is not None:
        return found
    try:
        store.transact(
            lambda s: s.execute(
                insert(_T).values(journey_id=journey_id, version=version, node_id=node_id, started_at=utc(at))
            )
        )
    except IntegrityError:
        pass  # another run started it at the same moment: read theirs
    found = _row(store, journey_id, version, node_id)
    assert found is not None
    return found


def _split(store: Store, journey_id: str, version: int, node_id: str) -> SplitStep:
    info = catalog.get_version(store, journey_id, version)
    if info is None:
        raise LookupError(f"journey {journey_id} has no version {version}")
    ir = Journey.model_validate(info.ir)
    step = next((s for s in iter_steps(ir.steps) if s.id == node_id), None)
    if not isinstance(step, SplitStep) or step.test is None:
        raise LookupError(f"{node_id} is not a split test in {journey_id} v{version}")
    return step


def decide(
    store: Store, journey_id: str, version: int, node_id: str, now: datetime, min_per_variant: int = MIN_PER_VARIANT
) -> Decision:
    """The winner, deciding it now if nobody has (see the module doc)."""
    current = start(store, journey_id, version, node_id, now)
    if current.winner is not None:
        return current
    split = _split(store, journey_id, version, node_id)
    numbers = measure(store, journey_id, version, split, now)
    winner, reason = judge(split, numbers, min_per_variant)
    _write(store, journey_id, version, node_id, winner, "test", reason, numbers, only_if_open=True)
    decided = _row(store, journey_id, version, node_id)
    assert decided is not None and decided.winner is not None
    return decided


def override(store: Store, journey_id: str, version: int, node_id: str, variant: str, now: datetime) -> Decision:
    """An operator's winner, before or after the test decided."""
    split = _split(store, journey_id, version, node_id)
    names = [v.name for v in split.variants]
    if variant not in names:
        raise ValueError(f"{variant!r} is not a variant of {node_id} (variants: {', '.join(names)})")
    start(store, journey_id, version, node_id, now)
    previous = _row(store, journey_id, version, node_id)
    numbers = previous.numbers if previous and previous.numbers else measure(store, journey_id, version, split, now)
    _write(store, journey_id, version, node_id, variant, "operator", f"chosen by an operator: {variant}", numbers)
    decided = _row(store, journey_id, version, node_id)
    assert decided is not None
    return decided


def _write(
    store: Store,
    journey_id: str,
    version: int,
    node_id: str,
    winner: str,
    by: str,
    reason: str,
    numbers: dict[str, Any],
    *,
    only_if_open: bool = False,
) -> None:
    q = update(_T).where(_T.c.journey_id == journey_id, _T.c.version == version, _T.c.node_id == node_id)
    if only_if_open:
        q = q.where(_T.c.winner.is_(None))
    values = {"winner": winner, "decided_by": by, "decided_at": utcnow(), "reason": reason, "numbers": numbers}
    store.transact(lambda s: s.execute(q.values(**values)))


def measure(store: Store, journey_id: str, version: int, split: SplitStep, now: datetime) -> dict[str, Any]:
    """Per variant: the test's runs (``runs``) and how many met the metric
    (``hits``), as of ``now``."""
    assert split.test is not None
    with store.read() as s:
        rows = s.execute(
            select(StepRecord.run_key, StepRecord.outcome, StepRecord.detail, StepRecord.at, Run.id, Run.user_id)
            .join(Run, Run.run_key == StepRecord.run_key)
            .where(
                StepRecord.journey_id == journey_id,
                StepRecord.version == version,
                StepRecord.node_id == split.id,
                StepRecord.kind == "split",
            )
            .limit(MAX_PARTICIPANTS)
        ).all()
    tested = [r for r in rows if (r.detail or {}).get("test")]
    per: dict[str, dict[str, int]] = {v.name: {"runs": 0, "hits": 0} for v in split.variants}
    if split.test.metric == "goal":
        converted = {c.run_id for c in goals.attribute(store, journey_id, version).conversions if c.at <= utc(now)}
        for r in tested:
            name = r.outcome.removeprefix("variant:")
            if name in per:
                per[name]["runs"] += 1
                per[name]["hits"] += int(r.id in converted)
    else:
        users = {r.user_id for r in tested}
        did = _did_event(store, split.test.event or "", users, now)
        for r in tested:
            name = r.outcome.removeprefix("variant:")
            if name in per:
                per[name]["runs"] += 1
                per[name]["hits"] += int(any(at > utc(r.at) for at in did.get(r.user_id, ())))
    return {"metric": split.test.metric, "event": split.test.event, "variants": per, "as_of": utc(now).isoformat()}


def _did_event(store: Store, event: str, users: set[str], now: datetime) -> dict[str, list[datetime]]:
    out: dict[str, list[datetime]] = {}
    ids = sorted(users)
    with store.read() as s:
        for i in range(0, len(ids), 500):
            q = select(Event.user_id, Event.occurred_at).where(
                Event.name == event, Event.user_id.in_(ids[i : i + 500]), Event.occurred_at <= utc(now)
            )
            for user_id, at in s.execute(q):
                out.setdefault(user_id, []).append(utc(at))
    return out


def judge(split: SplitStep, numbers: dict[str, Any], min_per_variant: int = MIN_PER_VARIANT) -> tuple[str, str]:
    """(winner, why): the best rate if it wins against every other variant
    at p < ALPHA with at least MIN_PER_VARIANT runs each, else the fallback."""
    per: dict[str, dict[str, int]] = numbers["variants"]
    fallback = split.fallback()
    shown = ", ".join(f"{n} {_rate(v)} ({v['hits']}/{v['runs']})" for n, v in per.items())
    small = [n for n, v in per.items() if v["runs"] < min_per_variant]
    if small:
        return fallback, f"too few runs in the test ({shown}; at least {min_per_variant} each): {fallback}"
    best = max(per, key=lambda n: (per[n]["hits"] / per[n]["runs"], n == fallback))
    worst_p = 0.0
    for name, v in per.items():
        if name == best:
            continue
        z, p = two_proportion_z(per[best]["hits"], per[best]["runs"], v["hits"], v["runs"])
        if z is None or p is None or z <= 0 or p >= ALPHA:
            return fallback, f"no variant won significantly ({shown}; {best} vs {name}: p={_p(p)}): {fallback}"
        worst_p = max(worst_p, p)
    return best, f"{best} won ({shown}; p={_p(worst_p)} against each other variant)"


def _rate(v: dict[str, int]) -> str:
    return f"{100 * v['hits'] / v['runs']:.1f}%" if v["runs"] else "–"


def _p(p: float | None) -> str:
    return "n/a" if p is None else f"{p:.3f}"


@dataclass(frozen=True)
class Overview:
    """A split test as it stands, for the API and the console."""

    node_id: str
    version: int
    sample_percent: float
    window_seconds: int
    metric: str
    event: str | None
    otherwise: str
    started_at: datetime | None
    ends_at: datetime | None
    winner: str | None
    decided_by: str | None
    decided_at: datetime | None
    reason: str | None
    numbers: dict[str, Any] | None  # the decision's, or (undecided) the test's so far
    leader: str | None = None  # undecided: who would win if the window ended now
    so_far: str | None = None  # undecided: why (the same judgement as the decision's)

    def as_json(self) -> dict[str, Any]:
        out = dict(self.__dict__)
        for key in ("started_at", "ends_at", "decided_at"):
            out[key] = out[key].isoformat() if out[key] is not None else None
        return out


def overview(
    store: Store, journey_id: str, version: int | None = None, min_per_variant: int = MIN_PER_VARIANT
) -> list[Overview]:
    """Every split test of the version (default: the current one); a test
    still running says who leads and whether that would stand."""
    info = catalog.get_version(store, journey_id, version)
    if info is None:
        return []
    ir = Journey.model_validate(info.ir)
    now = utcnow()
    out = []
    for step in iter_steps(ir.steps):
        if not isinstance(step, SplitStep) or step.test is None:
            continue
        test = step.test
        found = get(store, journey_id, info.version, step.id)
        leader = so_far = None
        if found is None:
            numbers = None
        elif found.winner is None:
            numbers = measure(store, journey_id, info.version, step, now)
            leader, so_far = judge(step, numbers, min_per_variant)
        else:
            numbers = found.numbers
        out.append(
            Overview(
                node_id=step.id,
                version=info.version,
                sample_percent=test.sample_percent,
                window_seconds=test.window_seconds,
                metric=test.metric,
                event=test.event,
                otherwise=step.fallback(),
                started_at=found.started_at if found else None,
                ends_at=found.started_at + timedelta(seconds=test.window_seconds) if found else None,
                winner=found.winner if found else None,
                decided_by=found.decided_by if found else None,
                decided_at=found.decided_at if found else None,
                reason=found.reason if found else None,
                numbers=numbers,
                leader=leader,
                so_far=so_far,
            )
        )
    return out
