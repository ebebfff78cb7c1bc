"""The page activity's pipeline (``engine.broadcast_activities``): one call
walks several pages with one bound on starts in flight, commits them in
order, enters nobody twice after a crashed attempt's partial start, and does
not outlive its workflow run by more than the page in flight."""

from __future__ import annotations

import dataclasses
import math
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from temporalio.client import WorkflowHandle
from temporalio.testing import ActivityEnvironment, WorkflowEnvironment

from contracts.broadcast import BroadcastPageRequest, BroadcastProgress
from contracts.runs import JourneyInput, UserEvent
from dsl.ir import Journey
from engine import broadcasts
from engine.broadcast_activities import MEMO_KEY, BroadcastActivities
from engine.starts import start_run
from engine.store import Store
from tests.audience.harness import Engine, audience_journey, engine, population
from tests.audience.support import NOW

WHERE = "tag vip and not tag blocked"
PAGE = 20


@asynccontextmanager
async def _caller(env: WorkflowEnvironment) -> AsyncIterator[WorkflowHandle]:
    """A running workflow run for the activity to belong to (nobody polls its
    task queue, so it stays running until terminated)."""
    handle = await env.client.start_workflow("NoSuchWorkflow", id=f"caller-{uuid.uuid4().hex[:8]}", task_queue="idle")
    try:
        yield handle
    finally:
        try:
            await handle.terminate("test over")
        except Exception:  # noqa: BLE001 - terminated by the test already
            pass


async def _call(
    env: WorkflowEnvironment,
    acts: BroadcastActivities,
    caller: WorkflowHandle,
    eng: Engine,
    journey_id: str,
    ir: Journey,
    bid: str,
) -> BroadcastProgress:
    activity_env = ActivityEnvironment(env.client)
    activity_env.info = dataclasses.replace(
        activity_env.info, workflow_id=caller.id, workflow_run_id=caller.result_run_id
    )
    req = BroadcastPageRequest(
        broadcast_id=bid,
        journey_id=journey_id,
        version=1,
        hash=ir.content_hash(),
        ir=ir,
        cursor=None,
        pages=0,
        page_size=PAGE,
        task_queue=eng.task_queue,
        now=NOW,
    )
    return await activity_env.run(acts.page, req)


def _audience(db: Store, prefix: str) -> tuple[list[str], str, Journey, str]:
    """The expected users, a `reentry always` journey (only the broadcast's
    own bookkeeping stops a second entry) and a broadcast id."""
    expected = population(db, 250)
    journey_id, ir = audience_journey(WHERE, reentry="always")
    return expected, journey_id, ir, f"{prefix}-{journey_id}"


async def test_one_call_commits_every_page_and_a_partial_start_enters_nobody_twice(
    dev_env: WorkflowEnvironment, db: Store
) -> None:
    expected, journey_id, ir, bid = _audience(db, "pipe")
    async with engine(dev_env.client, db) as eng, _caller(dev_env) as caller:
        # A crashed attempt started the first 30 users and committed nothing:
        # their runs have ended by the time the page is redone.
        trigger = UserEvent(
            id=broadcasts.marker(bid), name=broadcasts.MARKER_EVENT, properties={"broadcast_id": bid}, occurred_at=NOW
        )
        for user_id in expected[:30]:
            inp = JourneyInput(
                journey_id=journey_id, version=1, hash=ir.content_hash(), user_id=user_id, ir=ir, trigger_event=trigger
            )
            await start_run(dev_env.client, eng.task_queue, inp, signal_running=False, memo={MEMO_KEY: bid})
        assert await eng.wait_runs_ended(journey_id, 30) == 30

        broadcasts.begin(db, bid, journey_id=journey_id, version=1, trigger="api", page_size=PAGE, now=NOW)
        acts = BroadcastActivities(db, eng.broadcast_acts.settings, snapshots=eng.journey_acts, start_concurrency=4)
        done = await _call(dev_env, acts, caller, eng, journey_id, ir, bid)
        # every page in this one call, in order, each counted once
        assert (done.status, done.pages) == ("completed", math.ceil((len(expected) + 1) / PAGE))
        assert (done.matched, done.entered, done.skipped) == (len(expected), len(expected), 0)
        assert done.cursor == expected[-1]
        assert await eng.wait_runs_ended(journey_id, len(expected)) == len(expected)
        assert eng.runs_total(journey_id) == len(expected)  # no second run, not even a refused one
        assert eng.admitted_runs(journey_id) == dict.fromkeys(expected, 1)
        assert eng.outbox_users(journey_id) == dict.fromkeys(expected, 1)


async def test_a_call_whose_workflow_run_is_gone_stops_after_the_page_in_flight(
    dev_env: WorkflowEnvironment, db: Store
) -> None:
    expected, journey_id, ir, bid = _audience(db, "gone")
    async with engine(dev_env.client, db) as eng, _caller(dev_env) as caller:
        broadcasts.begin(db, bid, journey_id=journey_id, version=1, trigger="api", page_size=PAGE, now=NOW)
        await caller.terminate("the broadcast's run was terminated")
        first = await _call(dev_env, eng.broadcast_acts, caller, eng, journey_id, ir, bid)
        assert (first.status, first.pages, first.entered) == ("running", 1, PAGE)
        assert first.cursor == expected[PAGE - 1]
        assert await eng.wait_runs_ended(journey_id, PAGE) == PAGE
        assert eng.runs_total(journey_id) == PAGE
