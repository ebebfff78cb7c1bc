"""Records the committed histories that ``test_replay`` replays.

Run it when the interpreter's command sequence changes *on purpose* (gate the
change with a patch registered in ``workflows.patches`` so old histories still
replay) or the scenario gains a step kind:

    .venv/bin/python -m tests.workflows.record_histories v7

Files are named ``<scenario>.v<N>.json`` and never overwritten: old histories
stay, so every patched branch keeps being replayed, until the removal rule in
``workflows.patches`` retires them.
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

from temporalio.client import Client, WorkflowHistory

from engine.temporal import start_time_skipping
from runtime.worker import build_worker
from tests.workflows.fakes import FakeEngine
from tests.workflows.scenarios import SCENARIOS, Scenario

HERE = Path(__file__).parent / "histories"


async def play(
    client: Client, scenario: Scenario, workflow_id: str, task_queue: str
) -> tuple[FakeEngine, WorkflowHistory]:
    """Run a scenario to its end on a fake engine: the engine (what the run
    asked of it) and the run's history."""
    engine = FakeEngine(**scenario.engine_kwargs)
    async with build_worker(client, engine.all(), task_queue):
        handle = await client.start_workflow("JourneyWorkflow", scenario.input, id=workflow_id, task_queue=task_queue)
        for event in scenario.events:
            await handle.signal("event", event)
        await handle.result()
        history = await handle.fetch_history()
    return engine, history


async def record(label: str) -> None:
    env = await start_time_skipping()
    try:
        for name, scenario in SCENARIOS.items():
            target = HERE / f"{name}.{label}.json"
            if target.exists():
                print("kept", target.name)
                continue
            _, history = await play(env.client, scenario, f"history-{name}", "record")
            target.write_text(json.dumps(json.loads(history.to_json()), indent=1) + "\n")
            print("recorded", name)
    finally:
        await env.shutdown()


if __name__ == "__main__":
    asyncio.run(record(sys.argv[1] if len(sys.argv) > 1 else "v1"))
