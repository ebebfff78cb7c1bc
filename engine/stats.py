"""Read-side counts for the operator's views: numbers on every node, runs per
variant, a journey's summary. (One user's timeline is ``engine.timeline``.)

Conversions come in two readings: ``runs.converted_at``, what the interpreter
recorded while the run was still going (``variant_counts``,
``journey_summary``), and the goal judged from the stored events whether or
not the run has ended (``engine.goals``; ``goal_variant_counts``), which is
what the operator's numbers show.

Counts are of distinct runs, so a node visited twice by a looping run counts
that run once per outcome; deliveries count messages by final status.
Clicks on tracked links (``engine.tracked_links``) are counted from the
clicks recorded (previews and crawlers never are): every click, and the
messages (per node) or runs (per variant) with at least one.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from sqlalchemy import and_, distinct, func, select

from engine import goals
from engine.count_cache import COUNTS
from engine.shelf import Shelf
from engine.store import Store
from engine.store.models import Delivery, Event, LinkClick, Run, StepRecord

__all__ = [
    "BIG_RUNS",
    "FIRST_WAIT",
    "ClickCounts",
    "JourneySummary",
    "NodeStats",
    "VariantStats",
    "admitted_per_variant",
    "events_after_entry",
    "first_wait",
    "goal_variant_counts",
    "is_big",
    "journey_summary",
    "node_clicks",
    "node_counts",
    "variant_clicks",
    "variant_counts",
    "variants_beside",
]

PASS_OUTCOMES = ("passed",)
T = TypeVar("T")


@dataclass
class NodeStats:
    node_id: str
    entered: int = 0  # distinct runs that reached the node
    passed: int = 0
    waiting: int = 0
    sent: int = 0
    pending: int = 0
    suppressed: int = 0
    failed: int = 0
    retrying: int = 0  # sends reserved whose last attempt failed: being retried now
    outcomes: dict[str, int] = field(default_factory=dict)  # outcome -> distinct runs


@dataclass(frozen=True)
class VariantStats:
    variant: str | None
    entered: int
    converted: int

    @property
    def conversion_rate(self) -> float:
        return self.converted / self.entered if self.entered else 0.0


@dataclass(frozen=True)
class JourneySummary:
    entered: int
    active: int
    refused: int
    converted: int
    outcomes: dict[str, int]


_KEPT_KINDS = ("nodes", "admitted", "summary")


def _key(kind: str, store: Store, journey_id: str, version: int | None) -> tuple[object, ...]:
    return (kind, id(store), store.url, journey_id, version)


def _kept(
    kind: str, store: Store, journey_id: str, version: int | None, count: Callable[[], T], quick: bool = False
) -> T:
    """``count()``, kept while it is expensive (``engine.count_cache``), on
    the store's shelf too (``engine.shelf``: shared by the API processes).
    ``quick``: a big journey's first count is waited for ``FIRST_WAIT``
    seconds only (``Counting`` then; it goes on in the background)."""
    encode, decode = _CODECS[kind]
    shelf = Shelf(store, journey_id, shelf_name(kind, journey_id, version), encode, decode)
    return COUNTS.get(
        _key(kind, store, journey_id, version),
        count,
        in_process=store.dialect == "sqlite",
        shelf=shelf,
        wait=(lambda: first_wait(store, journey_id)) if quick else None,
    )


def goal_attribution(store: Store, journey_id: str, version: int | None = None) -> goals.Attribution:
    """``engine.goals.attribute`` of the journey, kept while it is expensive
    like the counts: at 100k runs with a goal it took 125 ms of every
    journeys-list load and every stats call. Kept in this process only (a
    list of every conversion is too big for the shelf); a broadcast's
    attribution is not kept."""
    return COUNTS.get(
        _key("goals", store, journey_id, version),
        lambda: goals.attribute(store, journey_id, version),
        in_process=store.dialect == "sqlite",
    )


# A journey with this many runs takes seconds to count the first time (the
# 100k-run journey's first stats call: 3.6 s; 10k: ~0.2 s).
BIG_RUNS = 20_000
FIRST_WAIT = 0.15  # seconds a quick caller waits for a big journey's first count
_BIG: dict[tuple[int, str, str], tuple[bool, float]] = {}  # (store, journey) -> big?, when found (monotonic)
_BIG_FOR = 5.0  # seconds a journey's bigness is remembered (asked only while nothing is kept for it)


def first_wait(store: Store, journey_id: str) -> float | None:
    """``FIRST_WAIT`` for a big journey, None (wait until done) for any other."""
    return FIRST_WAIT if is_big(store, journey_id) else None


def is_big(store: Store, journey_id: str) -> bool:
    """Whether the journey has ``BIG_RUNS`` runs or more: an index read of at
    most that many entries (a few ms), remembered for a few seconds."""
    key = (id(store), store.url, journey_id)
    found = _BIG.get(key)
    if found is not None and time.monotonic() - found[1] < _BIG_FOR:
        return found[0]
    stmt = select(Run.journey_id).where(Run.journey_id == journey_id).offset(BIG_RUNS - 1).limit(1)
    with store.read() as s:
        big = s.scalar(stmt) is not None
    if len(_BIG) >= 1000:
        _BIG.clear()
    _BIG[key] = (big, time.monotonic())
    return big


def shelf_name(kind: str, journey_id: str, version: int | None, *more: str) -> str:
    """A kept count's name on the shelf, the same in every process."""
    return json.dumps([kind, journey_id, version, *more])


