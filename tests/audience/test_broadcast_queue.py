"""Broadcasts run on their own task queue (``engine.temporal.broadcast_task_queue``):
their workflow tasks and activities never wait behind the runs they start,
which go to the main queue. Broadcasts on the main queue (started before the
split) still finish there."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime
from pathlib import Path

from temporalio.client import Client, ScheduleActionStartWorkflow, WorkflowExecutionStatus, WorkflowHandle
from temporalio.testing import WorkflowEnvironment

from contracts.broadcast import BroadcastInput, BroadcastProgress
from contracts.runs import workflow_id
from dsl.ir import Journey
from engine.catalog import VersionInfo
from engine.channels.config import ChannelsConfig
from engine.schedules import build_schedule, start_broadcast
from engine.settings import Settings
from engine.store import Store
from engine.templates import upsert_template
from engine.temporal import TASK_QUEUE, broadcast_task_queue, runs_task_queue
from runtime.worker import build_worker, run_worker
from tests.audience.harness import audience_journey, engine, population
from workflows.broadcast import AudienceBroadcastWorkflow

WHERE = "tag vip and not tag blocked"


def _version(journey_id: str, ir: Journey) -> VersionInfo:
    return VersionInfo(
        journey_id=journey_id,
        version=1,
        hash=ir.content_hash(),
        ir=ir.model_dump(mode="json"),
        source="",
        status="active",
        created_at=datetime.now(UTC),
    )


async def _result(env: WorkflowEnvironment, wid: str, timeout: float = 60.0) -> BroadcastProgress:
    handle = env.client.get_workflow_handle(wid, result_type=BroadcastProgress)
    return await asyncio.wait_for(handle.result(), timeout)


def test_the_broadcast_queue_is_derived_from_the_runs_queue() -> None:
    assert broadcast_task_queue("journeys") == "journeys-broadcasts"
    assert runs_task_queue(broadcast_task_queue("tq-1")) == "tq-1"
    assert runs_task_queue("tq-1") == "tq-1"
    journey_id, ir = audience_journey(WHERE)
    action = build_schedule(journey_id, 1, "h", ir, task_queue="tq-x").action
    assert isinstance(action, ScheduleActionStartWorkflow)
    assert action.task_queue == "tq-x-broadcasts"
    (inp,) = action.args
    assert isinstance(inp, BroadcastInput) and inp.task_queue == "tq-x"  # the runs go to the main queue
    assert build_schedule(journey_id, 1, "h", ir).action.task_queue == f"{TASK_QUEUE}-broadcasts"  # type: ignore[union-attr]


async def test_a_broadcast_fans_out_while_no_journey_worker_polls(dev_env: WorkflowEnvironment, db: Store) -> None:
    """The measured stall: a broadcast's workflow tasks queued behind the runs
    it had started. With its own queue it needs nothing from the main queue:
    with only the broadcast worker up, every start is made (the runs wait,
    unstarted, on the main queue) and the broadcast completes; a journey
    worker coming up then runs them."""
    expected = population(db, 40)
    journey_id, ir = audience_journey(WHERE)
    async with engine(dev_env.client, db, journey_worker=False) as eng:
        wid = await start_broadcast(
            dev_env.client, eng.task_queue, _version(journey_id, ir), ir, trigger="api", page_size=7
        )
        done = await _result(dev_env, wid)
        assert (done.status, done.matched, done.entered, done.skipped) == ("completed", len(expected), len(expected), 0)
        assert (await dev_env.client.get_workflow_handle(wid).describe()).task_queue == eng.broadcast_queue

        assert eng.runs_total(journey_id) == 0  # no run has begun: nobody polls the main queue
        for user_id in (expected[0], expected[-1]):
            run = await dev_env.client.get_workflow_handle(workflow_id(journey_id, user_id)).describe()
            assert (run.status, run.task_queue) == (WorkflowExecutionStatus.RUNNING, eng.task_queue)

        async with build_worker(dev_env.client, eng.journey_acts.all(), eng.task_queue):
            assert await eng.wait_runs_ended(journey_id, len(expected)) == len(expected)
        assert eng.admitted_runs(journey_id) == dict.fromkeys(expected, 1)
        assert eng.outbox_users(journey_id) == dict.fromkeys(expected, 1)


async def _start_without_runs_queue(client: Client, journey_id: str, ir: Journey, queue: str) -> WorkflowHandle:
    """A broadcast whose input names no queue for its runs (started by hand,
    or before broadcasts had their own queue), on ``queue``."""
    return await client.start_workflow(
        AudienceBroadcastWorkflow.run,
        BroadcastInput(journey_id=journey_id, version=1, hash=ir.content_hash(), ir=ir, page_size=7),
        id=f"no-runs-queue-{uuid.uuid4().hex[:8]}",
        task_queue=queue,
    )


async def test_a_broadcast_on_the_main_queue_still_finishes(dev_env: WorkflowEnvironment, db: Store) -> None:
    """Started before broadcasts had their own queue (no ``task_queue`` in
    its input, on the main queue): the main worker still has the broadcast
    workflow and activities, and the runs go to the queue it runs on."""
    expected = population(db, 20)
    journey_id, ir = audience_journey(WHERE)
    async with engine(dev_env.client, db) as eng:
        handle = await _start_without_runs_queue(dev_env.client, journey_id, ir, eng.task_queue)
        done = await asyncio.wait_for(handle.result(), 60)
        assert (done.status, done.entered) == ("completed", len(expected))
        assert await eng.wait_runs_ended(journey_id, len(expected)) == len(expected)


async def test_a_hand_started_broadcast_sends_its_runs_to_the_main_queue(
    dev_env: WorkflowEnvironment, db: Store
) -> None:
    """On the broadcast queue with no ``task_queue`` in its input, the runs
    still go where the interpreter is, not to the broadcast queue."""
    expected = population(db, 20)
    journey_id, ir = audience_journey(WHERE)
    async with engine(dev_env.client, db) as eng:
        handle = await _start_without_runs_queue(dev_env.client, journey_id, ir, eng.broadcast_queue)
        assert (await asyncio.wait_for(handle.result(), 60)).entered == len(expected)
        assert await eng.wait_runs_ended(journey_id, len(expected)) == len(expected)
        run = await dev_env.client.get_workflow_handle(workflow_id(journey_id, expected[0])).describe()
        assert run.task_queue == eng.task_queue


async def test_run_worker_polls_both_queues(dev_env: WorkflowEnvironment, tmp_path: Path) -> None:
    """The product's worker process (``journeys worker``) runs the broadcast
    worker next to the journey worker."""
    settings = Settings(
        database_url=f"sqlite:///{tmp_path / 'journeys.db'}",
        task_queue=f"tq-run-worker-{uuid.uuid4().hex[:8]}",
        channels=ChannelsConfig(mode="outbox"),
        cap_per_day=None,
        cap_per_week=None,
    )
    store = Store(settings.database_url)
    store.migrate()
    upsert_template(store, "hi", "hello")
    expected = population(store, 20)
    journey_id, ir = audience_journey(WHERE)
    stop = asyncio.Event()
    worker = asyncio.create_task(run_worker(settings, client=dev_env.client, stop=stop))
    try:
        wid = await start_broadcast(
            dev_env.client, settings.task_queue, _version(journey_id, ir), ir, trigger="api", page_size=7
        )
        done = await _result(dev_env, wid)
        assert (done.status, done.entered) == ("completed", len(expected))
    finally:
        stop.set()
        await asyncio.wait_for(worker, 60)
        store.dispose()
