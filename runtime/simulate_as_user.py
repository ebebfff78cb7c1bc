"""A copy of a real user for the simulator ("preview a real user's path"):
the user's profile and recent history read from the real store, read only,
and turned into an ordinary ``TestUser``, so the simulator seeds it into its
throwaway store through the engine's own functions like any test user and
the run takes the path the real user would take now.

What is copied: identities (one value per kind: reachability needs the
kind, templates see the masked value), attributes, timezone, plain tags
(``stage:``/``rfm:`` are derived again from the copied events, by the
service's own rules, as the real store derives them), channel opt-outs,
when the user was first seen, the events of the last ``HISTORY_DAYS`` (and
payments as far back as the RFM window reads), at most ``MAX_HISTORY`` of
them, newest kept, and the counted sends of the last ``SENDS_DAYS`` (the
caps' longest window), at most ``MAX_SENDS``. Each read is one indexed
range with a limit (the events left out are counted up to
``COUNT_BOUND``), so a user with a million events costs no more than one
with a thousand.

Times move with the run: the copy's history is written as offsets before
the simulation's start (an event three days before now is three days before
the start), so the user enters the simulation as they stand now, whatever
start the simulated clock uses.

Nothing of the copy is logged; its summary (``UserCopy``) says what was
taken in counts and kinds, never values.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from pydantic import BaseModel, Field
from sqlalchemy import and_, func, or_, select
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError

from engine import queries
from engine.settings import DerivedRules, Settings
from engine.store import Store
from engine.store.models import CapUsage, Event
from engine.store.types import utc
from runtime.simulate_model import (
    MAX_PAST_EVENTS,
    THIS_JOURNEY,
    PastEvent,
    RecentSend,
    TestUser,
    World,
)

HISTORY_DAYS = 180
MAX_HISTORY = MAX_PAST_EVENTS
SENDS_DAYS = 8  # the week cap's window and a day: a calendar week reaches back at most 7 days
MAX_SENDS = 100  # TestUser.recent_sends' bound; the week cap counts far fewer
MAX_TAGS = 200  # TestUser.tags' bound
MAX_NAME = 100  # PastEvent.name's bound (the store allows 128)
COUNT_BOUND = 100_000  # the events left out are counted up to this, not all of a very busy user's
DERIVED_PREFIXES = ("stage:", "rfm:")
STAND_IN_ID = "preview-user"
_ID_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.@-")


class UnknownUser(LookupError):
    """No user (or merged-away id) by that id in the store."""


class UserCopy(BaseModel):
    """What a preview copied of the real user, in counts and kinds (no
    values): enough to see why the copy takes its path, nothing to leak."""

    user_id: str = Field(description="The real user's id (the survivor, for a merged-away id)")
    simulated_as: str = Field(description="The id in the simulation (the same, or a stand-in)")
    identities: list[str] = Field(description="Identity kinds copied (one value each)")
    tags: int
    attributes: int
    timezone: str | None
    opted_out: list[str]
    stage: str | None = Field(description="The stage the real store holds (the copy derives its own)")
    rfm: str | None
    events: int = Field(description="Past events copied")
    events_since: datetime = Field(description="The oldest moment the copy looked back to")
    events_left_out: int = Field(description="The user's events the copy did not take (older or over the bound)")
    recent_sends: int
    notes: list[str] = Field(default_factory=list)


def _offset(at: datetime, now: datetime) -> str:
    """``at`` as an offset before the start, in seconds (a moment after
    ``now``, from a sender's clock ahead of ours, is taken as ``now``)."""
    seconds = max(0, int((now - utc(at)).total_seconds()))
    return f"-{seconds}s"


def history_days(rules: DerivedRules) -> int:
    """How far back every event is copied: ``HISTORY_DAYS``, or further
    when the service's stage rules look further back."""
    return max(HISTORY_DAYS, rules.new_days, rules.active_days, rules.paying_days, rules.churned_days)


def copy_user(
    store: Store,
    user_id: str,
    *,
    now: datetime | None = None,
    rules: DerivedRules | None = None,
    journey_id: str | None = None,
) -> tuple[TestUser, UserCopy]:
    """The real user as a ``TestUser`` and a summary of the copy;
    ``UnknownUser`` when the store has no such user, ``ValueError`` when
    the user cannot be copied within the simulator's bounds. ``journey_id``
    is the deployed journey being previewed: its own recent sends count
    against its own ``limit`` in the copy, others' against the global caps
    only."""
    now = utc(now) if now else datetime.now(UTC)
    rules = rules or DerivedRules()
    profile = queries.user_profile(store, user_id)
    if profile is None:
        raise UnknownUser(user_id)
    uid = profile.id
    since = now - timedelta(days=history_days(rules))
    payments_since = now - timedelta(days=max(rules.rfm_window_days, history_days(rules)))
    wanted = and_(
        Event.user_id == uid,
        func.length(Event.name) <= MAX_NAME,
        or_(Event.occurred_at > since, and_(Event.name.in_(rules.payment_events), Event.occurred_at > payments_since)),
    )
    with store.read() as s:
        rows = s.execute(
            select(Event.name, Event.properties, Event.occurred_at)
            .where(wanted)
            .order_by(Event.occurred_at.desc(), Event.id.desc())
            .limit(MAX_HISTORY)
        ).all()
        counted = select(Event.id).where(Event.user_id == uid).limit(COUNT_BOUND + 1).subquery()
        total = s.scalar(select(func.count()).select_from(counted)) or 0
        sends = s.execute(
            select(CapUsage.channel, CapUsage.at, CapUsage.journey_id)
            .where(CapUsage.user_id == uid, CapUsage.at > now - timedelta(days=SENDS_DAYS))
            .order_by(CapUsage.at.desc())
            .limit(MAX_SENDS)
        ).all()
    tags = [t.tag for t in profile.tags if not t.tag.startswith(DERIVED_PREFIXES)]
    if len(tags) > MAX_TAGS:
        raise ValueError(f"the user carries {len(tags)} tags: a simulation copies at most {MAX_TAGS}")
    notes: list[str] = []
    simulated_as = uid
    if len(uid) > 64 or not set(uid) <= _ID_CHARS:
        simulated_as = STAND_IN_ID
        notes.append(f"the user's id has characters a simulated id cannot: simulated as {STAND_IN_ID}")
    left_out = max(0, total - len(rows))
    if left_out:
        more = "over " if total > COUNT_BOUND else ""
        notes.append(
            f"{more}{left_out} older event(s) not copied: `count` without a window, and windows reaching before "
            f"{since:%Y-%m-%d}, see only the {len(rows)} copied"
        )
    opted_out = sorted(c.channel for c in profile.consents if c.opted_out)
    user = TestUser(
        id=simulated_as,
        identities={kind: values[0] for kind, values in profile.identities.items() if values},
        tags=tags,
        attributes=dict(profile.attributes),
        timezone=profile.timezone,
        opted_out=opted_out,
        first_seen=_offset(profile.created_at, now),
        past_events=[
            PastEvent(name=name, at=_offset(at, now), properties=dict(properties or {}))
            for name, properties, at in reversed(rows)
        ],
        recent_sends=[
            RecentSend(
                channel=channel,
                at=_offset(at, now),
                journey=THIS_JOURNEY if journey_id and sent_by == journey_id else (sent_by or "another-journey"),
            )
            for channel, at, sent_by in reversed(sends)
        ],
    )
    summary = UserCopy(
        user_id=uid,
        simulated_as=simulated_as,
        identities=sorted(user.identities),
        tags=len(tags),
        attributes=len(profile.attributes),
        timezone=profile.timezone,
        opted_out=opted_out,
        stage=profile.stage,
        rfm=profile.rfm,
        events=len(rows),
        events_since=since,
        events_left_out=left_out,
        recent_sends=len(sends),
        notes=notes,
    )
    return user, summary


def world_for(settings: Settings, world: World | None = None) -> World:
    """The world a preview runs in: the caller's, else the service's own
    caps; the service's stage/RFM rules unless the world names its own, so
    the copy's derived stage is the one the real store would compute."""
    if world is None:
        world = World(
            cap_per_day=settings.cap_per_day,
            cap_per_week=settings.cap_per_week,
            channel_caps={name: cap.model_dump(exclude_none=True) for name, cap in settings.channel_caps.items()},
        )
    if world.derived is None:
        world = world.model_copy(update={"derived": settings.derived})
    return world


def open_store(settings: Settings) -> Store:
    """The real store, for reading: a SQLite file that is not there is an
    error (opening it would create an empty one), not a silent blank user."""
    url = make_url(settings.database_url)
    if url.get_backend_name() == "sqlite":
        database = url.database
        if not database or database == ":memory:" or not Path(database).expanduser().exists():
            raise ValueError(f"no store at {database or 'memory'} (set DATABASE_URL to the service's database)")
    return Store(settings.database_url)


def read_error(settings: Settings, exc: SQLAlchemyError) -> str:
    """What to say when the store cannot be read: where (without its
    password) and the kind of failure, never the statement or its values
    (they hold the user's id and data)."""
    where = make_url(settings.database_url).render_as_string(hide_password=True)
    return f"the store at {where} could not be read ({type(exc).__name__}): is it migrated and reachable?"


def format_copy(copied: UserCopy) -> list[str]:
    """The copy in a few lines above the timeline: what the simulated user
    carries (kinds and counts), and what the copy left out."""
    named = copied.user_id if copied.simulated_as == copied.user_id else f"{copied.user_id} as {copied.simulated_as}"
    parts = [
        "identities " + (", ".join(copied.identities) or "none"),
        f"{copied.tags} tag(s)",
        f"{copied.attributes} attribute(s)",
        f"timezone {copied.timezone or 'unset'}",
        f"{copied.events} event(s) since {copied.events_since:%Y-%m-%d}",
        f"{copied.recent_sends} recent send(s)",
    ]
    if copied.opted_out:
        parts.append("opted out of " + ", ".join(copied.opted_out))
    stored = ", ".join(f"{k} {v}" for k, v in (("stage", copied.stage), ("rfm", copied.rfm)) if v)
    lines = [f"a copy of user {named}: " + "; ".join(parts) + (f" (stored {stored})" if stored else "")]
    lines += [f"  note: {note}" for note in copied.notes]
    return lines
