"""What the interpreter asks of the engine: activity inputs and outputs.

The workflow (``workflows/``) never touches I/O; it calls the activities by
their registered names (``contracts.names``) with these models, and
``engine.activities`` answers them. They are serialised by the pydantic data
converter into Temporal history, so: add optional fields, never rename.

Every time-dependent question carries ``now`` from ``workflow.now()`` so the
engine answers against workflow time (correct under time-skipping and replay),
not the activity's wall clock.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field


class EventCountQuery(BaseModel):
    event: str
    within_seconds: int | None = None

    @property
    def key(self) -> str:
        return f"{self.event}|{self.within_seconds or ''}"


class UserSnapshotRequest(BaseModel):
    user_id: str
    now: datetime
    event_counts: list[EventCountQuery] = Field(default_factory=list)
    templates: list[str] = Field(default_factory=list)


class UserSnapshot(BaseModel):
    """What conditions, quiet hours and best-of sends need to know about a user."""

    user_id: str
    exists: bool = True
    tags: list[str] = Field(default_factory=list)
    attributes: dict[str, Any] = Field(default_factory=dict)
    stage: str | None = None
    rfm: str | None = None
    timezone: str | None = None
    reachable: list[str] = Field(default_factory=list)  # channels with an address and consent
    event_counts: dict[str, int] = Field(default_factory=dict)  # EventCountQuery.key -> count
    transactional_templates: list[str] = Field(default_factory=list)  # of the requested ones


class BeginRunRequest(BaseModel):
    """Asked first by every run: may this user enter now (re-entry rule, from the
    store so it holds beyond Temporal's retention)? Registers the entry; idempotent
    per ``run_key``."""

    run_key: str  # workflow id + first run id: stable across continue-as-new
    journey_id: str
    version: int
    user_id: str
    reentry_mode: Literal["once", "always", "after"]
    cooldown_seconds: int | None = None
    now: datetime
    trigger_event: dict[str, Any] | None = None


class BeginRunResult(BaseModel):
    allowed: bool
    reason: str | None = None


class EndRunRequest(BaseModel):
    run_key: str
    journey_id: str
    user_id: str
    outcome: Literal["completed", "exited", "converted", "cancelled", "refused", "failed"]
    reason: str | None = None
    now: datetime


class SendRequest(BaseModel):
    idempotency_key: str  # run_key + node id + visit number: same across retries/replays
    run_key: str
    journey_id: str
    version: int
    node_id: str
    user_id: str
    channels: list[str]
    best_of: bool = False
    template: str
    variant: str | None = None
    holdout: bool = False  # holdout users are recorded as suppressed, never sent
    event: dict[str, Any] | None = None  # properties of the trigger / last awaited event
    coupon: dict[str, Any] | None = None  # the coupon issued last in this run
    journey_limit_count: int | None = None
    journey_limit_window_seconds: int | None = None
    journey_limit_calendar: Literal["day", "week"] | None = None  # ``limit N per day``: since local midnight
    journey_timezone: str | None = None  # calendar windows use the user's timezone, else this one
    # ``on capped defer``: a cap that would allow this send by this moment
    # answers ``capped`` with ``retry_at`` (nothing recorded, nothing counted)
    # instead of suppressing it. None (``on capped skip``): suppress.
    defer_until: datetime | None = None
    # The journey's priority (1 first): when the caps leave the user one more
    # message, a better-priority journey's send gets it (``engine.caps``).
    # None: this send does not wait for rivals (an interpreter from before).
    priority: int | None = None
    now: datetime


class SendResult(BaseModel):
    # ``capped``: only with ``defer_until``; the run sleeps until ``retry_at``
    # and asks again with the same idempotency key.
    status: Literal["sent", "pending", "suppressed", "failed", "capped"]
    channel: str | None = None
    reason: str | None = None
    delivery_id: str | None = None
    retry_at: datetime | None = None


class CouponRequest(BaseModel):
    idempotency_key: str
    run_key: str
    journey_id: str
    node_id: str
    user_id: str
    pool: str
    now: datetime


class CouponResult(BaseModel):
    status: Literal["issued", "out_of_stock", "limit_reached", "unknown_pool"]
    code: str | None = None
    coupon: dict[str, Any] | None = None  # pool, code, value, expires_at...: template context


class TagRequest(BaseModel):
    user_id: str
    action: Literal["add", "remove"]
    tags: list[str]
    source: str  # "journey:<id>"
    now: datetime


class StepRecord(BaseModel):
    """One thing the run did, for timelines and per-node stats."""

    run_key: str
    seq: int = 0  # per run, increasing across continue-as-new: (run_key, seq) is unique
    journey_id: str
    version: int
    user_id: str
    node_id: str
    kind: str  # step kind, or "enter", "goal", "exit", "end"
    outcome: str  # "entered", "passed", "waiting", "event", "timeout", "branch:0", "variant:A", ...
    variant: str | None = None
    at: datetime
    detail: dict[str, Any] = Field(default_factory=dict)


class RecordStepsRequest(BaseModel):
    records: list[StepRecord]
    # The run's end, written with its last records: one local activity instead
    # of a flush plus an end_run activity (three history events fewer a run).
    end: EndRunRequest | None = None


class SplitTestRequest(BaseModel):
    """A run at a ``split test``: when did the test start (the first run
    here starts it), and is there a winner; with ``decide``, decide now if
    nobody has (the window is over)."""

    journey_id: str
    version: int
    node_id: str
    now: datetime
    decide: bool = False


class SplitTestResult(BaseModel):
    started_at: datetime
    winner: str | None = None  # decided: every run from now on takes it
    decided_by: Literal["test", "operator"] | None = None
    reason: str | None = None
