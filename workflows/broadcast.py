"""``AudienceBroadcastWorkflow``: enter everyone a tag-audience entry selects.

One execution per broadcast (a scheduled fire or an API "run now"). It walks
the audience page by page through the ``journeys.broadcast_page`` activity
(called by name: ``contracts.names``) — which selects,
starts each user's ``JourneyWorkflow`` and commits progress in the store — and
continues as new every ``pages_per_run`` pages, so history stays short for any
audience size.

Crash safety lives in the store, not in this workflow's memory: the progress
row holds the cursor, ``broadcast_begin`` returns the existing row for a known
broadcast id, and a redone page enters nobody twice (see
``engine.broadcast_activities``). So a broadcast whose workflow was terminated,
timed out or lost can be started again with the same id and finishes the job.

This module must stay free of side effects: the workflow sandbox re-imports it.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from contracts import names
    from contracts.broadcast import (
        BeginBroadcastRequest,
        BroadcastInput,
        BroadcastPageRequest,
        BroadcastProgress,
        FinishBroadcastRequest,
    )

_RETRY = RetryPolicy(initial_interval=timedelta(seconds=1), maximum_interval=timedelta(minutes=1))
_SHORT = timedelta(seconds=30)
# A page starts up to page_size workflows; the activity heartbeats every 10 s
# whatever it awaits, so a worker that dies mid-page is noticed within the
# heartbeat timeout.
_PAGE_TIMEOUT = timedelta(minutes=10)
_PAGE_HEARTBEAT = timedelta(seconds=60)


@workflow.defn(name=names.BROADCAST_WORKFLOW)
class AudienceBroadcastWorkflow:
    @workflow.init
    def __init__(self, inp: BroadcastInput) -> None:
        self._progress: BroadcastProgress | None = inp.progress

    @workflow.query(name="progress")
    def progress(self) -> BroadcastProgress | None:
        """The last committed progress (None until the broadcast has begun)."""
        return self._progress

    @workflow.run
    async def run(self, inp: BroadcastInput) -> BroadcastProgress:
        broadcast_id = inp.broadcast_id or workflow.info().workflow_id
        try:
            return await self._run(inp, broadcast_id)
        except asyncio.CancelledError:
            await workflow.execute_activity(
                names.BROADCAST_FINISH,
                FinishBroadcastRequest(
                    broadcast_id=broadcast_id, status="halted", reason="cancelled", now=workflow.now()
                ),
                result_type=BroadcastProgress,
                start_to_close_timeout=_SHORT,
                retry_policy=_RETRY,
            )
            raise

    async def _run(self, inp: BroadcastInput, broadcast_id: str) -> BroadcastProgress:
        progress = inp.progress
        if progress is None:
            progress = await workflow.execute_activity(
                names.BROADCAST_BEGIN,
                BeginBroadcastRequest(
                    broadcast_id=broadcast_id,
                    journey_id=inp.journey_id,
                    version=inp.version,
                    trigger=inp.trigger,
                    page_size=inp.page_size,
                    now=workflow.now(),
                ),
                result_type=BroadcastProgress,
                start_to_close_timeout=_SHORT,
                retry_policy=_RETRY,
            )
        self._progress = progress
        pages_here = 0
        while not progress.done:
            if pages_here >= max(1, inp.pages_per_run) or workflow.info().is_continue_as_new_suggested():
                workflow.continue_as_new(inp.model_copy(update={"broadcast_id": broadcast_id, "progress": progress}))
            progress = await workflow.execute_activity(
                names.BROADCAST_PAGE,
                BroadcastPageRequest(
                    broadcast_id=broadcast_id,
                    journey_id=inp.journey_id,
                    version=inp.version,
                    hash=inp.hash,
                    ir=inp.ir,
                    cursor=progress.cursor,
                    pages=progress.pages,
                    page_size=progress.page_size,
                    task_queue=inp.task_queue,
                    now=workflow.now(),
                ),
                result_type=BroadcastProgress,
                start_to_close_timeout=_PAGE_TIMEOUT,
                heartbeat_timeout=_PAGE_HEARTBEAT,
                retry_policy=_RETRY,
            )
            self._progress = progress
            pages_here += 1
        return progress
