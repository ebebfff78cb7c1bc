"""Local-time arithmetic for waits and quiet hours, in the user's time zone.

Pure functions of an aware UTC ``now`` (the workflow's clock) so they replay
deterministically. DST gaps resolve the way ``zoneinfo`` does (fold=0).
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo


def zone(name: str | None, fallback: str) -> ZoneInfo:
    for candidate in (name, fallback, "UTC"):
        if candidate:
            try:
                return ZoneInfo(candidate)
            except (KeyError, ValueError, OSError):
                continue
    return ZoneInfo("UTC")


def parse_hhmm(text: str) -> time:
    hours, minutes = text.split(":")
    return time(int(hours), int(minutes))


def next_local_time(now: datetime, tz: ZoneInfo, at: str, weekday: int | None = None) -> datetime:
    """The next moment strictly after ``now`` when the local clock shows ``at``
    (on ``weekday``, 0 = monday, when given). Returned in UTC."""
    local = now.astimezone(tz)
    target_time = parse_hhmm(at)
    for days in range(0, 8):
        day = local.date() + timedelta(days=days)
        if weekday is not None and day.weekday() != weekday:
            continue
        candidate = datetime.combine(day, target_time, tzinfo=tz)
        if candidate > local:
            return candidate.astimezone(UTC)
    raise AssertionError("unreachable: a week always contains the weekday")


def in_quiet_hours(now: datetime, tz: ZoneInfo, start: str, end: str) -> bool:
    """Quiet hours may cross midnight (22:00-08:00)."""
    current = now.astimezone(tz).time()
    begin, finish = parse_hhmm(start), parse_hhmm(end)
    if begin == finish:
        return False
    if begin < finish:
        return begin <= current < finish
    return current >= begin or current < finish


def quiet_hours_end(now: datetime, tz: ZoneInfo, start: str, end: str) -> datetime | None:
    """When the quiet hours containing ``now`` end (UTC), or None if not quiet."""
    if not in_quiet_hours(now, tz, start, end):
        return None
    return next_local_time(now, tz, end)


def moment_from(value: object, tz: ZoneInfo, at: str | None) -> datetime | None:
    """A date ("2026-09-01") or date-time (ISO 8601) held in a user attribute or
    an event property, as an aware UTC datetime, or None when it is not one.
    A bare date means ``at`` (default 00:00) local time in ``tz``; a date-time
    without a UTC offset is local time in ``tz``; ``at`` moves a date-time to
    that time of its local day."""
    if value is None:
        return None
    text = str(value).strip()
    try:
        if len(text) == 10:
            day = date.fromisoformat(text)
            return datetime.combine(day, parse_hhmm(at) if at else time(0, 0), tzinfo=tz).astimezone(UTC)
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=tz)
    if at:
        local = moment.astimezone(tz)
        moment = datetime.combine(local.date(), parse_hhmm(at), tzinfo=tz)
    return moment.astimezone(UTC)
