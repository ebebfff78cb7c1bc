"""User tags with their source, and the history of every change.

The ``tags`` table holds what a user carries now (one row per tag, so
conditions are a simple lookup); ``tag_history`` keeps each add and remove with
its source (``journey:<id>``, ``derived``, ``api``…) so a timeline can say who
tagged whom and when, even after the tag is gone. Every change also reaches
the user's running runs at once, as a ``tag_added`` / ``tag_removed`` event
(``engine.run_signals``: queued in the change's transaction, sent by whoever
holds a Temporal client, else swept).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import bindparam, delete, insert, select
from sqlalchemy.orm import Session

from engine import run_signals
from engine.store import Store
from engine.store.models import Tag, TagHistory
from engine.store.types import utc, utcnow

_TAGS = Tag.__table__
_TAGS_OF = select(_TAGS.c.tag).where(_TAGS.c.user_id == bindparam("uid")).order_by(_TAGS.c.tag)
_CARRIED = (
    select(_TAGS.c.tag)
    .where(_TAGS.c.user_id == bindparam("uid"), _TAGS.c.tag.in_(bindparam("tags", expanding=True)))
    .order_by(_TAGS.c.tag)
)
_DELETE = delete(_TAGS).where(_TAGS.c.user_id == bindparam("uid"), _TAGS.c.tag.in_(bindparam("tags", expanding=True)))
_INSERT_TAG = insert(_TAGS)
_INSERT_HISTORY = insert(TagHistory.__table__)


def tags_of(session: Session, user_id: str) -> list[str]:
    return list(session.scalars(_TAGS_OF, {"uid": user_id}))


def add_tags(
    session: Session, user_id: str, tags: Iterable[str], *, source: str, now: datetime | None = None
) -> list[str]:
    """Add tags the user does not carry yet; returns the ones actually added
    (re-adding is a no-op, so a retried activity writes no extra history)."""
    return _add(session, user_id, tags, set(tags_of(session, user_id)), source=source, now=now)


def _add(
    session: Session, user_id: str, tags: Iterable[str], current: set[str], *, source: str, now: datetime | None
) -> list[str]:
    stamp = utc(now) if now else utcnow()
    added = [tag for tag in dict.fromkeys(tags) if tag not in current]
    if added:
        session.execute(
            _INSERT_TAG, [{"user_id": user_id, "tag": t, "source": source, "added_at": stamp} for t in added]
        )
        _history(session, user_id, added, "add", source, stamp)
    return added


def _history(session: Session, user_id: str, tags: list[str], action: str, source: str, at: datetime) -> None:
    """Every change is kept, and heard by the user's open runs (``engine.run_signals``)."""
    session.execute(
        _INSERT_HISTORY, [{"user_id": user_id, "tag": t, "action": action, "source": source, "at": at} for t in tags]
    )
    change = {"added": tags} if action == "add" else {"removed": tags}
    run_signals.queue_tags(session, user_id, **change, source=source, now=at)


def remove_tags(
    session: Session, user_id: str, tags: Iterable[str], *, source: str, now: datetime | None = None
) -> list[str]:
    """Remove tags the user carries; returns the ones actually removed."""
    stamp = utc(now) if now else utcnow()
    wanted = sorted(set(tags))
    if not wanted:
        return []
    removed = list(session.scalars(_CARRIED, {"uid": user_id, "tags": wanted}))
    if removed:
        session.execute(_DELETE, {"uid": user_id, "tags": removed})
        _history(session, user_id, removed, "remove", source, stamp)
    return removed


@dataclass(frozen=True)
class TagChange:
    changed: list[str]  # the tags actually added or removed
    tags: list[str]  # what the user carries afterwards


def change_tags(store: Store, user_id: str, tags: list[str], *, source: str, add: bool) -> TagChange:
    """Add (or remove) tags in one transaction; what changed and what is
    carried now."""

    def work(s: Session) -> TagChange:
        changed = (add_tags if add else remove_tags)(s, user_id, tags, source=source)
        return TagChange(changed, tags_of(s, user_id))

    return store.transact(work)


def replace_prefixed(
    session: Session, user_id: str, prefix: str, tag: str | None, *, source: str, now: datetime | None = None
) -> None:
    """Keep exactly one tag with ``prefix`` (e.g. ``stage:``), used for derived tags."""
    replace_prefixes(session, user_id, {prefix: tag}, source=source, now=now)


def replace_prefixes(
    session: Session,
    user_id: str,
    wanted: Mapping[str, str | None],
    *,
    source: str,
    now: datetime | None = None,
) -> None:
    """``replace_prefixed`` for several prefixes (``{"stage:": "stage:new",
    "rfm:": None}``), in that order, reading the user's tags once."""
    carried = tags_of(session, user_id)
    for prefix, tag in wanted.items():
        current = [t for t in carried if t.startswith(prefix)]
        stale = [t for t in current if t != tag]
        if stale:
            remove_tags(session, user_id, stale, source=source, now=now)
        if tag is not None and tag not in current:
            _add(session, user_id, [tag], set(current), source=source, now=now)
