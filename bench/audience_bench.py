"""Audience selection time at scale: the compiled SQL (``engine.audience_sql``)
against HEAD's before the facts rewrite, in the same run, over a seeded pool
(``bench/seed_pool.py``) on PostgreSQL.

Each condition selects about a tenth of the pool (100k of 1M), mixing stage,
RFM, event counts, reachability and attributes. Per condition it prints the
users matched, the full selection (every page, as a broadcast reads them) and
the first page, for:

- "after": ``engine.audience.select_page`` as it is (event facts from one
  grouped subquery per window of users);
- "before": the same two modules at ``--before`` (default 853032b: correlated
  ``max``/``min``/``count``/``sum`` per fact per row), loaded from git into
  this process; cut at ``--budget`` seconds per condition and extrapolated
  from the share of users scanned (marked ``~``);
- "per-user" (``--sample K``): the pre-SQL selection, a full snapshot per
  candidate, timed on K candidates and extrapolated.

    scripts/with-postgres .venv/bin/python bench/audience_bench.py --users 1000000

``--url`` with ``--reuse`` selects again from a pool seeded by an earlier run
(a server of your own: seeding 1M users takes ~4 minutes).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sqlalchemy import ColumnElement, and_, false, func, not_, or_, select, text, true  # noqa: E402

from bench.seed_pool import NOW, seed_pool  # noqa: E402
from contracts.broadcast import DEFAULT_PAGE_SIZE  # noqa: E402
from contracts.conditions import evaluate  # noqa: E402
from dsl.ir import AndCond, AudienceEntry, Cond, NotCond, OrCond, TagCond  # noqa: E402
from dsl.parser import parse  # noqa: E402
from engine import audience  # noqa: E402
from engine.activities import JourneyActivities  # noqa: E402
from engine.audience import full_snapshot_fn, needs_full_snapshot  # noqa: E402
from engine.audience_sql import has_tag  # noqa: E402
from engine.settings import Settings  # noqa: E402
from engine.store import Store  # noqa: E402
from engine.store.models import User  # noqa: E402

# About 10 % each of seed_pool's pool (measured at 50k users: 9-16 %).
CONDITIONS = [
    "stage is active and reachable sms",
    "stage is paying and rfm is high",
    'count order_paid within 90d >= 2 and user.grade != "普通"',
    'user.city in ["上海", "北京"] and stage is churned',
    "rfm is low and reachable sms",
    "tag vip or user.points >= 4800",
]
PAGE = DEFAULT_PAGE_SIZE  # users per page, as a broadcast selects them

PageFn = Callable[..., Any]


def where(source: str) -> Cond:
    journey = parse(f'journey "b"\n  entry audience where {source} every day at 10:00\n\n  send webhook "hi"\n')
    assert isinstance(journey.entry, AudienceEntry)
    return journey.entry.where


def before_select_page(rev: str) -> PageFn:
    """``select_page`` of ``engine/audience.py`` at ``rev``, over that rev's
    ``engine/audience_sql.py``: both loaded from git under other names."""

    def load(path: str, name: str, swap: tuple[str, str] | None = None) -> types.ModuleType:
        source = subprocess.run(
            ["git", "-C", str(ROOT), "show", f"{rev}:{path}"], check=True, capture_output=True, text=True
        ).stdout
        if swap:
            source = source.replace(*swap)
        module = types.ModuleType(name)
        sys.modules[name] = module  # dataclasses look their module up
        exec(compile(source, f"{rev}:{path}", "exec"), module.__dict__)
        return module

    load("engine/audience_sql.py", "_before_audience_sql")
    old = load("engine/audience.py", "_before_audience", ("from engine.audience_sql ", "from _before_audience_sql "))
    return old.select_page


def scan(
    store: Store, cond: Cond, settings: Settings, page_fn: PageFn, budget: float | None = None
) -> tuple[int, float, float, str | None, bool]:
    """(matched, seconds, first page seconds, last cursor, finished) paging as a broadcast does."""
    snap = full_snapshot_fn(JourneyActivities(store, {}, settings), cond, NOW) if needs_full_snapshot(cond) else None
    started = time.perf_counter()
    cursor, matched, first = None, 0, 0.0
    while True:
        page = page_fn(store, cond, after=cursor, limit=PAGE, snapshot=snap, now=NOW, rules=settings.derived)
        took = time.perf_counter() - started
        first = first or took
        matched += len(page.user_ids)
        cursor = page.cursor
        if page.done:
            return matched, took, first, cursor, True
        if budget is not None and took > budget:
            return matched, took, first, cursor, False


def old_upper(cond: Cond) -> ColumnElement[bool]:
    """The superset the per-user selection read from SQL: plain tags only."""
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


def per_user_estimate(store: Store, cond: Cond, settings: Settings, sample: int) -> float:
    """Extrapolated seconds for a full snapshot per candidate."""
    clause = and_(User.merged_into.is_(None), old_upper(cond))
    with store.read() as s:
        candidates = int(s.scalar(select(func.count()).select_from(User).where(clause)) or 0)
        ids = list(s.scalars(select(User.id).where(clause).order_by(User.id).limit(sample)))
    snap = full_snapshot_fn(JourneyActivities(store, {}, settings), cond, NOW)
    started = time.perf_counter()
    for uid in ids:
        evaluate(cond, snap(uid), None)
    return (time.perf_counter() - started) / max(len(ids), 1) * candidates


def share_scanned(store: Store, cursor: str | None, users: int) -> float:
    with store.read() as s:
        done = int(s.scalar(select(func.count()).select_from(User).where(User.id <= cursor)) or 0) if cursor else 0
    return max(done, 1) / users


def load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"load {one:.1f} {five:.1f} {fifteen:.1f}"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--url", default=os.environ.get("JOURNEYS_TEST_PG_URL"))
    parser.add_argument("--before", default="853032b", help="git rev of the compiler to compare against ('none': skip)")
    parser.add_argument("--budget", type=float, default=120.0, help="seconds per condition for 'before'")
    parser.add_argument("--sample", type=int, default=0, help="per-user baseline on K candidates (0: skip)")
    parser.add_argument("--only", type=int, nargs="*", help="indexes into CONDITIONS (default: all)")
    parser.add_argument("--reuse", action="store_true", help="select from the pool --url already holds (--users)")
    args = parser.parse_args()
    if not args.url:
        raise SystemExit("needs --url or JOURNEYS_TEST_PG_URL (scripts/with-postgres)")
    store = Store(args.url)
    store.migrate()
    with store.read() as s:
        present = int(s.scalar(select(func.count()).select_from(User)) or 0)
    if args.reuse and present == args.users:
        print(f"pool: {present} users already seeded at --url (--reuse); {load()}")
    else:
        if present:
            raise SystemExit(f"--url already holds {present} users: give an empty database, or --reuse that pool")
        started = time.perf_counter()
        rows = seed_pool(store, args.users)
        took = time.perf_counter() - started
        print(
            f"pool: {args.users} users, {rows} rows seeded in {took:.1f} s ({rows / max(took, 1e-9):,.0f} rows/s);"
            f" {load()}"
        )
    if store.dialect == "postgresql":
        with store.engine.connect() as conn:
            conn.execution_options(isolation_level="AUTOCOMMIT").execute(text("VACUUM ANALYZE"))
    settings = Settings()
    # "none": this compiler only (a schema change the older compiler cannot read, e.g. 0017's jsonb)
    before = None if args.before == "none" else before_select_page(args.before)
    print(f"{'condition':56} {'matched':>8} {'after s':>8} {'1st pg':>7} {'before s':>9} {'1st pg':>7} {'x':>5}  load")
    for source in [CONDITIONS[i] for i in args.only] if args.only else CONDITIONS:
        cond = where(source)
        matched, after_s, after_first, _, _ = scan(store, cond, settings, audience.select_page)
        if before is None:
            print(f"{source:56} {matched:8d} {after_s:8.2f} {after_first:7.3f}  {load()}")
            continue
        old_matched, before_s, before_first, cursor, finished = scan(store, cond, settings, before, args.budget)
        if finished:
            assert old_matched == matched, (source, old_matched, matched)
            shown = f"{before_s:9.2f}"
        else:
            before_s /= share_scanned(store, cursor, args.users)
            shown = f"~{before_s:8.0f}"
        print(
            f"{source:56} {matched:8d} {after_s:8.2f} {after_first:7.3f} {shown} {before_first:7.3f}"
            f" {before_s / max(after_s, 1e-9):5.1f}  {load()}"
        )
        if args.sample:
            print(
                f"  per-user snapshots, extrapolated from {args.sample}: {per_user_estimate(store, cond, settings, args.sample):.0f} s"
            )
    print("'~': before cut at --budget and extrapolated from the share of users scanned; machine shared (load above)")


if __name__ == "__main__":
    main()
