"""Audience selection time: the compiled SQL (``engine.audience_sql``) against
the per-user Python check it replaced, in the same run, over a seeded pool
(``bench/seed_pool.py``) on PostgreSQL.

"new" scans every page with ``select_page`` as a broadcast does (SQL, then
Python for the rows SQL leaves unsure). "old" is what the selection did
before: only plain tags in SQL, then a full snapshot (``JourneyActivities``)
per remaining candidate; it is timed on a subsample of those candidates and
extrapolated to all of them (printed as such), since it runs ~10 ms a user.

    scripts/with-postgres .venv/bin/python bench/audience_bench.py [--users N] [--sample K]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sqlalchemy import ColumnElement, and_, false, func, not_, or_, select, text, true  # noqa: E402

from bench.seed_pool import NOW, seed_pool  # noqa: E402
from contracts.conditions import evaluate  # noqa: E402
from dsl.ir import AndCond, AudienceEntry, Cond, NotCond, OrCond, TagCond  # noqa: E402
from dsl.parser import parse  # noqa: E402
from engine.activities import JourneyActivities  # noqa: E402
from engine.audience import full_snapshot_fn, needs_full_snapshot, select_page  # noqa: E402
from engine.audience_sql import has_tag  # noqa: E402
from engine.settings import Settings  # noqa: E402
from engine.store import Store  # noqa: E402
from engine.store.models import User  # noqa: E402

CONDITIONS = [
    "tag vip and stage in [silent, churned]",
    "stage is paying and rfm is high",
    "count order_paid within 30d >= 2 and reachable sms",
    'user.city == "上海" and user.grade != "普通" and stage is active',
    "not tag vip and count viewed_product within 7d == 0",
    "user.points >= 4000 or rfm in [high, mid]",
]
PAGE = 1000


def where(source: str) -> Cond:
    journey = parse(f'journey "b"\n  entry audience where {source} every day at 10:00\n\n  send webhook "hi"\n')
    assert isinstance(journey.entry, AudienceEntry)
    return journey.entry.where


def old_upper(cond: Cond) -> ColumnElement[bool]:
    """The superset the old selection read from SQL: plain tags only."""
    if isinstance(cond, TagCond) and not cond.tag.startswith(("stage:", "rfm:")):
        return has_tag(cond.tag)
    if isinstance(cond, AndCond):
        return and_(true(), *[old_upper(c) for c in cond.operands])
    if isinstance(cond, OrCond):
        return or_(false(), *[old_upper(c) for c in cond.operands])
    if isinstance(cond, NotCond):
        inner = cond.operand
        exact = isinstance(inner, TagCond) and not inner.tag.startswith(("stage:", "rfm:"))
        return not_(old_upper(inner)) if exact else true()
    return true()


def new_scan(store: Store, cond: Cond, settings: Settings) -> tuple[int, float]:
    acts = JourneyActivities(store, {}, settings)
    snap = full_snapshot_fn(acts, cond, NOW) if needs_full_snapshot(cond) else None
    started = time.perf_counter()
    cursor, matched = None, 0
    while True:
        page = select_page(store, cond, after=cursor, limit=PAGE, snapshot=snap, now=NOW, rules=settings.derived)
        matched += len(page.user_ids)
        cursor = page.cursor
        if page.done:
            return matched, time.perf_counter() - started


def old_estimate(store: Store, cond: Cond, settings: Settings, sample: int) -> tuple[int, float, float]:
    """(candidates, seconds for the sample, extrapolated seconds for all)."""
    clause = and_(User.merged_into.is_(None), old_upper(cond))
    with store.read() as s:
        candidates = int(s.scalar(select(func.count()).select_from(User).where(clause)) or 0)
        ids = list(s.scalars(select(User.id).where(clause).order_by(User.id).limit(sample)))
    snap = full_snapshot_fn(JourneyActivities(store, {}, settings), cond, NOW)
    started = time.perf_counter()
    for uid in ids:
        evaluate(cond, snap(uid), None)
    took = time.perf_counter() - started
    return candidates, took, took / max(len(ids), 1) * candidates


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--sample", type=int, default=300)
    parser.add_argument("--url", default=os.environ.get("JOURNEYS_TEST_PG_URL"))
    args = parser.parse_args()
    if not args.url:
        raise SystemExit("needs --url or JOURNEYS_TEST_PG_URL (scripts/with-postgres)")
    store = Store(args.url)
    store.migrate()
    started = time.perf_counter()
    rows = seed_pool(store, args.users)
    print(f"pool: {args.users} users, {rows} rows seeded in {time.perf_counter() - started:.1f} s")
    if store.dialect == "postgresql":
        with store.engine.begin() as conn:
            conn.execute(text("ANALYZE"))
    settings = Settings()
    print(f"{'condition':66} {'matched':>8} {'new s':>7} {'old cand':>8} {'old s (extrap.)':>16} {'x':>6}")
    for source in CONDITIONS:
        cond = where(source)
        matched, new_s = new_scan(store, cond, settings)
        candidates, _, old_s = old_estimate(store, cond, settings, args.sample)
        print(f"{source:66} {matched:8d} {new_s:7.2f} {candidates:8d} {old_s:16.1f} {old_s / max(new_s, 1e-9):6.0f}")
    print(f"old: full snapshot per candidate on a subsample of {args.sample}, extrapolated; machine shared and loaded")


if __name__ == "__main__":
    main()
