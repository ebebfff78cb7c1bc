"""Broadcasts on a real Temporal dev server with the real engine activities:
everyone matching enters exactly once, progress is exact, a terminated
broadcast resumes from its cursor without entering anyone twice."""

from __future__ import annotations

import asyncio
import uuid

from sqlalchemy import update
from temporalio.testing import ActivityEnvironment, WorkflowEnvironment

from contracts.broadcast import BroadcastInput, BroadcastPageRequest, BroadcastProgress
from contracts.runs import workflow_id
from engine import broadcasts
from engine.store import Store
from engine.store.models import Broadcast
from tests.audience.harness import Engine, audience_journey, engine, population
from tests.audience.support import NOW
from workflows.broadcast import AudienceBroadcastWorkflow

WHERE = "tag vip and not tag blocked"


async def _broadcast(env: WorkflowEnvironment, eng: Engine, journey_id: str, journey, *, wid: str, **kw):
    return await env.client.start_workflow(
        AudienceBroadcastWorkflow.run,
        BroadcastInput(journey_id=journey_id, version=1, hash=journey.content_hash(), ir=journey, **kw),
        id=wid,
        task_queue=eng.task_queue,
    )


async def _counted(env: WorkflowEnvironment, journey_id: str, expected: int) -> int:
    """Runs of the journey visibility finds by their search attributes (it
    is eventually consistent: polled for up to 20 s)."""
    seen = -1
    for _ in range(200):
        found = await env.client.count_workflows(f'JourneyId = "{journey_id}" AND JourneyVersion = 1')
        seen = int(found.count)
        if seen >= expected:
            break
        await asyncio.sleep(0.1)
    return seen


async def test_everyone_matching_enters_exactly_once(dev_env: WorkflowEnvironment, db: Store) -> None:
    store = db
    expected = population(store, 250)
    journey_id, journey = audience_journey(WHERE)
    async with engine(dev_env.client, store) as eng:
        first = await _broadcast(
            dev_env, eng, journey_id, journey, wid=f"b1-{journey_id}", page_size=50, pages_per_run=2
        )
        progress: BroadcastProgress = await first.result()
        assert (progress.status, progress.matched, progress.entered, progress.skipped) == (
            "completed",
            len(expected),
            len(expected),
            0,
        )
        assert progress.scanned == len(expected)  # plain tags: SQL reads only the matching users
        assert progress.pages >= len(expected) // 50
        # the broadcast's starts carry the search attributes, like every start (engine.starts)
        assert await _counted(dev_env, journey_id, len(expected)) == len(expected)
        # continue-as-new happened (pages_per_run=2) and the query still answers on the last run
        assert (await first.query(AudienceBroadcastWorkflow.progress)) == progress
        assert await eng.wait_runs_ended(journey_id, len(expected)) == len(expected)
        assert eng.admitted_runs(journey_id) == dict.fromkeys(expected, 1)
        assert eng.outbox_users(journey_id) == dict.fromkeys(expected, 1)
        assert broadcasts.get(store, first.id) == progress
        assert broadcasts.entry_outcomes(store, journey_id, first.id) == {"admitted": len(expected), "refused": 0}

        # Again, for a `reentry once` journey: runs start, the store refuses every one.
        second = await _broadcast(dev_env, eng, journey_id, journey, wid=f"b2-{journey_id}", page_size=50)
        again = await second.result()
        assert (again.status, again.matched, again.entered) == ("completed", len(expected), len(expected))
        assert await eng.wait_runs_ended(journey_id, 2 * len(expected)) == 2 * len(expected)
        assert broadcasts.entry_outcomes(store, journey_id, second.id) == {"admitted": 0, "refused": len(expected)}
        assert eng.admitted_runs(journey_id) == dict.fromkeys(expected, 1)
        assert eng.outbox_users(journey_id) == dict.fromkeys(expected, 1)
        listed = broadcasts.list_for_journey(store, journey_id)
        assert {b.broadcast_id for b in listed} == {first.id, second.id}


