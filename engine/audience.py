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
   Stage, RFM and counts read per-user event facts from one grouped
   subquery bounded to a window of user ids (``audience_sql.Facts``), so a
   page costs one range scan of the window's events, not an aggregate per
   fact per user row.
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

import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from datetime import datetime

from sqlalchemy import (
    BindParameter,
    ColumnElement,
    Integer,
    Select,
    String,
    and_,
    bindparam,
    case,
    false,
    func,
    literal,
    not_,
    null,
    or_,
    select,
    true,
    type_coerce,
)
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
from dsl.render_text import describe_cond
from engine.audience_sql import CompileContext, FactNeeds, Facts, IdBound, compile_leaf, count_key
from engine.settings import DerivedRules
from engine.store import Store
from engine.store.models import Tag, User

DERIVED_PREFIXES = ("stage:", "rfm:")

SnapshotFn = Callable[[str], UserSnapshot]


@dataclass(frozen=True)
class Bounds:
    """SQL over ``users`` rows: ``lower`` ⊆ matches ⊆ ``upper``; ``exact`` when
    both are the same clause. ``sure``: ``lower`` for a row ``upper`` already
    holds for — a leaf that ``upper`` admits and that is not unsure holds, so
    under an ``and`` only the unsure parts are asked again (RFM and
    reachability spelt twice per candidate were a sixth of a window).
    ``facts``: the event aggregates they read, to be joined
    (:func:`live_users`), or ``None`` when they read none."""

    upper: ColumnElement[bool]
    lower: ColumnElement[bool]
    exact: bool
    sure: ColumnElement[bool]
    facts: Facts | None = None


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


def fact_needs(cond: Cond, ctx: CompileContext) -> FactNeeds:
    """The event aggregates the compiled leaves of ``cond`` read (stage, RFM
    and windowed counts only with ``now``: without it they stay unsure)."""
    stage = False
    layers: set[str] = set()
    counts: list[tuple[str, int | None]] = []
    for leaf in _leaves(cond):
        if isinstance(leaf, TagCond) and leaf.tag.startswith("stage:"):
            stage = True
        elif isinstance(leaf, TagCond) and leaf.tag.startswith("rfm:"):
            layers.add(leaf.tag[len("rfm:") :])
        elif isinstance(leaf, StageCond):
            stage = True
        elif isinstance(leaf, RfmCond):
            layers.update(leaf.layers)
        elif isinstance(leaf, EventCountCond) and count_key(leaf) not in counts:
            counts.append(count_key(leaf))
    if ctx.now is None:  # these stay unsure: nothing to read
        stage, layers = False, set()
        counts = [c for c in counts if c[1] is None]
    return FactNeeds(stage=stage, rfm=bool(layers), counts=tuple(counts), rfm_layers=frozenset(layers))


def sql_bounds(
    cond: Cond,
    context: CompileContext | None = None,
    *,
    after: IdBound | None = None,
    upto: IdBound | None = None,
) -> Bounds:
    """Compile ``cond`` to sound SQL bounds (see the module docstring); without
    a context, for SQLite and without ``now``. ``after``/``upto`` bound the
    event facts to users ``after < id <= upto`` (the caller reads only those)."""
    ctx = replace(context or CompileContext(dialect="sqlite"), after=after, upto=upto)
    needs = fact_needs(cond, ctx)
    facts = Facts(needs, ctx, after=after, upto=upto) if needs else None
    bounds = _bounds(cond, replace(ctx, facts=facts))
    return replace(bounds, facts=facts)


def _bounds(cond: Cond, ctx: CompileContext) -> Bounds:
    if isinstance(cond, AndCond):
        parts = [_bounds(c, ctx) for c in cond.operands]
        # ``upper`` of an ``and`` holds only where every part's does.
        return Bounds(
            and_(true(), *[p.upper for p in parts]),
            and_(true(), *[p.lower for p in parts]),
            all(p.exact for p in parts),
            and_(true(), *[p.sure for p in parts]),
        )
    if isinstance(cond, OrCond):  # one part's ``upper`` says nothing of the others'
        parts = [_bounds(c, ctx) for c in cond.operands]
        lower = or_(false(), *[p.lower for p in parts])
        exact = all(p.exact for p in parts)
        return Bounds(or_(false(), *[p.upper for p in parts]), lower, exact, true() if exact else lower)
    if isinstance(cond, NotCond):
        inner = _bounds(cond.operand, ctx)
        lower = not_(inner.upper)
        return Bounds(not_(inner.lower), lower, inner.exact, true() if inner.exact else lower)
    leaf = compile_leaf(cond, ctx)
    if leaf.unsure is None:
        return Bounds(leaf.expr, leaf.expr, True, true())
    # upper is ``expr OR unsure``: where it holds and ``unsure`` does not, ``expr`` does.
    return Bounds(or_(leaf.expr, leaf.unsure), and_(leaf.expr, not_(leaf.unsure)), False, not_(leaf.unsure))


