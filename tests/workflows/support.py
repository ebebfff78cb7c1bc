"""Helpers of the time-skipping interpreter tests: journeys from text, runs
started on the fake engine, polls that never assert on wall-clock time."""

from __future__ import annotations

import asyncio
import textwrap
import uuid
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from temporalio.client import WorkflowHandle

from contracts.runs import JourneyInput, UserEvent, workflow_id
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


async def start_on_event(env, journey: Journey, trigger: UserEvent, user: str = "u1", **kw) -> WorkflowHandle:
    """Start a run the way an event entry does (``engine.starts``): a
    signal-with-start, so the trigger is also the run's first signal."""
    return await env.client.start_workflow(
        JourneyWorkflow.run,
        JourneyInput(
            journey_id="j1",
            version=1,
            hash=journey.content_hash(),
            user_id=user,
            ir=journey,
            trigger_event=trigger,
            search_attributes=False,
            **kw,
        ),
        id=workflow_id("j1", user) + uuid.uuid4().hex[:6],
        task_queue=TQ,
        start_signal="event",
        start_signal_args=[trigger],
    )


async def signal_at(env, handle: WorkflowHandle, node: str, *events: UserEvent) -> None:
    """Once the run waits at ``node``, send it ``events`` in order. While it
    waits elsewhere first (a send held by quiet hours), the test server's
    clock is moved on ten minutes at a time: it only skips time by itself
    while someone awaits a result."""
    for _ in range(1000):
        status = await handle.query(JourneyWorkflow.status)
        if status.waiting == node:
            break
        if status.waiting is None:
            await asyncio.sleep(0.01)
        else:
            await env.sleep(timedelta(minutes=10))
    else:
        raise AssertionError(f"run never waited at {node}")
    for event in events:
        await handle.signal(JourneyWorkflow.on_event, event)


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
