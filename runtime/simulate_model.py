"""What a simulation is given and what it answers: the test user, the
scripted events, the world around them (templates, coupon pools, caps), and
per case the timeline, node visits and how the run ended.

The inputs are pydantic models so a test file (``runtime.journey_tests``) or
a JSON body is validated with one set of rules and bounds; times are either
offsets from the start (``"+1d2h"``, ``"-30d"``) or absolute ISO date-times
with an offset (``"2027-01-05T11:00+08:00"``).
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field

from dsl.durations import parse_duration
from engine.settings import DerivedRules

# Bounds on what one simulation reads: each case is a worker, a store and a
# Temporal run, so the numbers keep one call to seconds, not minutes.
MAX_CASES = 64
MAX_EVENTS = 200
MAX_PAST_EVENTS = 500
MAX_HORIZON = timedelta(days=400)
DEFAULT_HORIZON = timedelta(days=30)
DEFAULT_POOL_STOCK = 1000
MAX_FORCED = 100  # forced split variants a case may name
# A recent send's journey that stands for the simulated journey itself, so
# a copied user's sends of that journey count against its own ``limit``.
THIS_JOURNEY = "<this journey>"
NOT_SELECTED = "the audience does not select this user at the start"  # a case's end reason begins so

SplitKey = Annotated[str, Field(min_length=1, max_length=200)]
VariantName = Annotated[str, Field(min_length=1, max_length=100)]

_OFFSET = re.compile(r"^([+-])?((?:\d+[wdhms])+|0)$")


def parse_moment(text: str | datetime, start: datetime) -> datetime:
    """``"+1d2h"`` / ``"-30d"`` / ``"0"`` from ``start``, or an absolute
    date-time that says its UTC offset."""
    if isinstance(text, datetime):
        moment = text
    else:
        text = text.strip()
        match = _OFFSET.match(text)
        if match:
            seconds = parse_duration(match.group(2))
            return start + timedelta(seconds=-seconds if match.group(1) == "-" else seconds)
        try:
            moment = datetime.fromisoformat(text)
        except ValueError:
            raise ValueError(
                f"{text!r} is neither an offset like +1d2h nor a date-time like 2027-01-05T11:00+08:00"
            ) from None
    if moment.tzinfo is None:
        raise ValueError(f"{text!r} needs a UTC offset (e.g. +08:00): the simulation cannot guess the zone")
    return moment


def parse_span(text: str) -> timedelta:
    """A positive duration in the language's words: ``30d``, ``1d12h``."""
    match = _OFFSET.match(text.strip())
    if not match or match.group(1) == "-":
        raise ValueError(f"{text!r} is not a duration like 30d or 1d12h")
    return timedelta(seconds=parse_duration(match.group(2)))


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class PastEvent(_Strict):
    """Something the user did before the start (lifecycle stage, RFM and
    ``count …`` conditions read these)."""

    name: str = Field(min_length=1, max_length=100)
    at: str = Field(description="an offset before the start (-10d) or a date-time")
    properties: dict[str, Any] = Field(default_factory=dict)


class RecentSend(_Strict):
    """A message another journey sent the user before the start: counts
    against the global cap."""

    channel: str
    at: str
    journey: str = Field("another-journey", description=f"the journey that sent it ({THIS_JOURNEY!r}: this one)")


class TestUser(_Strict):
    """Who enters. ``identities`` say which channels reach the user
    (``wecom_external_userid`` → WeCom, ``phone`` → SMS, ``app_user_id`` →
    push, …); ``opted_out`` lists channels the user refused."""

    __test__ = False  # not a pytest class

    id: str = Field(default="u1", min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.@-]+$")
    identities: dict[str, str] = Field(default_factory=dict)
    tags: list[str] = Field(default_factory=list, max_length=200)
    attributes: dict[str, Any] = Field(default_factory=dict)
    timezone: str | None = None
    opted_out: list[str] = Field(default_factory=list)
    first_seen: str = Field(default="-0s", description="when the user was first seen (the 'new' stage reads it)")
    past_events: list[PastEvent] = Field(default_factory=list, max_length=MAX_PAST_EVENTS)
    recent_sends: list[RecentSend] = Field(default_factory=list, max_length=100)


class ScriptedEvent(_Strict):
    """An event the user does during the simulation, at an offset from the
    start or at a date-time."""

    at: str
    name: str = Field(min_length=1, max_length=100)
    properties: dict[str, Any] = Field(default_factory=dict)


class Case(_Strict):
    """One user going through the journey. ``entry`` holds the trigger
    event's properties for an ``entry event`` journey (its name is the
    journey's entry event)."""

    name: str = Field(default="case", max_length=200)
    user: TestUser = Field(default_factory=TestUser)
    entry: dict[str, Any] = Field(default_factory=dict)
    events: list[ScriptedEvent] = Field(default_factory=list, max_length=MAX_EVENTS)
    pools: dict[str, int] = Field(default_factory=dict, description="coupon stock for this case, by pool")
    variants: dict[SplitKey, VariantName] = Field(
        default_factory=dict,
        max_length=MAX_FORCED,
        description="forced split variants: split step id or the label right before it -> variant name",
    )


class Template(_Strict):
    body: str
    channels: dict[str, str] = Field(default_factory=dict)
    subject: str | None = None
    transactional: bool = False


class Pool(_Strict):
    stock: int = Field(default=DEFAULT_POOL_STOCK, ge=0, le=10_000_000)
    per_user_limit: int = 1
    value: dict[str, Any] = Field(default_factory=dict)
    expires_after_seconds: int | None = None


class World(_Strict):
    """What every case shares: templates (a template not given is seeded
    with its own name as text), coupon pools (one not given has
    ``DEFAULT_POOL_STOCK``) and the global caps."""

    templates: dict[str, Template] = Field(default_factory=dict)
    pools: dict[str, Pool] = Field(default_factory=dict)
    cap_per_day: int | None = 2
    cap_per_week: int | None = 5
    channel_caps: dict[str, dict[str, int]] = Field(default_factory=dict)
    derived: DerivedRules | None = Field(
        None, description="stage/RFM thresholds (default: the engine's); a real user's preview takes the service's"
    )


class Message(BaseModel):
    """A send as the outbox recorded it, rendered for the user."""

    at: datetime
    node_id: str | None
    channel: str | None
    template: str | None
    status: str
    reason: str | None = None
    body: str | None = None


class Entry(BaseModel):
    """One line of a case's timeline."""

    at: datetime
    offset_seconds: int
    node_id: str | None
    kind: str  # step, event, delivery, coupon
    outcome: str | None
    text: str  # in the operator's words
    detail: dict[str, Any] = Field(default_factory=dict)


class CaseResult(BaseModel):
    name: str
    user_id: str
    timezone: str
    start: datetime
    horizon: datetime
    timeline: list[Entry]
    messages: list[Message]
    visits: dict[str, int]  # node id -> times the run reached it
    outcomes: dict[str, list[str]]  # node id -> outcomes in order (branch:0, else, event, timeout, variant:A…)
    ended: str  # completed, converted, exited, refused, cancelled, running (still going at the horizon)
    end_reason: str | None
    waiting_at: str | None  # where a run still going at the horizon waits
    converted: bool
    tags: list[str]
    coupons: dict[str, list[str]]  # pool -> codes issued
    variants: dict[str, str] = Field(default_factory=dict)  # forced: split step id -> variant


class SimulationResult(BaseModel):
    journey: str
    start: datetime
    horizon: datetime
    cases: list[CaseResult]
    nodes: list[str]  # every step id, in text order
    never_reached: list[str]  # steps no case reached
