"""Ending every running run of a journey, in bulk, with visible progress.

The normal path is one Temporal batch operation (cancellation, so each run
records "cancelled" in the store on its way out) over the visibility query
``JourneyId = "<id>" AND ExecutionStatus = "Running"``; Temporal paces it and
keeps its progress, so it survives an API restart. Job ids are
``stop-<journey>-<random>``, which lets progress be found again by listing
batch operations. Where batch operations are unavailable (a server with them
disabled, or its limit of concurrent batch jobs reached: a second stop while
the first runs) the runs are listed and cancelled one by one in a background
task, progress kept in memory.
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


@dataclass
class StopJobs:
    """In-memory progress of fallback jobs (batch jobs live in Temporal)."""

    jobs: dict[str, StopProgress] = field(default_factory=dict)
    latest: dict[str, str] = field(default_factory=dict)  # journey -> job id
    tasks: set[asyncio.Task] = field(default_factory=set)


def _prefix(journey_id: str) -> str:
    return f"stop-{journey_id}-"


async def start_stop(client: Client, journey_id: str, jobs: StopJobs) -> StopProgress:
    job_id = _prefix(journey_id) + uuid.uuid4().hex[:10]
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
    task = asyncio.create_task(_iterate(client, journey_id, progress))
    jobs.tasks.add(task)
    task.add_done_callback(jobs.tasks.discard)
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
