"""Waiting: the one durable sleep every wait uses, and the handlers of the
steps that wait for a moment (``wait 1d``, ``wait until 10:00``, ``wait until
user.x``, ``wait until event.x``).

This module must stay free of side effects.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from temporalio import workflow

from contracts import search_attributes as sa
from dsl.ir import WaitDateStep, WaitEventTimeStep, WaitStep, WaitUntilStep
from workflows.effects import snapshot, user_zone
from workflows.goals_exits import Exited, process_goals
from workflows.localtime import moment_from, next_local_time, zone
from workflows.records import flush, record
from workflows.run import Run, shown


async def sleep_until(
    run: Run, deadline: datetime | None, node_id: str, wake: Callable[[], bool] | None = None
) -> bool:
    """The durable sleep every wait uses (one timer): until ``deadline``
    (forever if None) unless ``wake`` becomes true (returns True). Goals are
    recorded while sleeping; an exit raises."""
    run.waiting = node_id
    if run.inp.search_attributes:
        workflow.upsert_search_attributes([sa.JOURNEY_STEP.value_set(node_id)])
    record(run, node_id, "wait", "waiting", {"until": deadline.isoformat() if deadline else None})
    await flush(run)
    try:
        while True:
            if run.exit_reason:
                raise Exited()
            if run.tags_changed:
                run.tags_changed = False
                await snapshot(run)  # raises Exited when an exit rule on the user now holds
                continue
            if wake is not None and wake():
                return True
            timeout = None
            if deadline is not None:
                timeout = deadline - workflow.now()
                if timeout <= timedelta(0):
                    return False
            try:
                await workflow.wait_condition(
                    lambda: bool(
                        run.exit_reason or run.goal_pending or run.tags_changed or (wake is not None and wake())
                    ),
                    timeout=timeout,
                )
            except TimeoutError:
                return False
            await process_goals(run)
    finally:
        run.waiting = None
        run.cursor = len(run.arrivals)


async def wait(run: Run, step: WaitStep) -> str:
    await sleep_until(run, workflow.now() + timedelta(seconds=step.seconds), step.id)
    return "next"


async def wait_until_time(run: Run, step: WaitUntilStep) -> str:
    tz = await user_zone(run)
    await sleep_until(run, next_local_time(workflow.now(), tz, step.time, step.weekday), step.id)
    return "next"


async def wait_user_date(run: Run, step: WaitDateStep) -> str:
    user = await snapshot(run)
    tz = zone(user.timezone, run.inp.ir.timezone)
    # A past date still goes through the sleep (it flushes the records and
    # returns at once): runs in flight did so, and leaving that flush out
    # would change their command sequence without a patch.
    return await _wait_date_value(
        run, step, user.attributes.get(step.attribute), tz, {"attribute": step.attribute}, sleep_when_past=True
    )


async def wait_event_time(run: Run, step: WaitEventTimeStep) -> str:
    # A new kind needs no patch: no run recorded before it has one.
    tz = await user_zone(run)
    event = run.require_state().last_event or {}
    return await _wait_date_value(
        run, step, event.get(step.field), tz, {"field": step.field, "event": event.get("_name")}, sleep_when_past=False
    )


async def _wait_date_value(
    run: Run,
    step: WaitDateStep | WaitEventTimeStep,
    value: object,
    tz: ZoneInfo,
    detail: dict[str, Any],
    *,
    sleep_when_past: bool,
) -> str:
    """Sleep until the date or date-time ``value`` (a bare date or a naive
    date-time read in ``tz``; ``step.time`` sets the local time of day)
    shifted by ``step.offset_seconds``. A missing or unreadable value, or a
    moment already past, passes at once; the step record says which."""
    moment = moment_from(value, tz, step.time)
    if moment is None:
        reason = "missing" if value is None or value == "" else "not a date"
        record(run, step.id, step.kind, "no_date", {**detail, "reason": reason, "value": shown(value)})
        return "next"
    until = moment + timedelta(seconds=step.offset_seconds)
    if until <= workflow.now():
        record(run, step.id, step.kind, "past", {**detail, "until": until.isoformat()})
        if not sleep_when_past:
            return "next"
    await sleep_until(run, until, step.id)
    return "next"
