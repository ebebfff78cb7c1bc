"""Frequency caps: how many marketing messages one user may get.

Caps are global across all journeys (``Settings.cap_per_day`` / ``cap_per_week``,
per channel in ``Settings.channel_caps``) plus the journey's own
``limit N messages per W`` carried in the send request. Windows are read
from the request's ``now`` (workflow time), so caps behave the same under
time-skipping tests and replays as in production: a sliding window reaches
back W from ``now``; a calendar one (``limit N per day`` / ``per week``, and
the global caps with ``Settings.cap_calendar``) starts at the user's local
midnight / Monday 00:00 (else the journey's timezone).

A denial says when the cap will next allow a message (``Denial.retry_at``:
when the oldest counted send leaves a sliding window, or the next calendar
boundary), which is what ``on capped defer`` sleeps until.

Priority (``arbitrate``): when the caps leave a user room for exactly one
more message and a live journey of a better priority exists, the send
claims the slot and waits ``cap_arbitration_seconds`` before taking it; the
best claim in the window wins (the rule is in dsl/README.md).

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
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import bindparam, delete, func, insert, select, update
from sqlalchemy.orm import Session

from engine.settings import Settings
from engine.store import Store
from engine.store.models import CapClaim, CapUsage
from engine.store.types import utc

DAY = timedelta(days=1)
WEEK = timedelta(days=7)
DEFAULT_TIMEZONE = "Asia/Shanghai"

Calendar = Literal["day", "week"] | None

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
    journey_limit_calendar: Calendar = None
    timezone: str | None = None  # the user's, else the journey's: where a calendar day starts
    # Arbitration (see ``arbitrate``): this send's journey priority (None: the
    # send does not take part, e.g. from an interpreter that cannot wait), the
    # best priority of any other live journey, and how long to wait for it.
    priority: int | None = None
    rival_priority: int | None = None
    arbitration_seconds: int = 0


@dataclass(frozen=True)
class Denial:
    """Why a cap stops this send, and the first moment it allows one again.
    ``wait``: not a refusal but arbitration — ask again at ``retry_at``."""

    reason: str
    retry_at: datetime
    wait: bool = False


@dataclass(frozen=True)
class _Filter:
    """Which counted sends a cap counts (one of the four shapes below)."""

    channel: str | None = None
    journey_id: str | None = None
    exclude: tuple[str, ...] = ()

    def params(self, user_id: str, since: datetime) -> dict[str, Any]:
        return {
            "uid": user_id,
            "since": since,
            "channel": self.channel,
            "journey_id": self.journey_id,
            "exclude": list(self.exclude),
        }

    @property
    def shape(self) -> tuple[bool, bool, bool]:
        return self.channel is not None, self.journey_id is not None, bool(self.exclude)


@lru_cache(maxsize=8)
def _count_query(by_channel: bool, by_journey: bool, excluding: bool) -> Any:
    """Counted sends since a time, built once per shape (every send asks)."""
    return _where(select(func.count()).select_from(_USAGE), by_channel, by_journey, excluding)


@lru_cache(maxsize=8)
def _nth_oldest_query(by_channel: bool, by_journey: bool, excluding: bool) -> Any:
    """The time of the n-th oldest counted send since a time (only asked on
    a denial, to say when the window frees a slot)."""
    q = _where(select(_USAGE.c.at), by_channel, by_journey, excluding)
    return q.order_by(_USAGE.c.at).limit(1).offset(bindparam("nth"))


def _where(q: Any, by_channel: bool, by_journey: bool, excluding: bool) -> Any:
    q = q.where(_USAGE.c.user_id == bindparam("uid")).where(_USAGE.c.at > bindparam("since"))
    if by_channel:
        q = q.where(_USAGE.c.channel == bindparam("channel"))
    if by_journey:
        q = q.where(_USAGE.c.journey_id == bindparam("journey_id"))
    if excluding:
        q = q.where(_USAGE.c.channel.not_in(bindparam("exclude", expanding=True)))
    return q


def _zone(name: str | None) -> ZoneInfo:
    for candidate in (name, DEFAULT_TIMEZONE):
        if candidate:
            try:
                return ZoneInfo(candidate)
            except (ZoneInfoNotFoundError, ValueError):
                continue
    return ZoneInfo(DEFAULT_TIMEZONE)  # pragma: no cover - the default always exists


def window_bounds(now: datetime, seconds: int, calendar: Calendar, tz: ZoneInfo) -> tuple[datetime, datetime | None]:
    """(the window counts sends after this, where the next one starts): a
    sliding window reaches ``seconds`` back from ``now`` and has no fixed next
    start (None); a calendar one starts at local midnight (Monday's for a
    week; a send at midnight itself counts, hence the microsecond) and the
    next at the following one, built on the local date so a DST change moves
    it with the clock."""
    if calendar is None:
        return now - timedelta(seconds=seconds), None
    local = now.astimezone(tz)
    day = local.date() - timedelta(days=local.weekday() if calendar == "week" else 0)
    nxt = day + timedelta(days=7 if calendar == "week" else 1)
    start = datetime(day.year, day.month, day.day, tzinfo=tz).astimezone(UTC)
    return start - timedelta(microseconds=1), datetime(nxt.year, nxt.month, nxt.day, tzinfo=tz).astimezone(UTC)


def _check(
    session: Session,
    req: CapRequest,
    limit: int,
    seconds: int,
    calendar: Calendar,
    which: _Filter,
    what: str,
) -> Denial | int:
    """The denial, or how many more messages this cap allows."""
    now = utc(req.now)
    since, next_start = window_bounds(now, seconds, calendar, _zone(req.timezone))
    params = which.params(req.user_id, since)
    used = int(session.execute(_count_query(*which.shape), params).scalar_one())
    if used < limit:
        return limit - used
    if next_start is not None:
        window, retry_at = f"calendar {calendar}", next_start
    else:
        # a slot frees when enough of the oldest counted sends leave the window
        oldest = session.execute(_nth_oldest_query(*which.shape), {**params, "nth": used - limit}).scalar_one()
        window, retry_at = _window_words(seconds), utc(oldest) + timedelta(seconds=seconds)
    journeys = [j for j in session.execute(_who_query(*which.shape), params).scalars() if j]
    by = f" by {', '.join(journeys)}" if journeys else ""
    return Denial(f"frequency cap: {what.format(limit=limit, window=window)} reached ({used} sent{by})", retry_at)


@lru_cache(maxsize=8)
def _who_query(by_channel: bool, by_journey: bool, excluding: bool) -> Any:
    """The journeys whose sends fill a cap (asked on a denial only, so the
    reason can name who took the slots)."""
    q = _where(select(_USAGE.c.journey_id), by_channel, by_journey, excluding)
    return q.group_by(_USAGE.c.journey_id).order_by(func.max(_USAGE.c.at).desc()).limit(3)


def _window_words(seconds: int) -> str:
    """The global caps' sliding windows read "day" / "week" (as they always
    have); any other window as a duration (``journey limit 3 per 12h``)."""
    return {86400: "day", 7 * 86400: "week"}.get(seconds) or _fmt(timedelta(seconds=seconds))


def check_and_count(session: Session, store: Store, settings: Settings, req: CapRequest) -> Denial | None:
    """Count this send against the user's caps, or say why it may not go
    (the first cap that stops it) and when that cap would allow it.

    Must run in a write transaction; ``None`` means allowed and counted.
    """
    if req.transactional:
        return None
    store.lock(session, f"caps:{req.user_id}")
    if session.execute(_COUNTED, {"key": req.delivery_key}).first() is not None:
        return None  # this very send was counted by an earlier attempt
    now = utc(req.now)
    checks: list[tuple[int, int, Calendar, _Filter, str]] = []
    if req.journey_limit_count is not None and req.journey_limit_window_seconds:
        checks.append(
            (
                req.journey_limit_count,
                req.journey_limit_window_seconds,
                req.journey_limit_calendar,
                _Filter(journey_id=req.journey_id),
                "journey limit {limit} per {window}",
            )
        )
    if req.channel not in settings.cap_exempt_channels:
        global_calendar: tuple[Calendar, Calendar] = ("day", "week") if settings.cap_calendar else (None, None)
        every = _Filter(exclude=tuple(settings.cap_exempt_channels))
        for limit, window, calendar in (
            (settings.cap_per_day, DAY, global_calendar[0]),
            (settings.cap_per_week, WEEK, global_calendar[1]),
        ):
            if limit is not None:
                checks.append((limit, int(window.total_seconds()), calendar, every, "{limit} messages per {window}"))
        channel_cap = settings.channel_caps.get(req.channel)
        if channel_cap is not None:
            for limit, window, calendar in (
                (channel_cap.per_day, DAY, global_calendar[0]),
                (channel_cap.per_week, WEEK, global_calendar[1]),
            ):
                if limit is not None:
                    what = f"{{limit}} {req.channel} messages per {{window}}"
                    checks.append((limit, int(window.total_seconds()), calendar, _Filter(channel=req.channel), what))
    room: int | None = None
    for limit, seconds, calendar, which, what in checks:
        left = _check(session, req, limit, seconds, calendar, which, what)
        if isinstance(left, Denial):
            return left
        room = left if room is None else min(room, left)
    if room == 1:
        waiting = arbitrate(session, req)
        if waiting is not None:
            return waiting

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


_CLAIMS = CapClaim.__table__


def arbitrate(session: Session, req: CapRequest) -> Denial | None:
    """Who gets a user's last slot under the caps when journeys race for it.

    Only a send with a live rival of a better priority (a lower number) waits:
    it records a claim and asks again ``arbitration_seconds`` later (workflow
    time; the interpreter sleeps, ``Denial.wait``). Then it takes the slot
    unless a claim of a better priority, made since, is still waiting for its
    own turn — that one wins, and this one is refused naming it. A rival's
    send that has nothing better to wait for takes the slot at once, and a
    waiting send that comes back to no slot is refused by the cap as usual.
    The user's lock (taken by ``check_and_count``) makes each step atomic.
    None: take the slot now."""
    if req.priority is None or req.arbitration_seconds <= 0:
        return None
    if req.rival_priority is None or req.rival_priority >= req.priority:
        return None  # nobody could outrank this send
    now, window = utc(req.now), timedelta(seconds=req.arbitration_seconds)
    claim = session.execute(
        select(_CLAIMS.c.at, _CLAIMS.c.decided).where(_CLAIMS.c.delivery_key == req.delivery_key)
    ).first()
    if claim is None:
        session.execute(
            insert(_CLAIMS).values(
                delivery_key=req.delivery_key,
                user_id=req.user_id,
                journey_id=req.journey_id,
                priority=req.priority,
                at=now,
                decided=False,
            )
        )
        claimed_at = now
    else:
        claimed_at = utc(claim.at)
    if now < claimed_at + window:
        why = f"waiting up to {req.arbitration_seconds}s: this is the user's last message under the caps, and journeys of a better priority may want it"
        return Denial(why, claimed_at + window, wait=True)
    better = session.execute(
        select(_CLAIMS.c.journey_id, _CLAIMS.c.priority)
        .where(
            _CLAIMS.c.user_id == req.user_id,
            _CLAIMS.c.decided.is_(False),
            _CLAIMS.c.delivery_key != req.delivery_key,
            _CLAIMS.c.priority < req.priority,
            _CLAIMS.c.at > now - 2 * window,  # a claim whose run never came back is stale
        )
        .order_by(_CLAIMS.c.priority, _CLAIMS.c.at)
        .limit(1)
    ).first()
    session.execute(update(_CLAIMS).where(_CLAIMS.c.delivery_key == req.delivery_key).values(decided=True))
    if better is not None:
        return Denial(
            f"frequency cap: the user's last message went to journey {better.journey_id} (priority {better.priority})",
            now + window,
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
