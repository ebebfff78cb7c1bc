"""Starting, signalling and cancelling journey runs on Temporal: the one run
starter the API, event fan-out (``engine.dispatch``) and audience broadcasts
(``engine.broadcast_activities``) share.

One workflow per (journey, user) (``contracts.runs.workflow_id``), one
conflict policy for every start: a run already going for that pair is used
as it is (``USE_EXISTING``; with a trigger event that the running run should
see, signal-with-start hands it the event instead), and a new run may follow
a closed one (``ALLOW_DUPLICATE``). Whether the user may really enter again
is decided by the run itself from the store (``engine.runs.begin``), which
remembers entries beyond Temporal's retention and enters a journey at most
once per (journey, user, trigger event). Every start carries the search
attributes the per-node counts and the stop's batch query read.

engine does not import workflows/: the workflow is started by its
registered type name.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from temporalio.client import Client, WorkflowHandle
from temporalio.common import (
    SearchAttributePair,
    TypedSearchAttributes,
    WorkflowIDConflictPolicy,
    WorkflowIDReusePolicy,
)
from temporalio.service import RPCError, RPCStatusCode

from contracts import search_attributes as sa
from contracts.names import EVENT_SIGNAL, JOURNEY_WORKFLOW, MERGED_SIGNAL
from contracts.runs import JourneyInput, MergedNotice, UserEvent, workflow_id
from dsl.ir import Journey
from engine.catalog import VersionInfo


@dataclass(frozen=True)
class Started:
    user_id: str
    workflow_id: str
    run_id: str | None
    started: bool | None  # False: a run was already going (None: the server did not say)


def run_input(version: VersionInfo, ir: Journey, user_id: str, trigger: UserEvent | None = None) -> JourneyInput:
    """The input of a run of a deployed version."""
    return JourneyInput(
        journey_id=version.journey_id,
        version=version.version,
        hash=version.hash,
        user_id=user_id,
        ir=ir,
        trigger_event=trigger,
    )


def _attributes(inp: JourneyInput) -> TypedSearchAttributes:
    return TypedSearchAttributes(
        [
            SearchAttributePair(sa.JOURNEY_ID, inp.journey_id),
            SearchAttributePair(sa.JOURNEY_VERSION, inp.version),
            SearchAttributePair(sa.JOURNEY_USER, inp.user_id),
        ]
    )


async def start_run(
    client: Client,
    task_queue: str,
    inp: JourneyInput,
    *,
    signal_running: bool = True,
    memo: dict[str, Any] | None = None,
) -> Started:
    """Start one user's run, or find the one going.

    With a trigger event and ``signal_running`` (an event entry), the start
    is a signal-with-start: a new run gets the event as its first signal
    (and drops it, having entered on it), a running one receives it like
    any other event. Without (an API start, a broadcast's marker), a running
    run is left alone. ``memo`` is stored on a new run only, so a caller can
    tell a run it started from one that was there (``memo_of``)."""
    wid = workflow_id(inp.journey_id, inp.user_id)
    options: dict[str, Any] = {
        "id": wid,
        "task_queue": task_queue,
        "id_reuse_policy": WorkflowIDReusePolicy.ALLOW_DUPLICATE,
        "search_attributes": _attributes(inp),
        "memo": memo,
    }
    if inp.trigger_event is not None and signal_running:
        # signal-with-start always uses a running run: the same policy
        options.update(start_signal=EVENT_SIGNAL, start_signal_args=[inp.trigger_event])
    else:
        options["id_conflict_policy"] = WorkflowIDConflictPolicy.USE_EXISTING
    handle: WorkflowHandle[Any, Any] = await client.start_workflow(JOURNEY_WORKFLOW, inp, result_type=str, **options)
    return Started(inp.user_id, wid, handle.result_run_id, _started(handle))


def _started(handle: WorkflowHandle[Any, Any]) -> bool | None:
    # The start response says whether this call started the run; the SDK keeps
    # it on the handle without a public accessor (servers before 1.24 omit it).
    response = getattr(handle, "_start_workflow_response", None)
    return bool(response.started) if response is not None and hasattr(response, "started") else None


async def memo_of(client: Client, wid: str, key: str) -> Any:
    """A memo value of the workflow's latest run (None when absent)."""
    desc = await client.get_workflow_handle(wid).describe()
    return await desc.memo_value(key, default=None)


async def signal_event(client: Client, wid: str, event: UserEvent) -> bool:
    """Deliver an event to a running workflow; False if it is gone (finished
    since the store was read: nothing to deliver to)."""
    try:
        await client.get_workflow_handle(wid).signal(EVENT_SIGNAL, event)
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:
            return False
        raise
    return True


async def signal_merged(client: Client, wid: str, notice: MergedNotice) -> bool:
    """Tell a run that its user was merged into a person whose other run in
    the journey is kept (it ends as ``merged``); False if it is gone."""
    try:
        await client.get_workflow_handle(wid).signal(MERGED_SIGNAL, notice)
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:
            return False
        raise
    return True


async def cancel_run(client: Client, wid: str) -> bool:
    """Request cancellation (the workflow records the run as cancelled);
    False if there is no such run."""
    try:
        await client.get_workflow_handle(wid).cancel()
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:
            return False
        raise
    return True
