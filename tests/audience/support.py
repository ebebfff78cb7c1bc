"""Helpers for audience tests: users with tags, attributes and events."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from contracts.activities import UserSnapshot
from contracts.conditions import evaluate
from dsl.ir import Cond
from engine import identity
from engine.activities import JourneyActivities
from engine.audience import full_snapshot_fn, needs_full_snapshot, select_page
from engine.events import ingest_event
from engine.settings import Settings
from engine.store import Store
from engine.store.models import User
from engine.tags import add_tags

NOW = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)


def make_user(
    store: Store,
    user_id: str,
    tags: Iterable[str] = (),
    attributes: Mapping[str, Any] | None = None,
    *,
    created_days_ago: int = 60,
    phone: str | None = None,
) -> str:
    def work(s: Session) -> str:
        uid = identity.ensure_user(s, user_id, now=NOW - timedelta(days=created_days_ago))
        if tags:
            add_tags(s, uid, list(tags), source="test", now=NOW - timedelta(days=created_days_ago))
        if attributes:
            identity.set_attributes(s, uid, attributes, now=NOW)
        if phone:
            identity.identify(s, {"phone": phone}, user_id=uid, now=NOW)
        return uid

    return store.transact(work)


def event(store: Store, user_id: str, name: str, days_ago: float, *, ingest_days_ago: float | None = None, **props):
    """An event ``days_ago`` before NOW; its derived stage is stored as of
    ``ingest_days_ago`` (default: when it happened), so it can be stale at NOW."""
    at = NOW - timedelta(days=days_ago)
    seen = NOW - timedelta(days=ingest_days_ago) if ingest_days_ago is not None else at
    return ingest_event(
        store,
        event_id=f"{user_id}:{name}:{days_ago}",
        name=name,
        user_id=user_id,
        properties=props,
        occurred_at=at,
        now=seen,
    )


def scan_all(store: Store, cond: Cond, page_size: int, now: datetime = NOW) -> tuple[list[str], int]:
    """Every matching user id across pages, and the number of pages."""
    snap = full_snapshot_fn(JourneyActivities(store, {}, Settings()), cond, now) if needs_full_snapshot(cond) else None
    out: list[str] = []
    cursor: str | None = None
    pages = 0
    while True:
        page = select_page(store, cond, after=cursor, limit=page_size, snapshot=snap, now=now, rules=Settings().derived)
        pages += 1
        out.extend(page.user_ids)
        cursor = page.cursor
        if page.done:
            return out, pages


def brute_force(
    store: Store, cond: Cond, now: datetime = NOW, cache: dict[str, UserSnapshot] | None = None
) -> list[str]:
    """The reference: every live user whose full snapshot satisfies ``cond``
    (``cache`` reuses snapshots across conditions without event counts)."""
    snap = full_snapshot_fn(JourneyActivities(store, {}, Settings()), cond, now)
    cache = {} if cache is None else cache
    with store.read() as s:
        ids = sorted(s.scalars(select(User.id).where(User.merged_into.is_(None))))
    out = []
    for u in ids:
        if u not in cache:
            cache[u] = snap(u)
        if evaluate(cond, cache[u], None):
            out.append(u)
    return out
