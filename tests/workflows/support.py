"""Helpers of the time-skipping interpreter tests: journeys from text, runs
started on the fake engine, polls that never assert on wall-clock time."""

from __future__ import annotations

import asyncio
import textwrap
import uuid
from datetime import datetime
from zoneinfo import ZoneInfo

from temporalio.client import WorkflowHandle

from contracts.runs import JourneyInput, workflow_id
from dsl import parse
from dsl.ir import Journey
from workflows.journey import JourneyWorkflow

TQ = "tq-interp"
SHANGHAI = ZoneInfo("Asia/Shanghai")  # the fake engine's user time zone


def journey(text: str) -> Journey:
    """The IR of journey text (indentation of the test's source removed)."""
    return parse(textwrap.dedent(text).strip() + "\n")


async def start(env, journey: Journey, user: str = "u1", **kw) -> WorkflowHandle:
    return await env.client.start_workflow(
        JourneyWorkflow.run,
        JourneyInput(
            journey_id="j1",
            version=1,
            hash=journey.content_hash(),
            user_id=user,
            ir=journey,
            search_attributes=False,
            **kw,
        ),
        id=workflow_id("j1", user) + uuid.uuid4().hex[:6],
        task_queue=TQ,
    )


async def waiting_at(handle: WorkflowHandle, node: str) -> None:
    """Poll the status query until the run waits at ``node``."""
    for _ in range(500):
        status = await handle.query(JourneyWorkflow.status)
        if status.waiting == node:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"run never waited at {node}")


def shanghai(moment: datetime) -> datetime:
    return moment.astimezone(SHANGHAI)
