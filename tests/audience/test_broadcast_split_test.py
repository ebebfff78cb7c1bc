"""A split test in a broadcast (scenario 11: copies tested on a small batch
of the audience, the rest get the winner), on the dev server with the real
engine: a sample of the audience is the test, the others wait at the split
for the window and then take the decision; everyone gets one message."""

from __future__ import annotations

import uuid

from sqlalchemy import select
from temporalio.testing import WorkflowEnvironment

from contracts.broadcast import BroadcastInput
from dsl.parser import parse
from engine import catalog, split_tests
from engine.store import Store
from engine.store.models import StepRecord
from tests.audience.harness import engine, population
from workflows.broadcast import AudienceBroadcastWorkflow


async def test_a_broadcast_tests_on_a_sample_and_sends_the_rest_the_winner(
    dev_env: WorkflowEnvironment, db: Store
) -> None:
    expected = population(db, 90)
    journey_id = f"bc-split-{uuid.uuid4().hex[:8]}"
    source = (
        f'journey "{journey_id}"\n  entry audience where tag vip and not tag blocked every day at 10:00\n'
        "  goal event order_paid within 1d\n"
        "  split test 30% for 4s by goal:\n"
        '    50% A: send webhook "hi"\n'
        '    50% B: send webhook "hi"\n'
        "    otherwise: B\n"
    )
    journey = parse(source)
    catalog.publish(
        db, journey_id, name=journey_id, source=source, ir=journey.model_dump(mode="json"), hash=journey.content_hash()
    )
    async with engine(dev_env.client, db) as eng:
        handle = await dev_env.client.start_workflow(
            AudienceBroadcastWorkflow.run,
            BroadcastInput(journey_id=journey_id, version=1, hash=journey.content_hash(), ir=journey),
            id=f"b-{journey_id}",
            task_queue=eng.task_queue,
        )
        progress = await handle.result()
        assert progress.entered == len(expected)
        assert await eng.wait_runs_ended(journey_id, len(expected)) == len(expected)
        assert eng.outbox_users(journey_id) == dict.fromkeys(expected, 1)  # one message each

    decision = split_tests.get(db, journey_id, 1, "split-A-B")
    assert decision is not None and (decision.winner, decision.decided_by) == ("B", "test")  # nobody bought
    with db.read() as s:
        rows = s.execute(
            select(StepRecord.user_id, StepRecord.outcome, StepRecord.detail).where(
                StepRecord.journey_id == journey_id, StepRecord.kind == "split"
            )
        ).all()
    tested = {u for u, o, d in rows if (d or {}).get("test")}
    held = {u for u, o, _ in rows if o == "held"}
    took = {u: o for u, o, d in rows if (d or {}).get("winner")}
    assert tested and held and not tested & held
    assert tested | held == set(expected)
    assert set(took) == held and set(took.values()) == {"variant:B"}
