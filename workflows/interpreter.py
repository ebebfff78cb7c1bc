"""The journey interpreter behind ``JourneyWorkflow``: runs one journey's IR
for one user, durably.

It lives outside the workflow module and is imported passed-through: the
sandbox re-imports (and recompiles) the workflow's own file for every new run,
so that file is kept to the entry points (``workflows/journey.py``) and this
deterministic code is loaded once per worker. It may only use ``workflow.*``
APIs for time, randomness and I/O, like any workflow code; the replay tests
over committed histories guard that.

The whole position of a run is one node id in the journey graph
(``dsl.graph``), so a step handler only answers *which outcome* happened and the
graph says where to go next. The interpreter is split by job:

- here, the run loop: entry, one step after another, continue-as-new, the
  signal and the query;
- ``workflows.run``: what an execution holds (``Run``);
- ``workflows.step_handlers``: the per-kind handlers and ``STEP_HANDLERS``;
- ``workflows.waits`` (the durable sleep, timed waits) and
  ``workflows.event_wait`` (``wait for event`` and the events it may take);
- ``workflows.effects`` (activities, snapshots) and ``workflows.records``
  (step records, the run's end);
- ``workflows.goals_exits``: goals and exit rules.

This module must stay free of side effects.
"""

from __future__ import annotations

import asyncio

from temporalio import workflow

from contracts import names
from contracts import search_attributes as sa
from contracts.activities import BeginRunRequest, BeginRunResult
from contracts.runs import JourneyInput, MergedNotice, RunState, RunStatus, UserEvent
from dsl.ir import Step
from workflows.effects import effect
from workflows.event_wait import keep_for_waits
from workflows.goals_exits import MERGED, Exited, check_event, note_tag_change, process_goals
from workflows.patches import BUFFERED_EVENTS, LIVE_SIGNALS, LOCAL_EFFECTS, taken
from workflows.records import finish, flush, record
from workflows.run import Run, event_context
from workflows.step_handlers import STEP_HANDLERS, StepHandler

__all__ = ["STEP_HANDLERS", "JourneyInterpreter", "StepHandler", "UnknownStepKind"]

SEEN_EVENT_IDS_KEPT = 500


class UnknownStepKind(TypeError):
    """A step class without a handler in ``STEP_HANDLERS``. Raised inside a
    workflow task it fails the task, not the run: Temporal retries the task, so
    the run waits where it is until a worker that knows the kind takes it."""


