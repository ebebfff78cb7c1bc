"""Who a tag-audience entry selects: ``entry audience where <cond> ...``.

The broadcast (``workflows.broadcast``) walks the user table in pages with
keyset pagination on ``users.id`` (stable under inserts, O(page) per step, and
the last id scanned is a cursor that survives a crash). A user matches exactly
when ``contracts.conditions.evaluate`` says so on the user's snapshot: the same
semantics as an ``if`` inside a journey, so an operator never sees the audience
and the journey disagree about who is a VIP.

Cost is kept down in two layers:

1. The condition is translated to SQL *bounds* (:func:`sql_bounds`): ``upper``
   is true for every user that may match (a superset), ``lower`` only for users
   that surely match (a subset). Plain tags translate exactly (``EXISTS`` on
   ``tags``); anything SQL cannot answer exactly (lifecycle stage and RFM, which
   depend on *now*; attribute comparisons with their number/string coercion;
   event counts; reachability) is ``TRUE`` in ``upper`` and ``FALSE`` in
   ``lower`` — flipped under ``not`` — so the bounds stay sound for any nesting.
   ``tag vip and stage is silent`` thus reads only VIPs from the database.
2. Candidates between the bounds are checked in Python: with the tags and
   attributes of the page (two queries per page) when the condition needs no
   more, else with the full per-user snapshot of ``engine.activities`` (derived
   stage/RFM at ``now``, event counts, reachability).

Merged-away users (``merged_into`` set) are never selected: their survivor is.

Phone de-duplication (SCENARIOS #11, "one SMS per person") needs nothing here:
a phone is an identity, identities are unique per (kind, value), so two users
never share a phone — ingesting one phone for two ids merges them
(``engine.identity``) — and a selected user gets at most one run per broadcast.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import ColumnElement, and_, case, exists, false, not_, or_, select, true
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


def _has_tag(tag: str) -> ColumnElement[bool]:
    return exists().where(Tag.user_id == User.id, Tag.tag == tag)


def sql_bounds(cond: Cond) -> Bounds:
    """Translate ``cond`` to sound SQL bounds (see the module docstring)."""
    if isinstance(cond, TagCond) and not cond.tag.startswith(DERIVED_PREFIXES):
        clause = _has_tag(cond.tag)
        return Bounds(clause, clause, True)
    if isinstance(cond, AndCond):
        parts = [sql_bounds(c) for c in cond.operands]
        return Bounds(
            and_(true(), *[p.upper for p in parts]),
            and_(true(), *[p.lower for p in parts]),
            all(p.exact for p in parts),
        )
    if isinstance(cond, OrCond):
        parts = [sql_bounds(c) for c in cond.operands]
        return Bounds(
            or_(false(), *[p.upper for p in parts]),
            or_(false(), *[p.lower for p in parts]),
            all(p.exact for p in parts),
        )
    if isinstance(cond, NotCond):
        inner = sql_bounds(cond.operand)
        return Bounds(not_(inner.lower), not_(inner.upper), inner.exact)
    # stage/rfm/derived tags, attribute or event comparisons, counts, reachability
    return Bounds(true(), false(), False)


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
) -> AudiencePage:
    """Scan up to ``limit`` candidate users after ``after`` and return those the
    condition matches. ``snapshot(user_id)`` gives the full snapshot (at the
    broadcast's *now*, with ``count_queries(cond)``) for conditions that need
    one; see :func:`full_snapshot_fn`."""
    if limit <= 0:
        raise ValueError("limit must be positive")
    bounds = sql_bounds(cond)
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