def live_users(bounds: Bounds, *columns: ColumnElement) -> Select:
    """``SELECT columns`` over live (not merged-away) users, with the bounds'
    event facts joined; the caller adds ``bounds.upper`` or ``lower``."""
    users = User.__table__ if bounds.facts is None else bounds.facts.join(User.__table__)
    return select(*columns).select_from(users).where(User.merged_into.is_(None))


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


# Users per window of a fact-reading page: the first (and least), and the most
# one query aggregates (its hash table; fewer windows also plan less: ~1 ms
# each idle, 20 ms at load 20).
FIRST_WINDOW = 1000
MAX_WINDOW = 50_000
# The first window of a page, in users per candidate wanted: an audience of a
# tenth of the pool fills a page in one window, not two (each window plans
# and runs its own statement: 2-5 ms before any row). Overshooting costs
# little: the candidates plan streams by user id and stops at the LIMIT.
FIRST_LOOK = 16
# Users one page call looks at before it returns short (not done): keeps an
# activity's time bounded when an audience is sparse.
MAX_SCAN = 200_000


Row = tuple[str, dict | None, int]  # id, attributes, 1 when surely matching


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
    ctx = CompileContext(dialect=store.dialect, now=now, rules=rules)
    with store.read() as session:
        if not fact_needs(cond, ctx) and not _reads_rows_per_user(cond):
            # Attributes only: one query, LIMIT on the candidates.
            rows = _candidates(session, cond, ctx, after, None, limit)
            return _judged(store, cond, rows, after, done=len(rows) < limit, snapshot=snapshot)
        # Event facts, tags, reachability: window after window of users, each
        # with one grouped aggregate over that window's events and the tag and
        # identity lookups bounded to it, until ``limit`` candidates, the end,
        # or MAX_SCAN users scanned. Windows are sized from the density seen so
        # far: a window past the LIMIT is aggregated for nothing. One read
        # transaction for them all: a session per query was two more round
        # trips each (a pool ping and BEGIN), a sixth of a 1M-user selection.
        rows: list[Row] = []
        cursor, scanned, window = after, 0, min(MAX_WINDOW, max(FIRST_LOOK * limit, FIRST_WINDOW))
        while True:
            upto = _window_end(session, cursor, window)
            rows += _candidates(session, cond, ctx, cursor, upto, limit - len(rows))
            if len(rows) >= limit or upto is None:
                break
            cursor, scanned = upto, scanned + window
            window = _next_window(limit - len(rows), scanned, len(rows))
            if scanned >= MAX_SCAN:  # short, not done: the next page goes on after the last user looked at
                page = _judged(store, cond, rows, after, done=False, snapshot=snapshot)
                return AudiencePage(page.user_ids, upto, page.scanned, False)
    return _judged(store, cond, rows, after, done=len(rows) < limit, snapshot=snapshot)


def _reads_rows_per_user(cond: Cond) -> bool:
    """Whether the condition looks up tags or identities (``EXISTS``), which
    a window bounds."""
    return any(isinstance(leaf, (TagCond, ReachableCond)) for leaf in _leaves(cond))


