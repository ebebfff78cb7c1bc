"""Ending every running run of a journey, in bulk, with visible progress.

The normal path is one Temporal batch operation (cancellation, so each run
records "cancelled" in the store on its way out) over the visibility query
``JourneyId = "<id>" AND ExecutionStatus = "Running"``; Temporal paces it and
keeps its progress, so it survives an API restart. Job ids are
``stop-<journey>-<random>``, which lets progress be found again by listing
batch operations. Where batch operations are unavailable (a server with them
disabled, or its limit of concurrent batch jobs reached: a second stop while
the first runs) the runs are listed and cancelled one by one in a background
task, progress kept in memory. Where Temporal refuses or cannot be reached
at all, the stop is *queued*: the journey is already stopped (no new
entries), the job shows ``queued`` with Temporal's answer, and a background
task tries again with backoff until a job starts (or gives up after
``QUEUE_FOR``, state ``failed``: stopping again starts afresh).
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from dataclasses import dataclass, field

from temporalio.api.batch.v1 import BatchOperationCancellation
from temporalio.api.workflowservice.v1 import (
    DescribeBatchOperationRequest,
    ListBatchOperationsRequest,
    StartBatchOperationRequest,
)
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

from engine.starts import cancel_run
from engine.visibility import running_query

log = logging.getLogger("journeys.engine")

_STATES = {0: "unknown", 1: "running", 2: "completed", 3: "failed"}


@dataclass
class StopProgress:
    job_id: str
    method: str  # "batch" | "iterate"
    state: str = "running"
    total: int | None = None
    completed: int | None = None
    failed: int | None = None
    error: str | None = None  # why a queued stop has not started yet (Temporal's answer)


QUEUE_FOR = 600.0  # seconds a queued stop keeps trying to start
QUEUE_FIRST_WAIT = 1.0  # then doubling, up to QUEUE_MAX_WAIT
QUEUE_MAX_WAIT = 30.0


@dataclass
class StopJobs:
    """In-memory progress of fallback jobs (batch jobs live in Temporal)."""

    jobs: dict[str, StopProgress] = field(default_factory=dict)
    latest: dict[str, str] = field(default_factory=dict)  # journey -> job id
    tasks: set[asyncio.Task] = field(default_factory=set)


def _prefix(journey_id: str) -> str:
    return f"stop-{journey_id}-"


async def start_stop(client: Client, journey_id: str, jobs: StopJobs) -> StopProgress:
    """A batch job, else cancelling one by one, else a queued stop that keeps
    trying: never an error to the caller (the journey is stopped already)."""
    try:
        return await _start(client, journey_id, jobs)
    except RPCError as exc:
        log.warning("Temporal refused to stop journey %s (%s); queued", journey_id, exc.status.name)
        job_id = _prefix(journey_id) + uuid.uuid4().hex[:10]
        jobs.latest[journey_id] = job_id
        progress = StopProgress(job_id, "queued", state="queued", error=_said(exc))
        jobs.jobs[job_id] = progress
        _background(jobs, _retry_start(client, journey_id, jobs, progress))
        return progress


def _said(exc: RPCError) -> str:
    return f"Temporal answered {exc.status.name}: {exc.message}"[:500]


def _background(jobs: StopJobs, work) -> None:  # noqa: ANN001 - a coroutine
    task = asyncio.create_task(work)
    jobs.tasks.add(task)
    task.add_done_callback(jobs.tasks.discard)


async def _retry_start(client: Client, journey_id: str, jobs: StopJobs, queued: StopProgress) -> None:
    """Start the queued stop once Temporal takes it; the queued job then shows
    the started job's progress (batch jobs are read from Temporal)."""
    loop = asyncio.get_running_loop()
    give_up, wait = loop.time() + QUEUE_FOR, QUEUE_FIRST_WAIT
    while loop.time() < give_up:
        await asyncio.sleep(wait)
        wait = min(wait * 2, QUEUE_MAX_WAIT)
        try:
            started = await _start(client, journey_id, jobs, job_id=queued.job_id)
        except RPCError as exc:
            queued.error = _said(exc)
            continue
        except Exception as exc:  # noqa: BLE001 - kept as the job's error, tried again
            queued.error = f"{type(exc).__name__}: {exc}"[:500]
            continue
        if started.method == "batch":
            jobs.jobs.pop(queued.job_id, None)  # Temporal has it now: describe reads it there
        log.info("queued stop of %s started as %s (%s)", journey_id, started.job_id, started.method)
        return
    queued.state = "failed"
    log.error("queued stop of %s did not start in %.0f s: %s", journey_id, QUEUE_FOR, queued.error)


