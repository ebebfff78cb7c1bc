"""Frequency caps: how many marketing messages one user may get.

Caps are global across all journeys (``Settings.cap_per_day`` / ``cap_per_week``,
per channel in ``Settings.channel_caps``) plus the journey's own
``limit N messages per W`` carried in the send request. Windows slide back
from the request's ``now`` (workflow time), so caps behave the same under
time-skipping tests and replays as in production.

Atomicity: check and count happen in one write transaction under a per-user
lock (SQLite: the write transaction itself; PostgreSQL: an advisory lock), and
each counted send is one ``cap_usage`` row keyed by the delivery's idempotency
key, so two journeys racing for the user's last slot cannot both win, and a
retried send never counts twice. Transactional templates (order confirmations,
verification codes) are exempt and not counted. Channels in
``cap_exempt_channels`` (webhooks to the brand's own systems) are counted only
toward the journey's own limit.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import lru_cache
from typing import Any

from sqlalchemy import bindparam, delete, func, insert, select
from sqlalchemy.orm import Session

from engine.settings import Settings
from engine.store import Store
from engine.store.models import CapUsage
from engine.store.types import utc

DAY = timedelta(days=1)
WEEK = timedelta(days=7)

_USAGE = CapUsage.__table__
_COUNTED = select(_USAGE.c.id).where(_USAGE.c.delivery_key == bindparam("key"))
_INSERT = insert(_USAGE)
_RELEASE = delete(_USAGE).where(_USAGE.c.delivery_key == bindparam("key"))


@dataclass(frozen=True)
class CapRequest:
    user_id: str
    channel: str
    delivery_key: str
    now: datetime
    journey_id: str | None = None
    transactional: bool = False
    journey_limit_count: int | None = None
    journey_limit_window_seconds: int | None = None


def _count(
    session: Session,
    user_id: str,
    since: datetime,
    *,
    channel: str | None = None,
    journey_id: str | None = None,
    exclude: list[str] | None = None,
) -> int:
    stmt = _count_query(channel is not None, journey_id is not None, bool(exclude))
    params = {"uid": user_id, "since": since, "channel": channel, "journey_id": journey_id, "exclude": exclude}
    return int(session.execute(stmt, params).scalar_one())


@lru_cache(maxsize=8)
def _count_query(by_channel: bool, by_journey: bool, excluding: bool) -> Any:
    """Counted sends since a time, built once per shape (every send asks)."""
    q = select(func.count()).select_from(_USAGE).where(_USAGE.c.user_id == bindparam("uid"))
    q = q.where(_USAGE.c.at > bindparam("since"))
    if by_channel:
        q = q.where(_USAGE.c.channel == bindparam("channel"))
    if by_journey:
        q = q.where(_USAGE.c.journey_id == bindparam("journey_id"))
    if excluding:
        q = q.where(_USAGE.c.channel.not_in(bindparam("exclude", expanding=True)))
    return q


def check_and_count(session: Session, store: Store, settings: Settings, req: CapRequest) -> str | None:
    """Count this send against the user's caps, or return why it may not go.

    Must run in a write transaction; ``None`` means allowed and counted.
    """
    if req.transactional:
        return None
    store.lock(session, f"caps:{req.user_id}")
    if session.execute(_COUNTED, {"key": req.delivery_key}).first() is not None:
        return None  # this very send was counted by an earlier attempt
    now = utc(req.now)
    exempt = req.channel in settings.cap_exempt_channels

    if req.journey_limit_count is not None and req.journey_limit_window_seconds:
        window = timedelta(seconds=req.journey_limit_window_seconds)
        used = _count(session, req.user_id, now - window, journey_id=req.journey_id)
        if used >= req.journey_limit_count:
            return f"frequency cap: journey limit {req.journey_limit_count} per {_fmt(window)} reached ({used} sent)"

    if not exempt:
        skip = list(settings.cap_exempt_channels)
        for limit, window, label in ((settings.cap_per_day, DAY, "day"), (settings.cap_per_week, WEEK, "week")):
            if limit is None:
                continue
            used = _count(session, req.user_id, now - window, exclude=skip)
            if used >= limit:
                return f"frequency cap: {limit} messages per {label} reached ({used} sent)"
        channel_cap = settings.channel_caps.get(req.channel)
        if channel_cap is not None:
            for limit, window, label in ((channel_cap.per_day, DAY, "day"), (channel_cap.per_week, WEEK, "week")):
                if limit is None:
                    continue
                used = _count(session, req.user_id, now - window, channel=req.channel)
                if used >= limit:
                    return f"frequency cap: {limit} {req.channel} messages per {label} reached ({used} sent)"

    session.execute(
        _INSERT,
        {
            "delivery_key": req.delivery_key,
            "user_id": req.user_id,
            "channel": req.channel,
            "journey_id": req.journey_id,
            "at": now,
        },
    )
    return None


def release(session: Session, delivery_key: str) -> None:
    """Give the slot back: the send it was counted for failed."""
    session.execute(_RELEASE, {"key": delivery_key})


def _fmt(window: timedelta) -> str:
    seconds = int(window.total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"
