"""What ``AudienceBroadcastWorkflow`` asks of ``BroadcastActivities``, and the
progress it reports.

These go through Temporal history (pydantic data converter) and the API:
add optional fields only, never rename.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel

from dsl.ir import Journey

BroadcastStatus = Literal["running", "completed", "halted"]
DEFAULT_PAGE_SIZE = 500


class BroadcastInput(BaseModel):
    """Input of ``AudienceBroadcastWorkflow``.

    ``broadcast_id`` defaults to the workflow id: a scheduled action's workflow
    id is unique per fire time (Temporal appends the time), and starting the
    workflow again with the same id after a crash resumes the same broadcast.
    ``progress`` is set when continuing as new; the store's row stays the
    source of truth for the cursor either way.
    """

    journey_id: str
    version: int
    hash: str
    ir: Journey
    broadcast_id: str | None = None
    trigger: Literal["api", "schedule"] = "api"
    page_size: int = DEFAULT_PAGE_SIZE
    # Continue-as-new after this many pages, so a million-user broadcast keeps
    # a short history.
    pages_per_run: int = 50
    # Where entered users' ``JourneyWorkflow`` runs go; None = the task queue
    # the broadcast activity runs on without its ``-broadcasts`` suffix
    # (``engine.temporal.runs_task_queue``): the queue the interpreter polls.
    task_queue: str | None = None
    progress: BroadcastProgress | None = None


class BroadcastProgress(BaseModel):
    """Where a broadcast is; answer of the ``progress`` query and of the API."""

    broadcast_id: str
    journey_id: str
    version: int
    trigger: str
    status: BroadcastStatus
    reason: str | None = None
    cursor: str | None = None  # last user id scanned
    page_size: int
    pages: int = 0
    scanned: int = 0
    matched: int = 0
    entered: int = 0  # JourneyWorkflow runs this broadcast started (the run's re-entry rule may still refuse)
    skipped: int = 0  # a run of the journey was already open for the user
    started_at: datetime
    updated_at: datetime
    finished_at: datetime | None = None

    @property
    def done(self) -> bool:
        return self.status != "running"


class BeginBroadcastRequest(BaseModel):
    broadcast_id: str
    journey_id: str
    version: int
    trigger: str
    page_size: int
    now: datetime


class BroadcastPageRequest(BaseModel):
    """Process the page after ``cursor``; ``pages`` is how many pages the caller
    knows to be committed, so a retry of a page already committed is a no-op."""

    broadcast_id: str
    journey_id: str
    version: int
    hash: str
    ir: Journey
    cursor: str | None
    pages: int
    page_size: int
    task_queue: str | None = None
    now: datetime


class FinishBroadcastRequest(BaseModel):
    broadcast_id: str
    status: BroadcastStatus
    reason: str | None = None
    now: datetime


BroadcastInput.model_rebuild()


def broadcast_workflow_id(journey_id: str, broadcast_id: str) -> str:
    """Workflow id of a broadcast started through the API ("run now")."""
    return f"broadcast:{journey_id}:{broadcast_id}"
