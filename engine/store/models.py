"""The engine's tables (SQLAlchemy 2 ORM).

Conventions that keep SQLite and PostgreSQL interchangeable: string keys the
engine generates itself, JSON columns for open-ended data, aware UTC datetimes
through ``UTCDateTime``. Foreign keys only where a row cannot exist without its
user (identities, tags, events, consents); ledgers (runs, deliveries, grants,
steps) keep plain user ids because the workflow may address a user the store
has not seen yet, and they must never fail to record.
"""

from __future__ import annotations

import os
import time
import uuid
from datetime import datetime
from typing import Any, Literal, get_args

from sqlalchemy import JSON, Boolean, Float, ForeignKey, Index, Integer, MetaData, String, Text, UniqueConstraint, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from engine.lifecycle import STATUSES
from engine.store.types import UTCDateTime, utcnow

IdentityKind = Literal[
    "openid",
    "unionid",
    "phone",
    "member_id",
    "app_user_id",
    "anonymous_id",
    "email",
    "wecom_external_userid",
    "wecom_group_chat_id",
    "miniprogram_openid",
]
IDENTITY_KINDS: tuple[str, ...] = get_args(IdentityKind)

JOURNEY_STATUSES: tuple[str, ...] = STATUSES  # the lifecycle (engine.lifecycle) decides the moves
# "reserved" is the in-flight state of a send: the key is taken, the provider has
# been (or is being) called, the outcome is not recorded yet.
DELIVERY_STATUSES: tuple[str, ...] = ("reserved", "sent", "pending", "suppressed", "failed", "deferred")
FINAL_DELIVERY_STATUSES: frozenset[str] = frozenset({"sent", "pending", "suppressed", "failed"})
# ``users.payment_events``: the payment event names a kept last payment was
# taken with; a longer list is not kept (every audience then aggregates).
MAX_PAYMENT_MARK = 512


def new_user_id() -> str:
    """Time-ordered ids (ms timestamp + randomness) so "older user" is also the
    smaller id, which makes merges easy to reason about in a listing."""
    return f"u{int(time.time() * 1000):012x}{os.urandom(5).hex()}"


def new_id() -> str:
    return uuid.uuid4().hex


# Named constraints, so later migrations can alter them on SQLite (batch mode
# rebuilds tables and must know every constraint's name).
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {datetime: UTCDateTime(), dict[str, Any]: JSON(), list[Any]: JSON()}


class User(Base):
    __tablename__ = "users"

    id: Mapped[str] = mapped_column(String(64), primary_key=True, default=new_user_id)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    # jsonb on PostgreSQL (0017): audiences read keys of a million rows, and
    # ``json`` is parsed again for every key read. Key order is not kept.
    attributes: Mapped[dict[str, Any]] = mapped_column(JSON().with_variant(JSONB(), "postgresql"), default=dict)
    timezone: Mapped[str | None] = mapped_column(String(64))
    stage: Mapped[str | None] = mapped_column(String(16))
    rfm: Mapped[str | None] = mapped_column(String(16))
    # The earliest and latest ``occurred_at`` of the user's events (None:
    # none yet), kept at every ingest and merge (``engine.derived``). They
    # hold for any ``now`` and any derived rules, so an audience judges the
    # lifecycle stage of a million users from these two columns instead of
    # aggregating every event (``engine.audience_sql``; 0016).
    first_event_at: Mapped[datetime | None]
    last_event_at: Mapped[datetime | None]
    # The latest ``occurred_at`` of the user's payments, and which event names
    # counted as payments when it was taken (``engine.derived.payment_mark``:
    # the names are settings, so the value holds only for the names it was
    # taken with; None: never taken). Kept at every ingest and merge, so an
    # audience judges the stage from ``users`` alone (0018).
    last_payment_at: Mapped[datetime | None]
    payment_events: Mapped[str | None] = mapped_column(String(MAX_PAYMENT_MARK))
    # Set when this user was merged into another; lookups follow the chain.
    merged_into: Mapped[str | None] = mapped_column(String(64), index=True)
    merged_at: Mapped[datetime | None]


