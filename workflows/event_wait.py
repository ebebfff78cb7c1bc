"""``wait for event E [where …] up to T``: the step that waits for what the
user does, and the events it may take.

The rule (runs on the buffered-events revision, ``workflows.patches``): only
``wait for event`` steps consume events. A ``wait for event E`` is satisfied
by the earliest matching E (name and ``where``, evaluated on the event's
properties when the wait looks) that arrived after entry and that no earlier
``wait for event`` took, whether it came during a plain wait, a send, another
``wait for event`` or this one. The entry trigger never counts. Taking an
event uses it up: the next ``wait for event E`` needs another E. Exits and
goals see every event as it arrives and are not consumption
(``goals_exits.check_event``).

Runs begun before that revision keep their old rule on replay: only events
that arrived since the previous wait (of any kind) ended count.

This module must stay free of side effects.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from temporalio import workflow

from contracts.conditions import evaluate
from contracts.runs import RunState, UserEvent
from dsl.ir import WaitEventStep
from workflows.records import record
from workflows.run import Run, event_context
from workflows.waits import sleep_until

# How many unconsumed events a run keeps (the newest; older ones are dropped).
# They travel in the continue-as-new input with their properties, so the list
# must stay far below Temporal's payload limits (2 MB, a warning at 512 KB):
# 50 events of a few hundred bytes to a few KB each is tens of KB. Only events
# the journey waits for somewhere are kept, and each ``wait for event`` takes
# one, so 50 untaken means the user repeats an action far more often than the
# journey waits for it; the newest are the ones that describe them now.
UNCONSUMED_EVENTS_KEPT = 50


def keep_for_waits(run: Run, event: UserEvent) -> None:
    """Keep an arriving event for a later ``wait for event`` that may take it."""
    trigger = run.inp.trigger_event
    if event.name not in run.awaited or (trigger is not None and event.id == trigger.id):
        return
    state = run.require_state()
    state.unconsumed_events = (state.unconsumed_events + [event])[-UNCONSUMED_EVENTS_KEPT:]


def earliest_match(state: RunState, step: WaitEventStep) -> int | None:
    """Where in the unconsumed events the earliest one this step takes is."""
    for index, event in enumerate(state.unconsumed_events):
        if event.name == step.event and (step.where is None or evaluate(step.where, None, event.properties)):
            return index
    return None


async def wait_event(run: Run, step: WaitEventStep) -> str:
    deadline = workflow.now() + timedelta(seconds=step.timeout_seconds) if step.timeout_seconds else None
    found = await (
        _take_unconsumed(run, step, deadline) if run.buffers_events else _since_last_wait(run, step, deadline)
    )
    if found is not None:
        run.require_state().last_event = event_context(found)
        record(run, step.id, "wait_event", "event", {"event_id": found.id})
        return "event"
    record(run, step.id, "wait_event", "timeout")
    return "timeout"


async def _take_unconsumed(run: Run, step: WaitEventStep, deadline: datetime | None) -> UserEvent | None:
    state = run.require_state()
    woke = await sleep_until(run, deadline, step.id, wake=lambda: earliest_match(state, step) is not None)
    index = earliest_match(state, step) if woke else None
    return state.unconsumed_events.pop(index) if index is not None else None


async def _since_last_wait(run: Run, step: WaitEventStep, deadline: datetime | None) -> UserEvent | None:
    """The rule before the buffered-events revision: events that arrived since
    the previous wait ended (``run.cursor``), in this execution only."""
    first_new = run.cursor
    found: list[UserEvent] = []

    def matched() -> bool:
        for event in run.arrivals[first_new:]:
            if event.name == step.event and (step.where is None or evaluate(step.where, None, event.properties)):
                found.append(event)
                return True
        return False

    woke = await sleep_until(run, deadline, step.id, wake=matched)
    return found[0] if woke and found else None
