"""Goals and exits: checked on every event as it arrives, at any point of the
run, and exit rules on the user (``exit when tag …``) on every snapshot.

This module must stay free of side effects.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow

from contracts import names
from contracts.activities import UserSnapshot
from contracts.conditions import evaluate
from contracts.runs import UserEvent
from workflows.records import flush, record
from workflows.run import Run

# The exit reason of a run ended because its user was merged into a person
# whose other run of the journey is kept (the ``merged`` signal).
MERGED = "merged"


class Exited(Exception):
    """Unwinds a step handler when an exit condition fires mid-step (or the
    step is ``exit``)."""


def check_event(run: Run, event: UserEvent) -> None:
    """Check an event against the exit rules and the goal as it arrives, at
    every point of the run. This is not consumption: a ``wait for event``
    may still take the same event, and taking it hides it from neither."""
    state = run.require_state()
    for rule in run.inp.ir.exits:
        if rule.event == event.name and (rule.where is None or evaluate(rule.where, None, event.properties)):
            run.exit_reason = run.exit_reason or f"event {event.name}"
    goal = run.inp.ir.goal
    if goal and not state.converted and event.name == goal.event:
        in_window = goal.within_seconds is None or (
            workflow.now() - state.entered_at <= timedelta(seconds=goal.within_seconds)
        )
        if in_window and (goal.where is None or evaluate(goal.where, None, event.properties)):
            run.goal_pending.append(event)


async def process_goals(run: Run) -> None:
    """Record a goal reached since the last look (once per run), and end the
    run after it when the goal says ``then exit``."""
    state = run.require_state()
    if not run.goal_pending or state.converted:
        run.goal_pending.clear()
        return
    event = run.goal_pending[0]
    run.goal_pending.clear()
    state.converted = True
    record(
        run,
        "goal",
        "goal",
        "converted",
        {"event_id": event.id, "variants": dict(state.variants)},
        variant=state.variant,
    )
    await flush(run)
    goal = run.inp.ir.goal
    if goal and goal.exit_on_goal:
        run.exit_reason = run.exit_reason or "goal reached"


def note_tag_change(run: Run, event: UserEvent) -> None:
    """A tag change reached the run (``tag_added`` / ``tag_removed``): on the
    live-signals revision, a run with exit rules on the user reads the user
    again as soon as it waits (``waits.sleep_until``), instead of at its next
    send or coupon."""
    if run.live_signals and event.name in names.TAG_EVENTS and has_user_exits(run):
        run.tags_changed = True


def stop_before_effect(run: Run) -> None:
    """On the live-signals revision, an exit noticed while the step read the
    user (an exit event, a ``merged`` signal) ends the run before the step's
    side effect rather than after it."""
    if run.live_signals and run.exit_reason:
        raise Exited()


def has_user_exits(run: Run) -> bool:
    return any(rule.event is None and rule.cond is not None for rule in run.inp.ir.exits)


def check_user_exits(run: Run, snapshot: UserSnapshot) -> None:
    for rule in run.inp.ir.exits:
        if rule.event is None and rule.cond is not None and evaluate(rule.cond, snapshot, None):
            run.exit_reason = run.exit_reason or "exit condition met"
    if run.exit_reason:
        raise Exited()
