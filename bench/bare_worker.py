"""The floor of ``bench/process_bench.py``: a bare Python Temporal worker.

A trivial workflow started by signal-with-start (as our ingest starts a
journey run), which waits for its signal and then runs ``k`` local activities
that do nothing: what any Python worker pays per workflow on this machine,
with the SDK's default sandbox, as ours runs. Its own module so that the
sandbox re-imports only this file per workflow, not the bench.

    python -m bench.bare_worker ADDRESS TASK_QUEUE

prints ``ready`` once polling and runs until SIGTERM (the bench counts the
completed workflows and reads this process's CPU from ``/proc``).
"""

from __future__ import annotations

import asyncio
import signal
import sys
from datetime import timedelta
from typing import Any

from temporalio import activity, workflow
from temporalio.client import Client
from temporalio.worker import Worker

SIGNAL = "event"


@activity.defn(name="bare_step")
async def bare_step(index: int) -> int:
    return index


@workflow.defn(name="BareFloor", sandboxed=False)  # as JourneyWorkflow runs
class BareFloor:
    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []

    @workflow.signal(name=SIGNAL)
    def event(self, event: dict[str, Any]) -> None:
        self.events.append(event)

    @workflow.run
    async def run(self, k: int) -> int:
        await workflow.wait_condition(lambda: bool(self.events))
        for i in range(k):
            await workflow.execute_local_activity(bare_step, i, start_to_close_timeout=timedelta(seconds=30))
        return k


async def main(address: str, task_queue: str) -> None:
    client = await Client.connect(address)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    async with Worker(client, task_queue=task_queue, workflows=[BareFloor], activities=[bare_step]):
        print("ready", flush=True)
        await stop.wait()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2]))
