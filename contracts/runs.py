"""Inputs, signals and carried state of ``JourneyWorkflow``.

These travel through Temporal history (pydantic data converter): add optional
fields only, never rename.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field

from dsl.ir import Journey


class UserEvent(BaseModel):
    """Something the user did. ``id`` de-duplicates: the same event delivered
    twice (retries, replays of ingest) is handled once per run."""

    id: str
    name: str
    properties: dict[str, Any] = Field(default_factory=dict)
    occurred_at: datetime | None = None


class MergedNotice(BaseModel):
    """The ``merged`` signal: this run's user was merged with another person
    who is in the same journey, and the journey's re-entry rule allows one
    run; the other run (``kept_run_key``) goes on and this one ends at once
    with reason ``merged`` (``engine.merges`` decides which)."""

    kept_run_key: str | None = None
    survivor_user_id: str | None = None


class RunState(BaseModel):
    """Everything a run carries across continue-as-new."""

    run_key: str
    node: str | None
    entered_at: datetime
    visits: dict[str, int] = Field(default_factory=dict)
    variants: dict[str, str] = Field(default_factory=dict)  # split node id -> variant name
    variant: str | None = None  # the latest variant, for search attributes/stats
    holdout: bool = False
    last_event: dict[str, Any] | None = None
    last_coupon: dict[str, Any] | None = None
    seen_event_ids: list[str] = Field(default_factory=list)
    converted: bool = False
    record_seq: int = 0  # last StepRecord.seq written
    # Events a later ``wait for event`` may still take, oldest first: those the
    # journey waits for somewhere, arrived after entry (never the trigger) and
    # not taken yet (runs on the buffered-events revision; workflows.event_wait).
    unconsumed_events: list[UserEvent] = Field(default_factory=list)


class JourneyInput(BaseModel):
    journey_id: str
    version: int
    hash: str
    user_id: str
    ir: Journey
    trigger_event: UserEvent | None = None
    state: RunState | None = None  # set when continuing as new
    # Continue-as-new after this many steps in one run (besides Temporal's own
    # suggestion): lets tests and very chatty loops keep histories short.
    continue_after_steps: int | None = None
    # Upsert search attributes (off where the server has them unregistered).
    search_attributes: bool = True
    # Split step id -> the variant that step takes instead of its random draw,
    # so a simulation or a journey test can walk each branch (``journeys
    # simulate``/``journeys test`` set it; production never does). Empty by
    # default and absent from older histories: with it empty the split draws
    # exactly as before (same ``workflow.random()`` call, same commands), so
    # no ``workflow.patched`` gate is needed.
    forced_variants: dict[str, str] = Field(default_factory=dict)


class RunStatus(BaseModel):
    """Answer of the ``status`` query."""

    journey_id: str
    version: int
    user_id: str
    node: str | None
    waiting: str | None
    variant: str | None
    holdout: bool
    converted: bool
    entered_at: datetime
    steps_run: int


def workflow_id(journey_id: str, user_id: str) -> str:
    """One run per (journey, user): the same event never starts a second one."""
    return f"journey:{journey_id}:{user_id}"