# How each kind of kept count goes to JSON and back.
_CODECS: dict[str, tuple[Callable[[Any], Any], Callable[[Any], Any]]] = {
    "nodes": (
        lambda counts: {node: dataclasses.asdict(c) for node, c in counts.items()},
        lambda found: {node: NodeStats(**c) for node, c in found.items()},
    ),
    "admitted": (
        lambda rows: [[variant, n] for variant, n in rows],
        lambda found: [(variant, int(n)) for variant, n in found],
    ),
    "summary": (dataclasses.asdict, lambda found: JourneySummary(**found)),
}
assert set(_CODECS) == set(_KEPT_KINDS)


def counts_age(store: Store, journey_id: str, version: int | None = None) -> float | None:
    """How many seconds old the oldest kept count of the journey is (a big
    journey's counts are retaken in the background); None: all are fresh."""
    return oldest(*(COUNTS.age(_key(kind, store, journey_id, version)) for kind in _KEPT_KINDS))


def oldest(*ages: float | None) -> float | None:
    """The oldest of the ages of kept counts (to 0.1 s); None: all fresh."""
    known = [a for a in ages if a is not None]
    return round(max(known), 1) if known else None


def node_counts_are_fresh(store: Store, journey_id: str, version: int | None = None) -> bool:
    """Whether the last ``node_counts`` answer was counted for it (not a kept
    count, which can be minutes behind a big journey)."""
    return COUNTS.age(_key("nodes", store, journey_id, version)) is None


def if_fresh(
    counts: dict[str, NodeStats], store: Store, journey_id: str, version: int | None = None
) -> dict[str, NodeStats] | None:
    """``counts`` (the last ``node_counts`` answer) when they were counted for
    it, else None: what ``engine.node_numbers.live_waiting`` may narrow its
    visibility counts by."""
    return counts if node_counts_are_fresh(store, journey_id, version) else None


def node_counts(
    store: Store, journey_id: str, version: int | None = None, *, quick: bool = False
) -> dict[str, NodeStats]:
    """Distinct runs per node and outcome, and deliveries per node by status.
    Reads every step record of the journey (10 s for 100k runs waiting on a
    loaded machine), so a count that slow is kept (``engine.count_cache``)."""
    return _kept("nodes", store, journey_id, version, lambda: _node_counts(store, journey_id, version), quick)


def _node_counts(store: Store, journey_id: str, version: int | None) -> dict[str, NodeStats]:
    with store.read() as s:
        out: dict[str, NodeStats] = {}

        def node(node_id: str) -> NodeStats:
            return out.setdefault(node_id, NodeStats(node_id=node_id))

        q = select(StepRecord.node_id, StepRecord.outcome, func.count(distinct(StepRecord.run_key))).where(
            StepRecord.journey_id == journey_id
        )
        entered_q = select(StepRecord.node_id, func.count(distinct(StepRecord.run_key))).where(
            StepRecord.journey_id == journey_id
        )
        errored = Delivery.last_error.is_not(None)
        dq = select(Delivery.node_id, Delivery.status, errored, func.count()).where(Delivery.journey_id == journey_id)
        if version is not None:
            q = q.where(StepRecord.version == version)
            entered_q = entered_q.where(StepRecord.version == version)
            dq = dq.where(Delivery.version == version)
        for node_id, outcome, n in s.execute(q.group_by(StepRecord.node_id, StepRecord.outcome)):
            stats = node(node_id)
            stats.outcomes[outcome] = int(n)
            if outcome in PASS_OUTCOMES:
                stats.passed += int(n)
            elif outcome == "waiting":
                stats.waiting += int(n)
        for node_id, n in s.execute(entered_q.group_by(StepRecord.node_id)):
            node(node_id).entered = int(n)
        for node_id, status, has_error, n in s.execute(dq.group_by(Delivery.node_id, Delivery.status, errored)):
            if node_id is None:
                continue
            stats = node(node_id)
            if status in ("sent", "pending", "suppressed", "failed"):
                setattr(stats, status, getattr(stats, status) + int(n))
            elif status == "reserved" and has_error:  # without an error it is simply in flight
                stats.retrying += int(n)
        return out


def variant_counts(store: Store, journey_id: str, version: int | None = None) -> list[VariantStats]:
    """Admitted runs and the interpreter's conversions (goal reached while the
    run was going) per split variant."""
    with store.read() as s:
        q = select(Run.variant, func.count(), func.count(Run.converted_at)).where(
            Run.journey_id == journey_id, Run.admitted.is_(True)
        )
        if version is not None:
            q = q.where(Run.version == version)
        rows = s.execute(q.group_by(Run.variant)).all()
        return sorted(
            (VariantStats(v, int(n), int(c)) for v, n, c in rows),
            key=lambda v: (v.variant is None, v.variant or ""),
        )


