"""A split test's decision survives the worker being killed at it: held
runs reach the window's end together, one of them decides, and the worker
is ``kill -9``ed the moment the decision is in the store, while the others
are still on their way; a new worker finishes them. One decision, every
held run takes that winner, and every message goes once (the ledger and the
receiving HTTP server agree)."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

from sqlalchemy import func, select

from contracts.runs import JourneyInput, workflow_id
from dsl import compile_source
from engine import catalog, split_tests, templates
from engine.store import Store
from engine.store.models import Delivery, SplitTestRow, StepRecord
from engine.temporal import TASK_QUEUE, start_dev_server
from tests.integration.receiver import Receiver
from tests.integration.test_crash import _spawn_worker, worker_environment
from workflows.journey import JourneyWorkflow

USERS = 30
SOURCE = """
journey "decide once"
  entry api
  goal event order_paid within 1d
  split test 1% for 4s by goal:
    50% A: send webhook "copy_a"
    50% B: send webhook "copy_b"
    otherwise: B
"""


async def test_a_worker_killed_at_the_decision_decides_once(tmp_path: Path) -> None:
    ir = compile_source(SOURCE, "decide.journey")
    db_url = f"sqlite:///{tmp_path / 'decide.db'}"
    store = Store(db_url)
    store.migrate()
    for name in ("copy_a", "copy_b"):
        templates.upsert_template(store, name, f"{name} for {{{{ user.id }}}}")
    catalog.publish(store, "decide", name=ir.name, source=SOURCE, ir=ir.model_dump(mode="json"), hash=ir.content_hash())
    env = await start_dev_server()
    log = tmp_path / "worker.log"
    try:
        with Receiver() as receiver:
            worker_env = worker_environment(db_url, env.client.service_client.config.target_host, receiver.url)
            worker = _spawn_worker(worker_env, log)
            handles = [
                await env.client.start_workflow(
                    JourneyWorkflow.run,
                    JourneyInput(journey_id="decide", version=1, hash=ir.content_hash(), user_id=f"u{i:03d}", ir=ir),
                    id=workflow_id("decide", f"u{i:03d}"),
                    task_queue=TASK_QUEUE,
                )
                for i in range(USERS)
            ]
            decided_before_kill = None
            for _ in range(3000):  # the window is 4 s; poll the store for the decision
                found = split_tests.get(store, "decide", 1, "split-A-B")
                if found is not None and found.winner is not None:
                    os.killpg(worker.pid, signal.SIGKILL)
                    worker.wait()
                    decided_before_kill = _taken(store)
                    break
                await asyncio.sleep(0.01)
            assert decided_before_kill is not None, log.read_text()[-3000:]
            worker = _spawn_worker(worker_env, log)
            results = await asyncio.wait_for(asyncio.gather(*(h.result() for h in handles)), timeout=300)
            os.killpg(worker.pid, signal.SIGTERM)
            worker.wait(timeout=30)
            wire = receiver.keys()
    finally:
        await env.shutdown()

    assert results == ["completed"] * USERS, log.read_text()[-3000:]
    with store.read() as s:
        rows = s.execute(select(SplitTestRow.winner, SplitTestRow.decided_by)).all()
        sent = s.execute(
            select(Delivery.user_id, func.count()).where(Delivery.status == "sent").group_by(Delivery.user_id)
        ).all()
        keys = set(s.scalars(select(Delivery.idempotency_key).where(Delivery.status == "sent")))
    assert len(rows) == 1 and rows[0].decided_by == "test"
    winner = rows[0].winner
    assert winner == "B"  # no test run converted: the fallback
    taken = _taken(store)
    held = [u for u, (outcome, how) in taken.items() if how == "winner"]
    assert held and {taken[u][0] for u in held} == {f"variant:{winner}"}
    assert len(sent) == USERS and all(n == 1 for _, n in sent)
    assert set(wire) == keys
    assert len(decided_before_kill) < USERS, "every run had finished before the kill: the test proved nothing"


def _taken(store: Store) -> dict[str, tuple[str, str]]:
    """user -> (split outcome, "test" | "winner") for the runs past the split."""
    with store.read() as s:
        rows = s.execute(
            select(StepRecord.user_id, StepRecord.outcome, StepRecord.detail).where(
                StepRecord.journey_id == "decide", StepRecord.kind == "split", StepRecord.outcome.like("variant:%")
            )
        ).all()
    return {u: (o, "winner" if (d or {}).get("winner") else "test") for u, o, d in rows}
