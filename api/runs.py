"""Starting, signalling and cancelling journey runs on Temporal.

One workflow per (journey, user) (``workflow_id``); starting reuses a running
one (``USE_EXISTING``) and allows a new one after the last closed
(``ALLOW_DUPLICATE``) — whether the user may really enter again is decided
by the workflow itself from the store (``begin_run``), which remembers
entries beyond Temporal's retention.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from temporalio.client import Client
from temporalio.common import (
    SearchAttributePair,
    TypedSearchAttributes,
    WorkflowIDConflictPolicy,
    WorkflowIDReusePolicy,
)
from temporalio.service import RPCError, RPCStatusCode

from contracts import search_attributes as sa
from contracts.runs import JourneyInput, UserEvent, workflow_id
from dsl.ir import Journey
from engine.catalog import VersionInfo
from workflows.journey import JourneyWorkflow

log = logging.getLogger("journeys.api")


@dataclass(frozen=True)
class Started:
    user_id: str
    workflow_id: str
    run_id: str | None
    started: bool | None


def _attributes(version: VersionInfo, user_id: str) -> TypedSearchAttributes:
    return TypedSearchAttributes(
        [
            SearchAttributePair(sa.JOURNEY_ID, version.journey_id),
            SearchAttributePair(sa.JOURNEY_VERSION, version.version),
            SearchAttributePair(sa.JOURNEY_USER, user_id),
        ]
    )


async def start_run(
    client: Client,
    task_queue: str,
    version: VersionInfo,
    ir: Journey,
    user_id: str,
    trigger: UserEvent | None = None,
) -> Started:
    """Start (or, with a trigger event, signal-with-start) one user's run."""
    wid = workflow_id(version.journey_id, user_id)
    inp = JourneyInput(
        journey_id=version.journey_id,
        version=version.version,
        hash=version.hash,
        user_id=user_id,
        ir=ir,
        trigger_event=trigger,
    )
    if trigger is None:
        handle = await client.start_workflow(
            JourneyWorkflow.run,
            inp,
            id=wid,
            task_queue=task_queue,
            id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE,
            id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
            search_attributes=_attributes(version, user_id),
        )
    else:
        handle = await client.start_workflow(
            JourneyWorkflow.run,
            inp,
            id=wid,
            task_queue=task_queue,
            id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE,
            search_attributes=_attributes(version, user_id),
            start_signal="event",
            start_signal_args=[trigger],
        )
    response = getattr(handle, "_start_workflow_response", None)
    started = bool(response.started) if response is not None and hasattr(response, "started") else None
    return Started(user_id, wid, handle.result_run_id, started)


async def signal_event(client: Client, wid: str, event: UserEvent) -> bool:
    """Deliver an event to a running workflow; False if it is gone (finished
    since the store was read: nothing to deliver to)."""
    try:
        await client.get_workflow_handle(wid).signal("event", event)
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:
            return False
        raise
    return True


async def cancel_run(client: Client, wid: str) -> bool:
    """Request cancellation; the workflow records the run as cancelled."""
    try:
        await client.get_workflow_handle(wid).cancel()
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:
            return False
        raise
    return True


def quote(value: str) -> str:
    """A visibility-query string literal."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


async def waiting_counts(
    client: Client, journey_id: str, node_ids: list[str], version: int | None = None
) -> dict[str, int]:
    """Running runs per node they wait at. Visibility cannot GROUP BY a custom
    keyword, so one count per waiting node (only wait-type nodes upsert it)."""
    import asyncio

    base = f'JourneyId = {quote(journey_id)} AND ExecutionStatus = "Running"'
    if version is not None:
        base += f" AND JourneyVersion = {int(version)}"

    async def one(node: str) -> tuple[str, int]:
        result = await client.count_workflows(f"{base} AND JourneyStep = {quote(node)}")
        return node, int(result.count)

    return dict(await asyncio.gather(*(one(n) for n in node_ids)))


async def running_count(client: Client, journey_id: str) -> int:
    result = await client.count_workflows(f'JourneyId = {quote(journey_id)} AND ExecutionStatus = "Running"')
    return int(result.count)
