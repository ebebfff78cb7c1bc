"""``wait for event E [where …] up to T``: the step that waits for what the
user does.

This module must stay free of side effects.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow

from contracts.conditions import evaluate
from contracts.runs import UserEvent
from dsl.ir import WaitEventStep
from workflows.records import record
from workflows.run import Run, event_context
from workflows.waits import sleep_until


async def wait_event(run: Run, step: WaitEventStep) -> str:
    first_new = run.cursor
    found: list[UserEvent] = []

    def matched() -> bool:
        for event in run.arrivals[first_new:]:
            if event.name == step.event and (step.where is None or evaluate(step.where, None, event.properties)):
                found.append(event)
                return True
        return False

    deadline = workflow.now() + timedelta(seconds=step.timeout_seconds) if step.timeout_seconds else None
    woke = await sleep_until(run, deadline, step.id, wake=matched)
    if woke and found:
        run.require_state().last_event = event_context(found[0])
        record(run, step.id, "wait_event", "event", {"event_id": found[0].id})
        return "event"
    record(run, step.id, "wait_event", "timeout")
    return "timeout"