def goal_variant_counts(
    store: Store, journey_id: str, converted: dict[str | None, int], version: int | None = None
) -> list[VariantStats]:
    """Admitted runs per split variant beside ``converted`` (runs per variant
    that reached the goal, ``engine.goals.Attribution.per_variant``)."""
    return variants_beside(admitted_per_variant(store, journey_id, version), converted)


def admitted_per_variant(
    store: Store, journey_id: str, version: int | None = None, *, quick: bool = False
) -> list[tuple[str | None, int]]:
    """Admitted runs per split variant (kept when slow)."""
    return _kept(
        "admitted", store, journey_id, version, lambda: _admitted_per_variant(store, journey_id, version), quick
    )


def variants_beside(rows: list[tuple[str | None, int]], converted: dict[str | None, int]) -> list[VariantStats]:
    """``admitted_per_variant`` rows beside the runs per variant that
    reached the goal."""
    return sorted(
        (VariantStats(v, int(n), min(int(n), converted.get(v, 0))) for v, n in rows),
        key=lambda v: (v.variant is None, v.variant or ""),
    )


def _admitted_per_variant(store: Store, journey_id: str, version: int | None) -> list[tuple[str | None, int]]:
    with store.read() as s:
        q = select(Run.variant, func.count()).where(Run.journey_id == journey_id, Run.admitted.is_(True))
        if version is not None:
            q = q.where(Run.version == version)
        return [(v, int(n)) for v, n in s.execute(q.group_by(Run.variant))]


def events_after_entry(store: Store, journey_id: str, event: str, version: int | None = None) -> dict[str | None, int]:
    """Per split variant: how many ``event`` events the entered users did at
    or after entering (each event once per variant). Divided by the entries
    it is a referral campaign's "new users won / users reached" (``event`` =
    ``friend_joined``) or a package card's orders per recalled buyer."""
    with store.read() as s:
        after_entry = and_(Event.user_id == Run.user_id, Event.name == event, Event.occurred_at >= Run.entered_at)
        q = (
            select(Run.variant, func.count(distinct(Event.id)))
            .join(Event, after_entry)
            .where(Run.journey_id == journey_id, Run.admitted.is_(True))
        )
        if version is not None:
            q = q.where(Run.version == version)
        return {variant: int(n) for variant, n in s.execute(q.group_by(Run.variant))}


def journey_summary(
    store: Store, journey_id: str, version: int | None = None, *, quick: bool = False
) -> JourneySummary:
    """Runs entered, open, refused, converted and by outcome (kept when slow,
    ``engine.count_cache``: 0.6 s for 100k runs on a loaded machine)."""
    return _kept("summary", store, journey_id, version, lambda: _journey_summary(store, journey_id, version), quick)


def _journey_summary(store: Store, journey_id: str, version: int | None) -> JourneySummary:
    with store.read() as s:
        q = select(Run.admitted, Run.outcome, Run.ended_at.is_(None), func.count(), func.count(Run.converted_at)).where(
            Run.journey_id == journey_id
        )
        if version is not None:
            q = q.where(Run.version == version)
        entered = active = refused = converted = 0
        outcomes: dict[str, int] = {}
        for admitted, outcome, open_, n, conv in s.execute(
            q.group_by(Run.admitted, Run.outcome, Run.ended_at.is_(None))
        ):
            if not admitted:
                refused += int(n)
                continue
            entered += int(n)
            converted += int(conv)
            if open_:
                active += int(n)
            elif outcome:
                outcomes[outcome] = outcomes.get(outcome, 0) + int(n)
        return JourneySummary(entered, active, refused, converted, outcomes)


@dataclass(frozen=True)
class ClickCounts:
    clicks: int  # every counted click
    clicked: int  # distinct messages (per node) or runs (per variant) clicked at least once


def node_clicks(store: Store, journey_id: str, version: int | None = None) -> dict[str, ClickCounts]:
    """Per send node: clicks on its messages' tracked links, and how many of
    its messages were clicked (a click rate is that over the messages sent)."""
    q = select(LinkClick.node_id, func.count(), func.count(distinct(LinkClick.delivery_key))).where(
        LinkClick.journey_id == journey_id
    )
    if version is not None:
        q = q.where(LinkClick.version == version)
    with store.read() as s:
        rows = s.execute(q.group_by(LinkClick.node_id)).all()
    return {node: ClickCounts(int(n), int(d)) for node, n, d in rows}


def variant_clicks(store: Store, journey_id: str, version: int | None = None) -> dict[str | None, ClickCounts]:
    """Per split variant: clicks on the journey's tracked links, and how many
    runs clicked at least once (a click rate is that over the runs entered,
    beside the conversion rate)."""
    q = select(LinkClick.variant, func.count(), func.count(distinct(LinkClick.run_key))).where(
        LinkClick.journey_id == journey_id
    )
    if version is not None:
        q = q.where(LinkClick.version == version)
    with store.read() as s:
        rows = s.execute(q.group_by(LinkClick.variant)).all()
    return {variant: ClickCounts(int(n), int(r)) for variant, n, r in rows}