class JourneyInterpreter:
    """One run of a journey; ``JourneyWorkflow`` delegates to it."""

    def __init__(self, inp: JourneyInput) -> None:
        self._run = Run.of(inp)

    # ------------------------------------------------------------ signals/queries

    def on_event(self, event: UserEvent) -> None:
        run = self._run
        if event.id in run.seen:
            return
        run.seen.add(event.id)
        if run.state is None:
            run.early_events.append(event)
            return
        self._observe(event)

    def on_merged(self, notice: MergedNotice) -> None:
        """The user was merged with a person whose run of this journey is
        kept: end now, whatever the run is doing (a wait wakes at once; a step
        stops before its side effect on the live-signals revision, and the
        engine suppresses a send of a run it ended so anyway)."""
        self._run.exit_reason = self._run.exit_reason or MERGED

    def status(self) -> RunStatus:
        run, state = self._run, self._run.state
        return RunStatus(
            journey_id=run.inp.journey_id,
            version=run.inp.version,
            user_id=run.inp.user_id,
            node=state.node if state else None,
            waiting=run.waiting,
            variant=state.variant if state else None,
            holdout=state.holdout if state else False,
            converted=state.converted if state else False,
            entered_at=state.entered_at if state else workflow.now(),
            steps_run=run.steps_run,
        )

    # ------------------------------------------------------------------ run

    async def run(self) -> str:
        run = self._run
        # The first command of every run decides which revision it follows; a
        # newer revision includes the older ones (one marker a new run).
        run.live_signals = taken(LIVE_SIGNALS)
        run.buffers_events = run.live_signals or taken(BUFFERED_EVENTS)
        run.local_effects = run.buffers_events or taken(LOCAL_EFFECTS)
        if run.state is None:
            begun = await self._begin()
            if not begun:
                return "refused"
        try:
            outcome = await self._interpret()
        except asyncio.CancelledError:
            await finish(run, "cancelled", "run cancelled")
            raise
        return outcome

    async def _begin(self) -> bool:
        run = self._run
        info = workflow.info()
        run_key = f"{info.workflow_id}:{info.first_execution_run_id}"
        trigger = run.inp.trigger_event
        decision = await effect(
            run,
            names.BEGIN_RUN,
            BeginRunResult,
            BeginRunRequest(
                run_key=run_key,
                journey_id=run.inp.journey_id,
                version=run.inp.version,
                user_id=run.inp.user_id,
                reentry_mode=run.inp.ir.reentry.mode,
                cooldown_seconds=run.inp.ir.reentry.cooldown_seconds,
                now=workflow.now(),
                trigger_event=trigger.model_dump(mode="json") if trigger else None,
            ),
            deadline=False,
        )
        if not decision.allowed:
            return False
        run.state = RunState(
            run_key=run_key,
            node=run.graph.start,
            entered_at=workflow.now(),
            last_event=event_context(trigger) if trigger else None,
        )
        if trigger:
            run.seen.add(trigger.id)
            run.state.seen_event_ids.append(trigger.id)
        if run.inp.search_attributes and not self._started_with_attributes():
            workflow.upsert_search_attributes(
                [
                    sa.JOURNEY_ID.value_set(run.inp.journey_id),
                    sa.JOURNEY_VERSION.value_set(run.inp.version),
                    sa.JOURNEY_USER.value_set(run.inp.user_id),
                ]
            )
        record(run, "entry", "journey", "entered", {"trigger": trigger.name if trigger else None})
        for event in run.early_events:
            self._observe(event)
        run.early_events.clear()
        return True

    def _observe(self, event: UserEvent) -> None:
        """An event arrives (once per id): remembered for the waits, checked
        against goals and exits."""
        run = self._run
        state = run.require_state()
        state.seen_event_ids = (state.seen_event_ids + [event.id])[-SEEN_EVENT_IDS_KEPT:]
        if run.buffers_events:
            keep_for_waits(run, event)
        else:
            run.arrivals.append(event)
        check_event(run, event)
        note_tag_change(run, event)

    async def _interpret(self) -> str:
        run = self._run
        state = run.require_state()
        while state.node is not None:
            await process_goals(run)
            if run.exit_reason:
                return await finish(run, "exited", run.exit_reason)
            if self._should_continue_as_new():
                await flush(run)
                workflow.continue_as_new(self._continued_input())
            step = run.graph.nodes[state.node]
            state.visits[step.id] = state.visits.get(step.id, 0) + 1
            run.steps_run += 1
            try:
                outcome = await self._execute(step)
            except Exited:
                return await finish(run, "exited", run.exit_reason or "exit condition")
            state.node = run.graph.successor(step.id, outcome)
        await process_goals(run)
        return await finish(run, "converted" if state.converted else "completed", None)

    async def _execute(self, step: Step) -> str:
        """Run one step; its outcome picks the graph edge to follow."""
        handler = STEP_HANDLERS.get(type(step))
        if handler is None:
            raise UnknownStepKind(f"no handler for step kind {step.kind!r} ({type(step).__name__}) at {step.id!r}")
        return await handler(self._run, step)

    # ------------------------------------------------------------ helpers

    def _started_with_attributes(self) -> bool:
        """The starter (the API's ``start_run``) already set who and what this
        run is; upserting the same values again is one more visibility write."""
        run = self._run
        if not run.local_effects:
            return False
        current = workflow.info().typed_search_attributes
        return current.get(sa.JOURNEY_ID) == run.inp.journey_id and current.get(sa.JOURNEY_USER) == run.inp.user_id

    def _should_continue_as_new(self) -> bool:
        limit = self._run.inp.continue_after_steps
        if limit is not None and self._run.steps_run >= limit:
            return True
        return workflow.info().is_continue_as_new_suggested()

    def _continued_input(self) -> JourneyInput:
        state = self._run.require_state()
        state.seen_event_ids = state.seen_event_ids[-SEEN_EVENT_IDS_KEPT:]
        return self._run.inp.model_copy(update={"state": state, "trigger_event": None})