async def _start(client: Client, journey_id: str, jobs: StopJobs, job_id: str | None = None) -> StopProgress:
    job_id = job_id or _prefix(journey_id) + uuid.uuid4().hex[:10]
    jobs.latest[journey_id] = job_id
    try:
        await client.workflow_service.start_batch_operation(
            StartBatchOperationRequest(
                namespace=client.namespace,
                visibility_query=running_query(journey_id),
                job_id=job_id,
                reason=f"journey {journey_id} stopped",
                cancellation_operation=BatchOperationCancellation(identity="journeys-api"),
            )
        )
        return StopProgress(job_id, "batch")
    except RPCError as exc:
        if exc.status not in (
            RPCStatusCode.UNIMPLEMENTED,
            RPCStatusCode.FAILED_PRECONDITION,
            RPCStatusCode.PERMISSION_DENIED,
            RPCStatusCode.RESOURCE_EXHAUSTED,  # the server's limit of concurrent batch jobs (dev server: 1)
        ):
            raise
        log.warning("batch operations unavailable (%s); cancelling runs of %s one by one", exc.status.name, journey_id)
    progress = StopProgress(job_id, "iterate", total=0, completed=0, failed=0)
    jobs.jobs[job_id] = progress
    _background(jobs, _iterate(client, journey_id, progress))
    return progress


async def _iterate(client: Client, journey_id: str, progress: StopProgress) -> None:
    try:
        async for wf in client.list_workflows(running_query(journey_id)):
            progress.total = (progress.total or 0) + 1
            try:
                await cancel_run(client, wf.id)
                progress.completed = (progress.completed or 0) + 1
            except RPCError:
                progress.failed = (progress.failed or 0) + 1
        progress.state = "completed"
    except Exception:  # noqa: BLE001 - recorded as the job's state, logged
        log.exception("stopping journey %s failed", journey_id)
        progress.state = "failed"


async def describe(client: Client, journey_id: str, jobs: StopJobs, job_id: str | None = None) -> StopProgress | None:
    """Progress of the given job, or of the journey's latest stop."""
    job_id = job_id or jobs.latest.get(journey_id) or await _latest_batch(client, journey_id)
    if job_id is None or not job_id.startswith(_prefix(journey_id)):
        return None
    if job_id in jobs.jobs:
        return jobs.jobs[job_id]
    try:
        d = await client.workflow_service.describe_batch_operation(
            DescribeBatchOperationRequest(namespace=client.namespace, job_id=job_id)
        )
    except RPCError as exc:
        if exc.status in (RPCStatusCode.NOT_FOUND, RPCStatusCode.INVALID_ARGUMENT, RPCStatusCode.UNIMPLEMENTED):
            return None
        raise
    return StopProgress(
        job_id,
        "batch",
        state=_STATES.get(int(d.state), "unknown"),
        total=int(d.total_operation_count),
        completed=int(d.complete_operation_count),
        failed=int(d.failure_operation_count),
    )


async def _latest_batch(client: Client, journey_id: str) -> str | None:
    try:
        listed = await client.workflow_service.list_batch_operations(
            ListBatchOperationsRequest(namespace=client.namespace, page_size=1000)
        )
    except RPCError:
        return None
    mine = [op for op in listed.operation_info if op.job_id.startswith(_prefix(journey_id))]
    if not mine:
        return None
    return max(mine, key=lambda op: op.start_time.ToDatetime()).job_id