def _next_window(needed: int, scanned: int, found: int) -> int:
    """Users to scan for ``needed`` more candidates at the density seen so far
    (a quarter more, so one window usually suffices); 4x when none yet."""
    if found == 0:
        return min(MAX_WINDOW, 4 * scanned)
    return max(FIRST_WINDOW, min(MAX_WINDOW, (needed * scanned * 5) // (found * 4)))


def _window_end(session: Session, after: str | None, window: int) -> str | None:
    """The id of the ``window``-th user after ``after`` (merged ones too: it is
    a range), or ``None`` when fewer remain: the window runs to the end."""
    stmt = select(User.id).order_by(User.id).offset(window - 1).limit(1)
    if after is not None:
        stmt = stmt.where(User.id > after)
    return session.scalar(stmt)


# The window and LIMIT of a candidates statement, bound at each execution.
_AFTER = bindparam("window_after", type_=String)
_UPTO = bindparam("window_upto", type_=String)
_LIMIT = bindparam("window_limit", type_=Integer)
# Candidates statements by condition, time, rules and which window ends they
# bind: a broadcast's hundreds of windows share four. Building one anew per
# window was a sixth of a 1M-user selection (a few ms of SQLAlchemy each).
# Pages of concurrent broadcasts select in threads: the lock keeps the
# eviction from racing another thread's insert.
_STATEMENTS: dict[tuple, Select] = {}
_STATEMENTS_LOCK = threading.Lock()
_MAX_STATEMENTS = 64


def _candidates(
    session: Session,
    cond: Cond,
    ctx: CompileContext,
    after: str | None,
    upto: str | None,
    limit: int,
) -> list[Row]:
    """Up to ``limit`` rows (id, attributes, surely-matches) of ``upper`` with
    ``after < id <= upto``, by id."""
    stmt = _candidates_statement(cond, ctx, below=after is not None, above=upto is not None)
    params = {"window_after": after, "window_upto": upto, "window_limit": limit}
    return [(r[0], r[1], r[2]) for r in session.execute(stmt, params)]


def _candidates_statement(cond: Cond, ctx: CompileContext, *, below: bool, above: bool) -> Select:
    rules = ctx.rules.model_dump_json() if ctx.rules is not None else None
    key = (cond.model_dump_json(), ctx.dialect, ctx.now, rules, below, above)
    stmt = _STATEMENTS.get(key)
    if stmt is None:
        after, upto = _AFTER if below else None, _UPTO if above else None
        # A condition of attributes alone has no facts or lookups to bound: the
        # window then only limits the rows.
        bounds = sql_bounds(cond, ctx, after=after, upto=upto)
        stmt = _build_candidates(bounds, after, upto)
        with _STATEMENTS_LOCK:
            while len(_STATEMENTS) >= _MAX_STATEMENTS:
                _STATEMENTS.pop(next(iter(_STATEMENTS)))  # the oldest
            _STATEMENTS[key] = stmt
    return stmt


def _build_candidates(bounds: Bounds, after: BindParameter | None, upto: BindParameter | None) -> Select:
    window = [*([User.id > after] if after is not None else []), *([User.id <= upto] if upto is not None else [])]
    if bounds.exact:  # every candidate surely matches: nothing to read for Python
        stmt = live_users(bounds, User.id, null(), literal(1)).where(bounds.upper, *window)
        return stmt.order_by(User.id).limit(_LIMIT)
    # ``lower`` once per row, below a LIMIT (PostgreSQL does not flatten a
    # LIMITed subquery): in the select list beside the attributes' CASE it was
    # evaluated twice more per candidate (RFM and reachability: 14 of a
    # window's 74 ms). Attributes are read only for rows Python must check
    # (decoding every candidate's JSON was a fifth of a 1M-user selection).
    sure = case((bounds.sure, 1), else_=0).label("sure")
    inner = live_users(bounds, User.id.label("id"), User.attributes.label("attributes"), sure)
    page = inner.where(bounds.upper, *window).order_by(User.id).limit(_LIMIT).subquery("page")
    unsure_only = type_coerce(case((page.c.sure == 1, null()), else_=page.c.attributes), User.attributes.type)
    return select(page.c.id, unsure_only, page.c.sure).order_by(page.c.id)


def _judged(
    store: Store,
    cond: Cond,
    rows: list[Row],
    after: str | None,
    *,
    done: bool,
    snapshot: SnapshotFn | None,
) -> AudiencePage:
    """The page of these candidate rows: the sure ones, and the unsure ones
    the evaluator matches (snapshots open their own sessions)."""
    cursor = rows[-1][0] if rows else after
    matched = {r[0] for r in rows if r[2]}
    unsure = [(r[0], r[1]) for r in rows if not r[2]]
    matched |= _matching(store, cond, unsure, snapshot)
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
    with store.read() as session:
        if bounds.exact:
            total = int(session.execute(live_users(bounds, func.count()).where(bounds.upper)).scalar_one())
            return AudienceCount(total, total, True, 0)
        surely = func.coalesce(func.sum(case((bounds.sure, 1), else_=0)), 0)
        upper, lower = session.execute(live_users(bounds, func.count(), surely).where(bounds.upper)).one()
    upper, lower = int(upper), int(lower)
    if upper == lower:
        return AudienceCount(upper, upper, True, 0)
    if upper - lower > max_checks:
        return AudienceCount(lower, upper, False, 0)
    matched, checked, after = 0, 0, None
    while True:
        stmt = live_users(bounds, User.id, User.attributes).where(bounds.upper, not_(bounds.sure))
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


def leaf_words(leaf: Cond) -> str:
    """A part of the condition in the operator's words (``tag vip``,
    ``stage in [silent, churned]``)."""
    return f"tag {leaf.tag}" if isinstance(leaf, TagCond) else describe_cond(leaf)


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