class UserMerge(Base):
    """Audit of merges: which id went into which, when and what moved."""

    __tablename__ = "user_merges"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    loser_id: Mapped[str] = mapped_column(String(64), index=True)
    survivor_id: Mapped[str] = mapped_column(String(64), index=True)
    at: Mapped[datetime] = mapped_column(default=utcnow)
    detail: Mapped[dict[str, Any]] = mapped_column(default=dict)


class Identity(Base):
    __tablename__ = "identities"
    __table_args__ = (UniqueConstraint("kind", "value", name="uq_identities_kind_value"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    kind: Mapped[str] = mapped_column(String(32))
    value: Mapped[str] = mapped_column(String(255))
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id"), index=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Tag(Base):
    """Current tags. Removal deletes the row; ``TagHistory`` keeps every change."""

    __tablename__ = "tags"
    __table_args__ = (
        UniqueConstraint("user_id", "tag", name="uq_tags_user_tag"),
        # A tag's users, read from the index alone (an audience's ``tag vip``
        # for a window of users; 0016).
        Index("ix_tags_tag_user", "tag", "user_id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id"), index=True)
    tag: Mapped[str] = mapped_column(String(128))
    source: Mapped[str] = mapped_column(String(128))
    added_at: Mapped[datetime] = mapped_column(default=utcnow)


class TagHistory(Base):
    __tablename__ = "tag_history"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    user_id: Mapped[str] = mapped_column(String(64), index=True)
    tag: Mapped[str] = mapped_column(String(128))
    action: Mapped[str] = mapped_column(String(8))  # add | remove
    source: Mapped[str] = mapped_column(String(128))
    at: Mapped[datetime] = mapped_column(default=utcnow)


class Event(Base):
    """What a user did. ``id`` is the sender's message id: storing it once is the
    ingestion's idempotency. ``dispatched_at`` stays empty until the event has
    reached every run and journey it concerns on Temporal; until then a resend
    of the same message, or the API's sweep (``engine.dispatch``), delivers it
    again, so an event stored just before a crash or a Temporal outage is not
    lost."""

    __tablename__ = "events"
    __table_args__ = (
        Index("ix_events_user_name_at", "user_id", "name", "occurred_at"),
        # A user's first/last event (derived stage and RFM on every ingest),
        # an event name's events in a date range (audience counts, stats)
        # without scanning every user's, and a user's events by receipt, the
        # timeline's order, so a page of a 10k-event user reads its 201 rows
        # instead of sorting all 10k (0014).
        Index("ix_events_user_at", "user_id", "occurred_at"),
        Index("ix_events_name_at", "name", "occurred_at"),
        # An event name's events for a window of users (an audience's payments
        # and counts), read from the index alone: the (user, name) index reads
        # every event of the window's users to find them (0016).
        Index("ix_events_name_user_at", "name", "user_id", "occurred_at"),
        Index("ix_events_user_received", "user_id", "received_at"),
        Index(
            "ix_events_undispatched",
            "received_at",
            sqlite_where=text("dispatched_at IS NULL"),
            postgresql_where=text("dispatched_at IS NULL"),
        ),
    )

    id: Mapped[str] = mapped_column(String(128), primary_key=True)
    # no index of its own: the three above lead with it (0014 dropped it; with
    # it, PostgreSQL read all of a 10k-event user's rows for a timeline page)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id"))
    name: Mapped[str] = mapped_column(String(128))
    properties: Mapped[dict[str, Any]] = mapped_column(default=dict)
    occurred_at: Mapped[datetime]
    received_at: Mapped[datetime] = mapped_column(default=utcnow)
    dispatched_at: Mapped[datetime | None]
    # What dispatch did with it (``engine.dispatch``): the runs it was
    # signalled to and the runs it started, by workflow id, for the timeline.
    outcome: Mapped[dict[str, Any] | None] = mapped_column(JSON)


class Consent(Base):
    """Per-channel opt-out, honoured at send time."""

    __tablename__ = "consents"
    __table_args__ = (UniqueConstraint("user_id", "channel", name="uq_consents_user_channel"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id"), index=True)
    channel: Mapped[str] = mapped_column(String(32))
    opted_out: Mapped[bool] = mapped_column(Boolean, default=True)
    source: Mapped[str | None] = mapped_column(String(128))
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class ContactFollow(Base):
    """A person's contact relation with one staff member on a channel where
    it is per staff member: a WeCom customer adds, and may remove, each
    staff member on their own, and a 1:1 message goes through one of them.
    ``engine.consent.follow_state`` keeps it from the vendor's callbacks; the
    channel's consent is out once no staff member the store knows of is
    still a contact."""

    __tablename__ = "contact_follows"

    user_id: Mapped[str] = mapped_column(ForeignKey("users.id"), primary_key=True)
    channel: Mapped[str] = mapped_column(String(32), primary_key=True)
    via: Mapped[str] = mapped_column(String(255), primary_key=True)  # the staff member's userid
    following: Mapped[bool] = mapped_column(Boolean)
    changed_at: Mapped[datetime]  # when the vendor says it changed: an older report is not applied


class Template(Base):
    __tablename__ = "templates"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(128), unique=True)
    body: Mapped[str] = mapped_column(Text)
    channel_bodies: Mapped[dict[str, Any]] = mapped_column(default=dict)  # channel -> body
    subject: Mapped[str | None] = mapped_column(String(255))
    transactional: Mapped[bool] = mapped_column(Boolean, default=False)
    version: Mapped[int] = mapped_column(Integer, default=1)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class CouponPool(Base):
    __tablename__ = "coupon_pools"

    name: Mapped[str] = mapped_column(String(128), primary_key=True)
    stock: Mapped[int] = mapped_column(Integer, default=0)  # what is left
    issued: Mapped[int] = mapped_column(Integer, default=0)
    per_user_limit: Mapped[int] = mapped_column(Integer, default=1)
    value: Mapped[dict[str, Any]] = mapped_column(default=dict)  # e.g. {"amount": 20, "min_spend": 99}
    expires_after_seconds: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class CouponGrant(Base):
    __tablename__ = "coupon_grants"
    __table_args__ = (Index("ix_coupon_grants_user_pool", "user_id", "pool"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    idempotency_key: Mapped[str] = mapped_column(String(255), unique=True)
    pool: Mapped[str] = mapped_column(String(128))
    user_id: Mapped[str] = mapped_column(String(64))
    code: Mapped[str] = mapped_column(String(64))
    run_key: Mapped[str | None] = mapped_column(String(255))
    journey_id: Mapped[str | None] = mapped_column(String(128))
    node_id: Mapped[str | None] = mapped_column(String(128))
    issued_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime | None]


class Delivery(Base):
    """The ledger: one row per send attempt-invariant key, whatever happened."""

    __tablename__ = "deliveries"
    __table_args__ = (
        Index("ix_deliveries_journey_node", "journey_id", "version", "node_id"),
        Index("ix_deliveries_user_at", "user_id", "at"),
        Index("ix_deliveries_journey_node_address", "journey_id", "node_id", "address_hash"),
        # a node's latest deliveries, a page at a time (0015)
        Index("ix_deliveries_journey_node_at", "journey_id", "node_id", "at"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    idempotency_key: Mapped[str] = mapped_column(String(255), unique=True)
    run_key: Mapped[str | None] = mapped_column(String(255), index=True)
    journey_id: Mapped[str | None] = mapped_column(String(128))
    version: Mapped[int | None] = mapped_column(Integer)
    node_id: Mapped[str | None] = mapped_column(String(128))
    user_id: Mapped[str] = mapped_column(String(64))
    channel: Mapped[str | None] = mapped_column(String(32))
    template: Mapped[str | None] = mapped_column(String(128))
    variant: Mapped[str | None] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str | None] = mapped_column(Text)
    provider_message_id: Mapped[str | None] = mapped_column(String(255))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text)  # why the last attempt failed (kept after a success)
    # SHA-256 of channel and address: the same step never reaches one address
    # twice through two runs of a person merged meanwhile (``engine.merges``).
    address_hash: Mapped[str | None] = mapped_column(String(64))
    # The send request (JSON) of a failed send, kept so an operator can replay
    # it with the same key (``engine.replays``); None for every other row.
    replay_request: Mapped[str | None] = mapped_column(Text)
    at: Mapped[datetime]  # workflow time of the send
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class CapUsage(Base):
    """Frequency-cap counter rows: one per counted (non-transactional) send,
    keyed by the delivery so a retry never counts twice. Windows slide relative
    to the request's ``now``, so rows, not per-day buckets."""

    __tablename__ = "cap_usage"
    __table_args__ = (Index("ix_cap_usage_user_at", "user_id", "at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    delivery_key: Mapped[str] = mapped_column(String(255), unique=True)
    user_id: Mapped[str] = mapped_column(String(64))
    channel: Mapped[str] = mapped_column(String(32))
    journey_id: Mapped[str | None] = mapped_column(String(128))
    at: Mapped[datetime]


class CapClaim(Base):
    """A send waiting for a user's last cap slot (``engine.caps``'s
    arbitration): higher-priority journeys' sends in the same short window
    take the slot first. One row per delivery key; ``decided`` once the send
    won or lost."""

    __tablename__ = "cap_claims"
    __table_args__ = (Index("ix_cap_claims_user_at", "user_id", "at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    delivery_key: Mapped[str] = mapped_column(String(255), unique=True)
    user_id: Mapped[str] = mapped_column(String(64))
    journey_id: Mapped[str | None] = mapped_column(String(128))
    priority: Mapped[int] = mapped_column(Integer)
    at: Mapped[datetime]  # workflow time the send first asked
    decided: Mapped[bool] = mapped_column(default=False)


class Journey(Base):
    __tablename__ = "journeys"

    id: Mapped[str] = mapped_column(String(128), primary_key=True)
    name: Mapped[str] = mapped_column(String(255))
    status: Mapped[str] = mapped_column(String(16), default="active")
    current_version: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class JourneyVersion(Base):
    __tablename__ = "journey_versions"
    __table_args__ = (UniqueConstraint("journey_id", "version", name="uq_journey_versions_journey_version"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    journey_id: Mapped[str] = mapped_column(ForeignKey("journeys.id"), index=True)
    version: Mapped[int] = mapped_column(Integer)
    source: Mapped[str] = mapped_column(Text)
    ir: Mapped[dict[str, Any]] = mapped_column()
    hash: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16), default="active")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Run(Base):
    """One entry of a user into a journey (refused entries are kept too, so the
    same run asking again gets the same answer). One event enters a user into
    a journey at most once (``trigger_event_id``; an audience broadcast's
    marker is one id shared by all its users), however often it is delivered."""

    __tablename__ = "runs"
    __table_args__ = (
        Index("ix_runs_journey_user", "journey_id", "user_id"),
        Index("ix_runs_user_open", "user_id", "ended_at"),
        # A user's runs newest first, a page at a time (0016).
        Index("ix_runs_user_entered", "user_id", "entered_at"),
        UniqueConstraint("journey_id", "user_id", "trigger_event_id", name="uq_runs_journey_trigger"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    run_key: Mapped[str] = mapped_column(String(255), unique=True)
    journey_id: Mapped[str] = mapped_column(String(128))
    version: Mapped[int] = mapped_column(Integer)
    user_id: Mapped[str] = mapped_column(String(64))
    admitted: Mapped[bool] = mapped_column(Boolean)
    reason: Mapped[str | None] = mapped_column(Text)
    entered_at: Mapped[datetime]
    ended_at: Mapped[datetime | None]
    outcome: Mapped[str | None] = mapped_column(String(16))
    end_reason: Mapped[str | None] = mapped_column(Text)
    variant: Mapped[str | None] = mapped_column(String(64))
    converted_at: Mapped[datetime | None]
    trigger_event: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    trigger_event_id: Mapped[str | None] = mapped_column(String(128))


class StepRecord(Base):
    __tablename__ = "step_records"
    __table_args__ = (
        # seq (per run, increasing) keeps a loop's repeated visits at the same
        # instant apart; the rest makes a retried batch a no-op.
        UniqueConstraint("run_key", "seq", "node_id", "kind", "outcome", "at", name="uq_step_records_natural"),
        # One record per step of a run: a workflow task retried after its local
        # activity wrote the records (a signal came in: UNHANDLED_COMMAND)
        # writes the same seqs again at its own ``workflow.now()``, which the
        # natural key above, holding ``at``, took for new records. The run's
        # own records count from 1; seq 0 is the engine's (a merge's
        # ended/kept records, several per run), so they stay out (0007).
        Index(
            "uq_step_records_run_seq",
            "run_key",
            "seq",
            unique=True,
            sqlite_where=text("seq > 0"),
            postgresql_where=text("seq > 0"),
        ),
        Index("ix_step_records_journey_node", "journey_id", "version", "node_id"),
        # per-node counts (distinct runs per node and outcome) from the index alone (0015)
        Index("ix_step_records_node_outcome_run", "journey_id", "node_id", "outcome", "run_key", "version"),
        Index("ix_step_records_user_at", "user_id", "at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    run_key: Mapped[str] = mapped_column(String(255))
    seq: Mapped[int] = mapped_column(Integer, default=0)
    journey_id: Mapped[str] = mapped_column(String(128))
    version: Mapped[int] = mapped_column(Integer)
    user_id: Mapped[str] = mapped_column(String(64))
    node_id: Mapped[str] = mapped_column(String(128))
    kind: Mapped[str] = mapped_column(String(32))
    outcome: Mapped[str] = mapped_column(String(64))
    variant: Mapped[str | None] = mapped_column(String(64))
    at: Mapped[datetime]
    detail: Mapped[dict[str, Any]] = mapped_column(default=dict)


class RunSignal(Base):
    """A signal to a user's runs that must reach Temporal even if the process
    dies after the store change that caused it (``engine.run_signals``): a
    merge that ends a duplicate run (``kind`` ``merged``, one ``workflow_id``)
    or a tag change (``tags``: every open run of the user but the one that
    made it). Swept like undispatched events until ``sent_at`` is set."""

    __tablename__ = "run_signals"
    __table_args__ = (
        Index(
            "ix_run_signals_unsent",
            "created_at",
            sqlite_where=text("sent_at IS NULL"),
            postgresql_where=text("sent_at IS NULL"),
        ),
        # A user's unsent signals (a tag change's or merge's own sweep) (0014).
        Index(
            "ix_run_signals_user_unsent",
            "user_id",
            sqlite_where=text("sent_at IS NULL"),
            postgresql_where=text("sent_at IS NULL"),
        ),
        # Sent rows by age, for ``run_signals.prune_sent`` (0014).
        Index("ix_run_signals_sent_at", "sent_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    user_id: Mapped[str] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(16))  # merged | tags
    workflow_id: Mapped[str | None] = mapped_column(String(255))
    run_key: Mapped[str | None] = mapped_column(String(255))
    source: Mapped[str | None] = mapped_column(String(128))  # a tag change's source (journey:<id> skips that run)
    payload: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    sent_at: Mapped[datetime | None]


class Broadcast(Base):
    """One run of a tag-audience entry (``engine.broadcasts``): where the scan
    of the user table got to and what it did, committed page by page so a
    resumed broadcast continues from ``cursor`` instead of starting over."""

    __tablename__ = "broadcasts"
    __table_args__ = (Index("ix_broadcasts_journey_started", "journey_id", "started_at"),)

    id: Mapped[str] = mapped_column(String(255), primary_key=True)  # the broadcast workflow's id
    journey_id: Mapped[str] = mapped_column(String(128))
    version: Mapped[int] = mapped_column(Integer)
    trigger: Mapped[str] = mapped_column(String(16), default="api")  # api | schedule
    status: Mapped[str] = mapped_column(String(16), default="running")  # running | completed | halted
    reason: Mapped[str | None] = mapped_column(Text)
    cursor: Mapped[str | None] = mapped_column(String(64))  # last user id scanned (keyset)
    page_size: Mapped[int] = mapped_column(Integer)
    pages: Mapped[int] = mapped_column(Integer, default=0)
    scanned: Mapped[int] = mapped_column(Integer, default=0)  # candidate users read
    matched: Mapped[int] = mapped_column(Integer, default=0)  # users the condition selected
    entered: Mapped[int] = mapped_column(Integer, default=0)  # journey runs this broadcast started
    skipped: Mapped[int] = mapped_column(Integer, default=0)  # already in the journey (a run open)
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[datetime | None]


class ApiKey(Base):
    """A key an admin created through the API (keys in settings stay where
    they are). Only the key's SHA-256 is stored: the key itself is shown once,
    when it is created. Revoked keys stay listed, with when."""

    __tablename__ = "api_keys"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    name: Mapped[str] = mapped_column(String(128))
    role: Mapped[str] = mapped_column(String(16))  # viewer | operator | admin | write
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    hint: Mapped[str] = mapped_column(String(16))  # the key's last characters, to tell keys apart
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    revoked_at: Mapped[datetime | None]


class CallbackReceipt(Base):
    """One vendor callback (WeCom, Official Account), stored before it is
    answered (``engine.callbacks``): the vendor hears "success" only once
    this row is written, and the journey events it makes are ingested after,
    off the request path. The id is derived from the decrypted message, so
    the vendor's retries of one message are one row, and its events' ids
    derive from this one (one event however often it is delivered).
    ``processed_at`` stays empty until every event it makes is stored (and a
    channel code's welcome journey started); until then the API's sweep
    processes it again. Messages that make no journey event (an unknown
    event, a corp tag definition change) are kept, processed at once, with
    why in ``outcome``."""

    __tablename__ = "callback_receipts"
    __table_args__ = (
        Index(
            "ix_callback_receipts_unprocessed",
            "received_at",
            sqlite_where=text("processed_at IS NULL"),
            postgresql_where=text("processed_at IS NULL"),
        ),
    )

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    vendor: Mapped[str] = mapped_column(String(32))  # wecom | official_account
    receiver: Mapped[str] = mapped_column(String(128))  # corp id / app id it was encrypted for
    # MsgType/Event/ChangeType, e.g. event/change_external_contact/add_external_contact
    kind: Mapped[str] = mapped_column(String(128))
    message: Mapped[dict[str, Any]] = mapped_column()  # the decrypted message's fields
    received_at: Mapped[datetime] = mapped_column(default=utcnow)
    # a channel code's tags and scan record written (once, whatever the retries)
    applied_at: Mapped[datetime | None]
    processed_at: Mapped[datetime | None]
    outcome: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text)


class SplitTestRow(Base):
    """A ``split test``'s life for one journey version and split node: when
    the first run reached it (the window starts then) and, once decided, the
    winner with who decided it (the test or an operator), why, and the
    per-variant numbers it was based on. One row per (journey, version,
    node): the decision is made once, whichever worker asks first."""

    __tablename__ = "split_tests"
    __table_args__ = (UniqueConstraint("journey_id", "version", "node_id", name="uq_split_tests_journey_version_node"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    journey_id: Mapped[str] = mapped_column(String(128))
    version: Mapped[int] = mapped_column(Integer)
    node_id: Mapped[str] = mapped_column(String(128))
    started_at: Mapped[datetime]  # workflow time of the first run at the split
    winner: Mapped[str | None] = mapped_column(String(64))
    decided_by: Mapped[str | None] = mapped_column(String(16))  # "test" | "operator"
    decided_at: Mapped[datetime | None]
    reason: Mapped[str | None] = mapped_column(Text)
    numbers: Mapped[dict[str, Any] | None] = mapped_column()


class ChannelCode(Base):
    """A named placement (``poster-bldgA-lobby``, a parcel card) with its
    own QR code (``engine.channel_codes``): a WeCom "contact me" code
    (``add_contact_way`` with ``state`` = the placement) or an Official
    Account parametric QR code (``qrcode/create`` with ``scene_str``). A
    scan or add through it tags the person (source ``channel_code``), may
    start a welcome journey, and is counted per code."""

    __tablename__ = "channel_codes"
    __table_args__ = (UniqueConstraint("vendor", "placement", name="uq_channel_codes_vendor_placement"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    vendor: Mapped[str] = mapped_column(String(32))  # wecom | official_account
    placement: Mapped[str] = mapped_column(String(64))  # the code's state / scene_str, as printed
    name: Mapped[str] = mapped_column(String(255))
    tags: Mapped[list[Any]] = mapped_column(default=list)
    welcome_journey: Mapped[str | None] = mapped_column(String(128))
    # codes compared side by side (card variants A and B of one campaign)
    group_name: Mapped[str | None] = mapped_column(String(128))
    staff: Mapped[list[Any]] = mapped_column(default=list)  # WeCom userids the code adds
    status: Mapped[str] = mapped_column(String(16), default="creating")  # creating | active | archived
    vendor_ref: Mapped[str | None] = mapped_column(String(255))  # WeCom config_id / OA ticket
    qr_url: Mapped[str | None] = mapped_column(Text)  # OA: what the QR encodes; WeCom: its picture's URL
    qr_image: Mapped[bytes | None]  # WeCom's picture, fetched once (WeCom gives no QR content to encode)
    qr_image_type: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
    archived_at: Mapped[datetime | None]


class ChannelCodeScan(Base):
    """One journey event that came through a channel code (a WeCom add with
    its state, an Official Account follow or scan with its scene): what the
    code's numbers count. Keyed by the event, so a vendor's retries and a
    callback processed twice count once; the person is read through the
    event (merges move events), ``user_id`` is who it was at the scan."""

    __tablename__ = "channel_code_scans"
    __table_args__ = (Index("ix_channel_code_scans_code_at", "code_id", "at"),)

    event_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    code_id: Mapped[str] = mapped_column(String(32))
    user_id: Mapped[str] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(64))  # the event's name
    contact: Mapped[bool] = mapped_column(Boolean)  # became a contact by it (added staff, followed)
    new_user: Mapped[bool] = mapped_column(Boolean)  # the store did not know the person before
    at: Mapped[datetime]


class TrackedLink(Base):
    """One link of one message, rewritten to ``/r/<token>`` when the send
    rendered it (``engine.tracked_links``): what a click on it records. The
    id is derived from the delivery, the link's place in the message and its
    URL under the link secret, so a retried send renders (and finds) the same
    row; the token in the URL is that id plus its signature."""

    __tablename__ = "tracked_links"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    delivery_key: Mapped[str] = mapped_column(String(255))  # the send's idempotency key
    run_key: Mapped[str | None] = mapped_column(String(255))
    journey_id: Mapped[str] = mapped_column(String(128))
    version: Mapped[int] = mapped_column(Integer)
    node_id: Mapped[str] = mapped_column(String(128))
    variant: Mapped[str | None] = mapped_column(String(64))
    template: Mapped[str] = mapped_column(String(128))
    user_id: Mapped[str] = mapped_column(String(64))  # who it was sent to (merges: read through canonical ids)
    position: Mapped[int] = mapped_column(Integer)  # the link's place in the message, from 0
    url: Mapped[str] = mapped_column(Text)  # where a click goes
    name: Mapped[str | None] = mapped_column(String(64))  # the operator's label, e.g. "serum"
    tags: Mapped[list[Any]] = mapped_column(default=list)  # content tags a click adds
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class LinkClick(Base):
    """One counted click on a tracked link (previews and bots are not):
    what the stats' click numbers count. Keyed by the ``message_clicked``
    event it records, so an exact retry of a click counts once while each
    new click counts again."""

    __tablename__ = "link_clicks"
    __table_args__ = (Index("ix_link_clicks_journey_version", "journey_id", "version"),)

    event_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    link_id: Mapped[str] = mapped_column(String(32))
    delivery_key: Mapped[str] = mapped_column(String(255))
    run_key: Mapped[str | None] = mapped_column(String(255))
    journey_id: Mapped[str] = mapped_column(String(128))
    version: Mapped[int] = mapped_column(Integer)
    node_id: Mapped[str] = mapped_column(String(128))
    variant: Mapped[str | None] = mapped_column(String(64))
    user_id: Mapped[str] = mapped_column(String(64))
    at: Mapped[datetime]


class KeptCount(Base):
    """A big journey's count kept on the shelf (``engine.shelf``): served by
    every API process until one of them finds it due and recounts. Keyed by
    a hash of the count's name (kind, journey, version, nodes)."""

    __tablename__ = "kept_counts"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    journey_id: Mapped[str] = mapped_column(String(128))
    value: Mapped[str] = mapped_column(Text)  # the count as JSON
    cost: Mapped[float] = mapped_column(Float)  # seconds it took
    taken_at: Mapped[datetime]
