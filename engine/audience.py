"""Who a tag-audience entry selects: ``entry audience where <cond> ...``.

The broadcast (``workflows.broadcast``) walks the user table in pages with
keyset pagination on ``users.id`` (stable under inserts, O(page) per step, and
the last id scanned is a cursor that survives a crash). A user matches exactly
when ``contracts.conditions.evaluate`` says so on the user's snapshot: the same
semantics as an ``if`` inside a journey, so an operator never sees the audience
and the journey disagree about who is a VIP.

Cost is kept down in two layers:

1. The condition is compiled to SQL *bounds* (:func:`sql_bounds`): ``upper``
   is true for every user that may match (a superset), ``lower`` only for users
   that surely match (a subset). Each leaf compiles in ``engine.audience_sql``:
   tags, attribute comparisons, lifecycle stage and RFM at ``now``, event
   counts with windows and reachability all decide almost every row there;
   the rows a leaf cannot decide (an attribute string Python may parse as a
   float, an amount stored as a string, ...) are ``TRUE`` in ``upper`` and
   ``FALSE`` in ``lower`` — flipped under ``not`` — so the bounds stay sound
   for any nesting. When nothing is unsure, ``upper`` *is* the answer.
2. Candidates between the bounds are checked in Python: with the tags and
   attributes of the page (two queries per page) when the condition needs no
   more, else with the full per-user snapshot of ``engine.activities`` (derived
   stage/RFM at ``now``, event counts, reachability; about 10 ms a user).

Without ``now``, stage, RFM and windowed counts are unsure for every row (all
of them checked in Python), as before they were compiled.

Merged-away users (``merged_into`` set) are never selected: their survivor is.

Before a broadcast, a preview (:func:`count_audience`, :func:`sample_audience`,
:func:`explain`) says how many users the audience selects now and who, from
the very same bounds and page selection, reading only.

Phone de-duplication (SCENARIOS #11, "one SMS per person") needs nothing here:
a phone is an identity, identities are unique per (kind, value), so two users
never share a phone — ingesting one phone for two ids merges them
(``engine.identity``) — and a selected user gets at most one run per broadcast.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import ColumnElement, and_, case, false, func, not_, or_, select, true
from sqlalchemy.orm import Session

from contracts.activities import UserSnapshot
from contracts.conditions import count_queries, evaluate
from dsl.ir import (
    AndCond,
    Cond,
    EventCountCond,
    NotCond,
    OrCond,
    ReachableCond,
    RfmCond,
    StageCond,
    TagCond,
)
from engine.audience_sql import CompileContext, compile_leaf
from engine.settings import DerivedRules
from engine.store import Store
from engine.store.models import Tag, User

DERIVED_PREFIXES = ("stage:", "rfm:")

SnapshotFn = Callable[[str], UserSnapshot]


@dataclass(frozen=True)
class Bounds:
    """SQL over ``users`` rows: ``lower`` ⊆ matches ⊆ ``upper``; ``exact`` when
    both are the same clause."""

    upper: ColumnElement[bool]
    lower: ColumnElement[bool]
    exact: bool


@dataclass(frozen=True)
class AudiencePage:
    """One page of a scan. ``cursor`` is the last user id *scanned* (matched or
    not), so the next page starts after it; ``done`` when the scan reached the
    end. A page may match nobody and still not be the last."""

    user_ids: list[str]
    cursor: str | None
    scanned: int
    done: bool


def _leaves(cond: Cond) -> Iterator[Cond]:
    if isinstance(cond, (AndCond, OrCond)):
        for c in cond.operands:
            yield from _leaves(c)
    elif isinstance(cond, NotCond):
        yield from _leaves(cond.operand)
    else:
        yield cond


def sql_bounds(cond: Cond, context: CompileContext | None = None) -> Bounds:
    """Compile ``cond`` to sound SQL bounds (see the module docstring); without
    a context, for SQLite and without ``now``."""
    ctx = context or CompileContext(dialect="sqlite")
    if isinstance(cond, AndCond):
        parts = [sql_bounds(c, ctx) for c in cond.operands]
        return Bounds(
            and_(true(), *[p.upper for p in parts]),
            and_(true(), *[p.lower for p in parts]),
            all(p.exact for p in parts),
        )
    if isinstance(cond, OrCond):
        parts = [sql_bounds(c, ctx) for c in cond.operands]
        return Bounds(
            or_(false(), *[p.upper for p in parts]),
            or_(false(), *[p.lower for p in parts]),
            all(p.exact for p in parts),
        )
    if isinstance(cond, NotCond):
        inner = sql_bounds(cond.operand, ctx)
        return Bounds(not_(inner.lower), not_(inner.upper), inner.exact)
    leaf = compile_leaf(cond, ctx)
    if leaf.unsure is None:
        return Bounds(leaf.expr, leaf.expr, True)
    return Bounds(or_(leaf.expr, leaf.unsure), and_(leaf.expr, not_(leaf.unsure)), False)


def needs_full_snapshot(cond: Cond) -> bool:
    """Whether checking a candidate needs more than its tags and attributes."""
    for leaf in _leaves(cond):
        if isinstance(leaf, (StageCond, RfmCond, EventCountCond, ReachableCond)):
            return True
        if isinstance(leaf, TagCond) and leaf.tag.startswith(DERIVED_PREFIXES):
            return True
    return False


def _page_tags(session: Session, user_ids: list[str]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {u: [] for u in user_ids}
    rows = session.execute(select(Tag.user_id, Tag.tag).where(Tag.user_id.in_(user_ids)))
    for user_id, tag in rows:
        if not tag.startswith(DERIVED_PREFIXES):  # as in the full snapshot
            out[user_id].append(tag)
    return out


def select_page(
    store: Store,
    cond: Cond,
    *,
    after: str | None,
    limit: int,
    snapshot: SnapshotFn | None = None,
    now: datetime | None = None,
    rules: DerivedRules | None = None,
) -> AudiencePage:
    """Scan up to ``limit`` candidate users after ``after`` and return those the
    condition matches. ``snapshot(user_id)`` gives the full snapshot (at the
    broadcast's *now*, with ``count_queries(cond)``) for conditions that need
    one; see :func:`full_snapshot_fn`. ``now`` and ``rules`` must be the ones
    the snapshot judges with, so SQL and snapshot agree on stage and windows."""
    if limit <= 0:
        raise ValueError("limit must be positive")
    bounds = sql_bounds(cond, CompileContext(dialect=store.dialect, now=now, rules=rules))
    stmt = (
        select(User.id, User.attributes, case((bounds.lower, 1), else_=0))
        .where(User.merged_into.is_(None), bounds.upper)
        .order_by(User.id)
        .limit(limit)
    )
    if after is not None:
        stmt = stmt.where(User.id > after)
    with store.read() as session:
        rows = session.execute(stmt).all()
    cursor = rows[-1][0] if rows else after
    done = len(rows) < limit
    if bounds.exact:
        return AudiencePage([r[0] for r in rows], cursor, len(rows), done)
    unsure = [r for r in rows if not r[2]]
    matched = {r[0] for r in rows if r[2]}
    # Snapshots open their own sessions: the page's read session is closed by now.
    if unsure:
        if needs_full_snapshot(cond):
            if snapshot is None:
                raise ValueError("this condition needs a snapshot function (stage, RFM, counts or reachability)")
            matched.update(r[0] for r in unsure if evaluate(cond, snapshot(r[0]), None))
        else:
            with store.read() as session:
                tags = _page_tags(session, [r[0] for r in unsure])
            for user_id, attributes, _ in unsure:
                light = UserSnapshot(user_id=user_id, tags=tags[user_id], attributes=dict(attributes or {}))
                if evaluate(cond, light, None):
                    matched.add(user_id)
    return AudiencePage([r[0] for r in rows if r[0] in matched], cursor, len(rows), done)


def full_snapshot_fn(activities: object, cond: Cond, now: datetime) -> SnapshotFn:
    """Per-user snapshots from ``JourneyActivities`` — the very code a running
    journey's ``if`` reads through — so audience and journey agree on derived
    stage/RFM at ``now``, event counts and reachability."""
    from contracts.activities import UserSnapshotRequest
    from engine.activities import JourneyActivities

    assert isinstance(activities, JourneyActivities)
    queries = count_queries(cond)

    def snap(user_id: str) -> UserSnapshot:
        return activities._snapshot(UserSnapshotRequest(user_id=user_id, now=now, event_counts=queries))

    return snap


# ---------------------------------------------------------------- previews (read only)


@dataclass(frozen=True)
class AudienceCount:
    """How many users the audience selects at ``now``, without starting
    anything. ``count`` is exact when ``exact``; else more candidates were
    undecided by SQL than the preview may check one by one (``max_checks``),
    and the answer is a range: ``count`` surely match, at most ``at_most``
    do. ``checked`` is how many were checked in Python."""

    count: int
    at_most: int
    exact: bool
    checked: int


def _matching(store: Store, cond: Cond, rows: list[tuple[str, dict | None]], snapshot: SnapshotFn | None) -> set[str]:
    """Which of these candidate rows (id, attributes) the condition matches,
    judged as :func:`select_page` judges its unsure rows."""
    if not rows:
        return set()
    if needs_full_snapshot(cond):
        if snapshot is None:
            raise ValueError("this condition needs a snapshot function (stage, RFM, counts or reachability)")
        return {uid for uid, _ in rows if evaluate(cond, snapshot(uid), None)}
    with store.read() as session:
        tags = _page_tags(session, [uid for uid, _ in rows])
    return {
        uid
        for uid, attributes in rows
        if evaluate(cond, UserSnapshot(user_id=uid, tags=tags[uid], attributes=dict(attributes or {})), None)
    }


def count_audience(
    store: Store,
    cond: Cond,
    *,
    now: datetime,
    rules: DerivedRules | None = None,
    snapshot: SnapshotFn | None = None,
    max_checks: int = 1000,
    page: int = 500,
) -> AudienceCount:
    """The audience's size at ``now`` from the same SQL bounds a broadcast
    pages with: one ``COUNT`` when the bounds are exact (nearly always);
    else the rows between them checked in Python in pages (by ``snapshot``
    when the condition needs one), as long as there are no more than
    ``max_checks`` of them — a preview must answer in seconds, and beyond
    that it says the range instead of snapshotting thousands of users."""
    if max_checks < 0 or page <= 0:
        raise ValueError("max_checks must be >= 0 and page positive")
    bounds = sql_bounds(cond, CompileContext(dialect=store.dialect, now=now, rules=rules))
    live = User.merged_into.is_(None)
    with store.read() as session:
        if bounds.exact:
            total = int(session.execute(select(func.count()).select_from(User).where(live, bounds.upper)).scalar_one())
            return AudienceCount(total, total, True, 0)
        surely = func.coalesce(func.sum(case((bounds.lower, 1), else_=0)), 0)
        upper, lower = session.execute(select(func.count(), surely).select_from(User).where(live, bounds.upper)).one()
    upper, lower = int(upper), int(lower)
    if upper == lower:
        return AudienceCount(upper, upper, True, 0)
    if upper - lower > max_checks:
        return AudienceCount(lower, upper, False, 0)
    matched, checked, after = 0, 0, None
    while True:
        stmt = select(User.id, User.attributes).where(live, bounds.upper, not_(bounds.lower))
        if after is not None:
            stmt = stmt.where(User.id > after)
        with store.read() as session:
            rows = [(r[0], r[1]) for r in session.execute(stmt.order_by(User.id).limit(page))]
        matched += len(_matching(store, cond, rows, snapshot))
        checked += len(rows)
        if len(rows) < page:
            break
        after = rows[-1][0]
    return AudienceCount(lower + matched, lower + matched, True, checked)


def sample_audience(
    store: Store,
    cond: Cond,
    *,
    now: datetime,
    size: int,
    rules: DerivedRules | None = None,
    snapshot: SnapshotFn | None = None,
    max_scan: int = 2000,
) -> list[str]:
    """The first ``size`` users (by id) the audience selects at ``now``:
    :func:`select_page` itself, the broadcast's own selection, page after
    page until ``size`` matched, the end, or ``max_scan`` candidates
    scanned (a sample may come out short when most candidates were unsure
    and did not match)."""
    if size <= 0 or max_scan <= 0:
        raise ValueError("size and max_scan must be positive")
    found: list[str] = []
    after: str | None = None
    scanned = 0
    while len(found) < size and scanned < max_scan:
        limit = min(max(2 * size, 50), max_scan - scanned)
        got = select_page(store, cond, after=after, limit=limit, snapshot=snapshot, now=now, rules=rules)
        found += got.user_ids
        scanned += got.scanned
        after = got.cursor
        if got.done:
            break
    return found[:size]


def explain(cond: Cond, snapshot: UserSnapshot) -> list[tuple[Cond, bool]]:
    """Each leaf of the condition (once, in text order) and whether it holds
    for the user: why a user is (or is not) in the audience, in the terms
    the operator wrote (``tag vip`` yes, ``tag blocked`` no under a
    ``not``)."""
    seen: list[Cond] = []
    for leaf in _leaves(cond):
        if leaf not in seen:
            seen.append(leaf)
    return [(leaf, evaluate(leaf, snapshot, None)) for leaf in seen]