async def test_terminated_broadcast_resumes_without_double_entries(dev_env: WorkflowEnvironment, db: Store) -> None:
    store = db
    expected = population(store, 250)
    # `reentry always`: the store would admit a second entry, so only the
    # broadcast's own bookkeeping stands between a resume and a duplicate.
    journey_id, journey = audience_journey(WHERE, reentry="always")
    wid = f"crash-{journey_id}"
    async with engine(dev_env.client, store) as eng:
        handle = await _broadcast(dev_env, eng, journey_id, journey, wid=wid, page_size=10)
        for _ in range(600):
            row = broadcasts.get(store, wid)
            if row is not None and row.pages >= 3:
                break
            await asyncio.sleep(0.02)
        await handle.terminate("simulated crash")
        stopped = broadcasts.get(store, wid)
        assert stopped is not None and stopped.status == "running"
        assert 3 <= stopped.pages and stopped.entered < len(expected)

        resumed = await _broadcast(dev_env, eng, journey_id, journey, wid=wid, page_size=10)
        progress = await resumed.result()
        assert progress.status == "completed"
        assert progress.pages > stopped.pages
        assert (progress.matched, progress.entered, progress.skipped) == (len(expected), len(expected), 0)
        assert await eng.wait_runs_ended(journey_id, len(expected)) == len(expected)
        await asyncio.sleep(0.5)  # a duplicate would have shown up by now; counts are exact either way
        assert eng.runs_total(journey_id) == len(expected)
        assert eng.admitted_runs(journey_id) == dict.fromkeys(expected, 1)
        assert eng.outbox_users(journey_id) == dict.fromkeys(expected, 1)


async def test_a_page_redone_after_a_lost_commit_enters_nobody_again(dev_env: WorkflowEnvironment, db: Store) -> None:
    store = db
    expected = population(store, 40)
    # Runs that close at once (send, end) and runs that stay open (wait): both
    # must be recognised as this broadcast's entries when the page is redone.
    quick_id, quick = audience_journey(WHERE, reentry="always")
    slow_id, slow = audience_journey(WHERE, reentry="always", steps="wait 1d")
    async with engine(dev_env.client, store) as eng:
        acts = ActivityEnvironment(dev_env.client)

        async def page(journey_id: str, journey, broadcast_id: str) -> BroadcastProgress:
            req = BroadcastPageRequest(
                broadcast_id=broadcast_id,
                journey_id=journey_id,
                version=1,
                hash=journey.content_hash(),
                ir=journey,
                cursor=None,
                pages=0,
                page_size=100,
                task_queue=eng.task_queue,
                now=NOW,
            )
            return await acts.run(eng.broadcast_acts.page, req)

        def lose_commit(broadcast_id: str) -> None:
            with store.session() as s:
                s.execute(
                    update(Broadcast)
                    .where(Broadcast.id == broadcast_id)
                    .values(pages=0, cursor=None, scanned=0, matched=0, entered=0, skipped=0, status="running")
                )

        for journey_id, journey in ((quick_id, quick), (slow_id, slow)):
            bid = f"redo-{journey_id}"
            broadcasts.begin(store, bid, journey_id=journey_id, version=1, trigger="api", page_size=100, now=NOW)
            first = await page(journey_id, journey, bid)
            assert (first.entered, first.skipped, first.status) == (len(expected), 0, "completed")
            if journey_id == quick_id:
                assert await eng.wait_runs_ended(journey_id, len(expected)) == len(expected)
            lose_commit(bid)
            redo = await page(journey_id, journey, bid)
            assert (redo.matched, redo.entered, redo.skipped, redo.pages) == (len(expected), len(expected), 0, 1)
            # asking for a page that is already committed does nothing
            assert await page(journey_id, journey, bid) == redo
            assert await eng.wait_runs_ended(journey_id, len(expected), ended=False) == len(expected)
            await asyncio.sleep(0.3)  # a second run would have begun by now
            assert eng.admitted_runs(journey_id) == dict.fromkeys(expected, 1)
        assert eng.outbox_users(quick_id) == dict.fromkeys(expected, 1)

        # Another broadcast while the slow runs are still open: one run per
        # (journey, user) at a time, so everyone is skipped.
        other = f"other-{slow_id}"
        broadcasts.begin(store, other, journey_id=slow_id, version=1, trigger="api", page_size=100, now=NOW)
        skipped = await page(slow_id, slow, other)
        assert (skipped.entered, skipped.skipped) == (0, len(expected))
        for user_id in expected:
            await dev_env.client.get_workflow_handle(workflow_id(slow_id, user_id)).terminate("test over")


async def test_a_paused_journey_halts_its_broadcast(dev_env: WorkflowEnvironment, db: Store) -> None:
    store = db
    from engine import catalog

    population(store, 30)
    journey_id, journey = audience_journey(WHERE)
    catalog.publish(
        store, journey_id, name=journey_id, source="-", ir=journey.model_dump(mode="json"), hash=journey.content_hash()
    )
    catalog.set_status(store, journey_id, "paused")
    async with engine(dev_env.client, store) as eng:
        handle = await _broadcast(dev_env, eng, journey_id, journey, wid=f"paused-{uuid.uuid4().hex[:6]}")
        progress = await handle.result()
        assert (progress.status, progress.reason, progress.entered) == ("halted", "journey paused", 0)
        assert eng.runs_total(journey_id) == 0
