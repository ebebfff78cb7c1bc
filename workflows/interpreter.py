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
graph says where to go next; ``STEP_HANDLERS`` maps each step class to its
handler. Everything the run does to the user goes through activities, called
by their registered names (``contracts.activity_names``: this layer imports
nothing of ``engine/``), with idempotency keys derived from (run, node, visit),
so retries and replays never send or issue twice.

This module must stay free of side effects.
"""

import asyncio
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError

from contracts import activity_names as names
from contracts import search_attributes as sa
from contracts.activities import (
    BeginRunRequest,
    BeginRunResult,
    CouponRequest,
    CouponResult,
    EndRunRequest,
    EventCountQuery,
    RecordStepsRequest,
    SendRequest,
    SendResult,
    StepRecord,
    TagRequest,
    UserSnapshot,
    UserSnapshotRequest,
)
from contracts.conditions import count_queries, evaluate
from contracts.runs import JourneyInput, RunState, RunStatus, UserEvent
from dsl.graph import Graph, build_graph
from dsl.ir import (
    CouponStep,
    ExitStep,
    GotoStep,
    IfStep,
    LabelStep,
    PassStep,
    SendStep,
    SplitStep,
    Step,
    TagStep,
    WaitDateStep,
    WaitEventStep,
    WaitEventTimeStep,
    WaitStep,
    WaitUntilStep,
)
from workflows.localtime import (
    moment_from,
    next_local_time,
    quiet_hours_end,
    zone,
)
from workflows.patches import END_WITH_RECORDS, LEAN_SNAPSHOTS, LOCAL_EFFECTS, taken

SEEN_EVENT_IDS_KEPT = 500
_ACTIVITY_RETRY = RetryPolicy(initial_interval=timedelta(seconds=1), maximum_interval=timedelta(minutes=1))
_SIDE_EFFECT_TIMEOUT = timedelta(seconds=30)
_SIDE_EFFECT_DEADLINE = timedelta(hours=1)
_LOCAL_TIMEOUT = timedelta(seconds=10)


_R = TypeVar("_R")


class _Exited(Exception):
    """Unwinds a step handler when an exit condition fires mid-step (or the
    step is ``exit``)."""


class UnknownStepKind(TypeError):
    """A step class without a handler in ``STEP_HANDLERS``. Raised inside a
    workflow task it fails the task, not the run: Temporal retries the task, so
    the run waits where it is until a worker that knows the kind takes it."""


class JourneyInterpreter:
    """One run's state and step handlers; ``JourneyWorkflow`` delegates to it."""

    def __init__(self, inp: JourneyInput) -> None:
        self._inp = inp
        self._graph: Graph = build_graph(inp.ir)
        self._state: RunState | None = inp.state
        self._seen: set[str] = set(inp.state.seen_event_ids) if inp.state else set()
        self._arrivals: list[UserEvent] = []  # events since this run (or continuation) started
        # Events from here on in _arrivals are new to the next ``wait for event``:
        # those that came while the run was busy between two waits count.
        self._cursor = 0
        self._exit_reason: str | None = None
        self._goal_pending: list[UserEvent] = []
        self._records: list[StepRecord] = []
        self._waiting: str | None = None
        self._steps_run = 0
        self._early_events: list[UserEvent] = []  # arrived before the run registered
        self._local_effects: bool | None = None  # decided once per run, see ``_patched``

    # ------------------------------------------------------------ signals/queries

    def on_event(self, event: UserEvent) -> None:
        if event.id in self._seen:
            return
        self._seen.add(event.id)
        if self._state is None:
            self._early_events.append(event)
            return
        self._observe(event)

    def status(self) -> RunStatus:
        state = self._state
        return RunStatus(
            journey_id=self._inp.journey_id,
            version=self._inp.version,
            user_id=self._inp.user_id,
            node=state.node if state else None,
            waiting=self._waiting,
            variant=state.variant if state else None,
            holdout=state.holdout if state else False,
            converted=state.converted if state else False,
            entered_at=state.entered_at if state else workflow.now(),
            steps_run=self._steps_run,
        )

    # ------------------------------------------------------------------ run

    async def run(self) -> str:
        # The first command of every run decides which revision it follows.
        self._local_effects = taken(LOCAL_EFFECTS)
        if self._state is None:
            begun = await self._begin()
            if not begun:
                return "refused"
        try:
            outcome = await self._interpret()
        except asyncio.CancelledError:
            await self._finish("cancelled", "run cancelled")
            raise
        return outcome

    async def _begin(self) -> bool:
        info = workflow.info()
        run_key = f"{info.workflow_id}:{info.first_execution_run_id}"
        trigger = self._inp.trigger_event
        decision = await self._effect(
            names.BEGIN_RUN,
            BeginRunResult,
            BeginRunRequest(
                run_key=run_key,
                journey_id=self._inp.journey_id,
                version=self._inp.version,
                user_id=self._inp.user_id,
                reentry_mode=self._inp.ir.reentry.mode,
                cooldown_seconds=self._inp.ir.reentry.cooldown_seconds,
                now=workflow.now(),
                trigger_event=trigger.model_dump(mode="json") if trigger else None,
            ),
            deadline=False,
        )
        if not decision.allowed:
            return False
        self._state = RunState(
            run_key=run_key,
            node=self._graph.start,
            entered_at=workflow.now(),
            last_event=_event_context(trigger) if trigger else None,
        )
        if trigger:
            self._seen.add(trigger.id)
            self._state.seen_event_ids.append(trigger.id)
        if self._inp.search_attributes and not self._started_with_attributes():
            workflow.upsert_search_attributes(
                [
                    sa.JOURNEY_ID.value_set(self._inp.journey_id),
                    sa.JOURNEY_VERSION.value_set(self._inp.version),
                    sa.JOURNEY_USER.value_set(self._inp.user_id),
                ]
            )
        self._record("entry", "journey", "entered", {"trigger": trigger.name if trigger else None})
        for event in self._early_events:
            self._observe(event)
        self._early_events.clear()
        return True

    async def _interpret(self) -> str:
        state = self._require_state()
        while state.node is not None:
            await self._process_goals()
            if self._exit_reason:
                return await self._finish("exited", self._exit_reason)
            if self._should_continue_as_new():
                await self._flush()
                workflow.continue_as_new(self._continued_input())
            step = self._graph.nodes[state.node]
            state.visits[step.id] = state.visits.get(step.id, 0) + 1
            self._steps_run += 1
            try:
                outcome = await self._execute(step)
            except _Exited:
                return await self._finish("exited", self._exit_reason or "exit condition")
            state.node = self._graph.successor(step.id, outcome)
        await self._process_goals()
        return await self._finish("converted" if state.converted else "completed", None)

    # ------------------------------------------------------------ step handlers

    async def _execute(self, step: Step) -> str:
        """Run one step; its outcome picks the graph edge to follow."""
        handler = STEP_HANDLERS.get(type(step))
        if handler is None:
            raise UnknownStepKind(f"no handler for step kind {step.kind!r} ({type(step).__name__}) at {step.id!r}")
        return await handler(self, step)

    async def _send(self, step: SendStep) -> str:
        state = self._require_state()
        quiet = self._inp.ir.quiet_hours
        snapshot = None
        if quiet or self._has_user_exits() or not self._patched(LEAN_SNAPSHOTS):
            snapshot = await self._snapshot(templates=[step.template])
        if quiet and snapshot and step.template not in snapshot.transactional_templates and not state.holdout:
            tz = zone(snapshot.timezone, self._inp.ir.timezone)
            until = quiet_hours_end(workflow.now(), tz, quiet.start, quiet.end)
            if until is not None:
                self._record(step.id, "send", "deferred", {"until": until.isoformat(), "reason": "quiet hours"})
                await self._sleep_until(until, step.id)
        limit = self._inp.ir.message_limit
        request = SendRequest(
            idempotency_key=self._key(step.id),
            run_key=state.run_key,
            journey_id=self._inp.journey_id,
            version=self._inp.version,
            node_id=step.id,
            user_id=self._inp.user_id,
            channels=list(step.channels),
            best_of=step.best_of,
            template=step.template,
            variant=state.variant,
            holdout=state.holdout,
            event=state.last_event,
            coupon=state.last_coupon,
            journey_limit_count=limit.count if limit else None,
            journey_limit_window_seconds=limit.window_seconds if limit else None,
            now=workflow.now(),
        )
        try:
            result = await self._effect(names.SEND, SendResult, request)
            outcome, detail = result.status, {"channel": result.channel, "reason": result.reason}
        except ActivityError as err:
            outcome, detail = "failed", {"reason": f"gave up retrying: {err.cause or err}"}
        self._record(step.id, "send", outcome, detail)
        return "next"

    async def _coupon(self, step: CouponStep) -> str:
        state = self._require_state()
        if self._has_user_exits() or not self._patched(LEAN_SNAPSHOTS):
            await self._snapshot()  # exit conditions on tags are checked before a side effect
        if state.holdout:
            self._record(step.id, "coupon", "suppressed", {"reason": "holdout"})
            return "next"
        try:
            result = await self._effect(
                names.ISSUE_COUPON,
                CouponResult,
                CouponRequest(
                    idempotency_key=self._key(step.id),
                    run_key=state.run_key,
                    journey_id=self._inp.journey_id,
                    node_id=step.id,
                    user_id=self._inp.user_id,
                    pool=step.pool,
                    now=workflow.now(),
                ),
            )
            status, coupon = result.status, result.coupon
        except ActivityError as err:
            status, coupon = "failed", None
            self._record(step.id, "coupon", "failed", {"reason": str(err.cause or err)})
        if status == "issued":
            state.last_coupon = coupon
            self._record(step.id, "coupon", "issued", {"code": (coupon or {}).get("code")})
            return "next"
        if status != "failed":
            self._record(step.id, "coupon", status)
        return "out_of_stock"

    async def _tag(self, step: TagStep) -> str:
        await self._effect(
            names.CHANGE_TAGS,
            None,
            TagRequest(
                user_id=self._inp.user_id,
                action=step.action,
                tags=list(step.tags),
                source=f"journey:{self._inp.journey_id}",
                now=workflow.now(),
            ),
            deadline=False,
        )
        self._record(step.id, "tag", step.action, {"tags": list(step.tags)})
        return "next"

    async def _wait(self, step: WaitStep) -> str:
        await self._sleep_until(workflow.now() + timedelta(seconds=step.seconds), step.id)
        return "next"

    async def _wait_until_time(self, step: WaitUntilStep) -> str:
        tz = await self._user_zone()
        await self._sleep_until(next_local_time(workflow.now(), tz, step.time, step.weekday), step.id)
        return "next"

    async def _wait_user_date(self, step: WaitDateStep) -> str:
        snapshot = await self._snapshot()
        tz = zone(snapshot.timezone, self._inp.ir.timezone)
        # A past date still goes through the sleep (it flushes the records and
        # returns at once): runs in flight did so, and leaving that flush out
        # would change their command sequence without a patch.
        return await self._wait_date_value(
            step, snapshot.attributes.get(step.attribute), tz, {"attribute": step.attribute}, sleep_when_past=True
        )

    async def _wait_event_time(self, step: WaitEventTimeStep) -> str:
        # A new kind needs no patch: no run recorded before it has one.
        tz = await self._user_zone()
        event = self._require_state().last_event or {}
        return await self._wait_date_value(
            step, event.get(step.field), tz, {"field": step.field, "event": event.get("_name")}, sleep_when_past=False
        )

    async def _wait_date_value(
        self,
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
            self._record(step.id, step.kind, "no_date", {**detail, "reason": reason, "value": _shown(value)})
            return "next"
        until = moment + timedelta(seconds=step.offset_seconds)
        if until <= workflow.now():
            self._record(step.id, step.kind, "past", {**detail, "until": until.isoformat()})
            if not sleep_when_past:
                return "next"
        await self._sleep_until(until, step.id)
        return "next"

    async def _wait_event(self, step: WaitEventStep) -> str:
        first_new = self._cursor
        found: list[UserEvent] = []

        def matched() -> bool:
            for event in self._arrivals[first_new:]:
                if event.name == step.event and (step.where is None or evaluate(step.where, None, event.properties)):
                    found.append(event)
                    return True
            return False

        deadline = workflow.now() + timedelta(seconds=step.timeout_seconds) if step.timeout_seconds else None
        woke = await self._sleep_until(deadline, step.id, wake=matched)
        if woke and found:
            self._require_state().last_event = _event_context(found[0])
            self._record(step.id, "wait_event", "event", {"event_id": found[0].id})
            return "event"
        self._record(step.id, "wait_event", "timeout")
        return "timeout"

    async def _if(self, step: IfStep) -> str:
        queries = [q for branch in step.branches for q in count_queries(branch.cond)]
        snapshot = await self._snapshot(counts=queries)
        event = self._require_state().last_event
        for index, branch in enumerate(step.branches):
            if evaluate(branch.cond, snapshot, event):
                self._record(step.id, "if", f"branch:{index}")
                return f"branch:{index}"
        self._record(step.id, "if", "else")
        return "else"

    async def _split(self, step: SplitStep) -> str:
        state = self._require_state()
        roll = workflow.random().random() * 100
        chosen = step.variants[-1]
        cumulative = 0.0
        for variant in step.variants:
            cumulative += variant.percent
            if roll < cumulative:
                chosen = variant
                break
        state.variants[step.id] = chosen.name
        state.variant = chosen.name
        state.holdout = state.holdout or chosen.holdout
        if self._inp.search_attributes:
            workflow.upsert_search_attributes([sa.JOURNEY_VARIANT.value_set(chosen.name)])
        self._record(step.id, "split", f"variant:{chosen.name}")
        return f"variant:{chosen.name}"

    async def _pass(self, step: LabelStep | GotoStep | PassStep) -> str:
        """Steps that only shape the graph (its edges say where a goto goes)."""
        self._record(step.id, step.kind, "passed")
        return "next"

    async def _exit(self, step: ExitStep) -> str:
        self._record(step.id, step.kind, "passed")
        self._exit_reason = self._exit_reason or "exit step"
        raise _Exited()

    # ------------------------------------------------------------ waiting

    async def _sleep_until(
        self, deadline: datetime | None, node_id: str, wake: Callable[[], bool] | None = None
    ) -> bool:
        """The durable sleep every wait uses (one timer): until ``deadline``
        (forever if None) unless ``wake`` becomes true (returns True). Goals are
        recorded while sleeping; an exit raises."""
        self._waiting = node_id
        if self._inp.search_attributes:
            workflow.upsert_search_attributes([sa.JOURNEY_STEP.value_set(node_id)])
        self._record(node_id, "wait", "waiting", {"until": deadline.isoformat() if deadline else None})
        await self._flush()
        try:
            while True:
                if self._exit_reason:
                    raise _Exited()
                if wake is not None and wake():
                    return True
                timeout = None
                if deadline is not None:
                    timeout = deadline - workflow.now()
                    if timeout <= timedelta(0):
                        return False
                try:
                    await workflow.wait_condition(
                        lambda: bool(self._exit_reason or self._goal_pending or (wake is not None and wake())),
                        timeout=timeout,
                    )
                except TimeoutError:
                    return False
                await self._process_goals()
        finally:
            self._waiting = None
            self._cursor = len(self._arrivals)

    # ------------------------------------------------------------ events, goal, exit

    def _observe(self, event: UserEvent) -> None:
        """Handle an event as it arrives: exits and goals are checked at every
        point of the run, waits see it through ``_arrivals``."""
        state = self._require_state()
        state.seen_event_ids = (state.seen_event_ids + [event.id])[-SEEN_EVENT_IDS_KEPT:]
        self._arrivals.append(event)
        for rule in self._inp.ir.exits:
            if rule.event == event.name and (rule.where is None or evaluate(rule.where, None, event.properties)):
                self._exit_reason = self._exit_reason or f"event {event.name}"
        goal = self._inp.ir.goal
        if goal and not state.converted and event.name == goal.event:
            in_window = goal.within_seconds is None or (
                workflow.now() - state.entered_at <= timedelta(seconds=goal.within_seconds)
            )
            if in_window and (goal.where is None or evaluate(goal.where, None, event.properties)):
                self._goal_pending.append(event)

    async def _process_goals(self) -> None:
        state = self._require_state()
        if not self._goal_pending or state.converted:
            self._goal_pending.clear()
            return
        event = self._goal_pending[0]
        self._goal_pending.clear()
        state.converted = True
        self._record(
            "goal", "goal", "converted", {"event_id": event.id, "variants": dict(state.variants)}, variant=state.variant
        )
        await self._flush()
        goal = self._inp.ir.goal
        if goal and goal.exit_on_goal:
            self._exit_reason = self._exit_reason or "goal reached"

    def _has_user_exits(self) -> bool:
        return any(rule.event is None and rule.cond is not None for rule in self._inp.ir.exits)

    def _check_user_exits(self, snapshot: UserSnapshot) -> None:
        for rule in self._inp.ir.exits:
            if rule.event is None and rule.cond is not None and evaluate(rule.cond, snapshot, None):
                self._exit_reason = self._exit_reason or "exit condition met"
        if self._exit_reason:
            raise _Exited()

    # ------------------------------------------------------------ helpers

    async def _snapshot(
        self, templates: list[str] | None = None, counts: list[EventCountQuery] | None = None
    ) -> UserSnapshot:
        exit_counts = [q for rule in self._inp.ir.exits for q in count_queries(rule.cond)]
        snapshot = await workflow.execute_local_activity(
            names.USER_SNAPSHOT,
            UserSnapshotRequest(
                user_id=self._inp.user_id,
                now=workflow.now(),
                event_counts=(counts or []) + exit_counts,
                templates=templates or [],
            ),
            result_type=UserSnapshot,
            start_to_close_timeout=_LOCAL_TIMEOUT,
            retry_policy=_ACTIVITY_RETRY,
        )
        self._check_user_exits(snapshot)
        return snapshot

    async def _user_zone(self) -> ZoneInfo:
        """The user's time zone (else the journey's), read from a snapshot."""
        snapshot = await self._snapshot()
        return zone(snapshot.timezone, self._inp.ir.timezone)

    def _record(
        self,
        node_id: str,
        kind: str,
        outcome: str,
        detail: dict[str, Any] | None = None,
        variant: str | None = None,
    ) -> None:
        state = self._state
        if state is not None:
            state.record_seq += 1
        self._records.append(
            StepRecord(
                run_key=state.run_key if state else "",
                seq=state.record_seq if state else 0,
                journey_id=self._inp.journey_id,
                version=self._inp.version,
                user_id=self._inp.user_id,
                node_id=node_id,
                kind=kind,
                outcome=outcome,
                variant=variant or (state.variant if state else None),
                at=workflow.now(),
                detail={k: v for k, v in (detail or {}).items() if v is not None},
            )
        )

    async def _flush(self, end: EndRunRequest | None = None) -> None:
        """Write buffered step records in one local activity: one history marker
        per wait instead of one activity per step (and the run's end with its
        last records)."""
        if not self._records and end is None:
            return
        records, self._records = self._records, []
        await workflow.execute_local_activity(
            names.RECORD_STEPS,
            RecordStepsRequest(records=records, end=end),
            start_to_close_timeout=_LOCAL_TIMEOUT,
            retry_policy=_ACTIVITY_RETRY,
        )

    async def _finish(self, outcome: str, reason: str | None) -> str:
        state = self._require_state()
        self._record("end", "end", outcome, {"reason": reason})
        end = EndRunRequest(
            run_key=state.run_key,
            journey_id=self._inp.journey_id,
            user_id=self._inp.user_id,
            outcome=outcome,  # type: ignore[arg-type]
            reason=reason,
            now=workflow.now(),
        )
        if self._patched(END_WITH_RECORDS):
            await self._flush(end=end)
            return outcome
        await self._flush()
        await workflow.execute_activity(
            names.END_RUN,
            end,
            start_to_close_timeout=_SIDE_EFFECT_TIMEOUT,
            retry_policy=_ACTIVITY_RETRY,
        )
        return outcome

    def _patched(self, patch_id: str) -> bool:
        """An older patch: taken for granted by runs on the local-effects
        revision (no marker of its own), asked for by runs replaying older
        histories."""
        return bool(self._local_effects) or taken(patch_id)

    async def _effect(self, name: str, result_type: type[_R] | None, request: Any, *, deadline: bool = True) -> _R:
        """Run a side effect. On the local-effects revision it is a local
        activity: no round trip through the server, and its result is a marker
        in the next workflow task completion. Idempotency keys make either kind
        safe to retry after a crash. ``deadline`` bounds how long retries may go
        on (sends and coupons give up after an hour and record a failure)."""
        execute = workflow.execute_local_activity if self._local_effects else workflow.execute_activity
        return await execute(
            name,
            request,
            result_type=result_type,
            start_to_close_timeout=_SIDE_EFFECT_TIMEOUT,
            schedule_to_close_timeout=_SIDE_EFFECT_DEADLINE if deadline else None,
            retry_policy=_ACTIVITY_RETRY,
        )

    def _started_with_attributes(self) -> bool:
        """The starter (the API's ``start_run``) already set who and what this
        run is; upserting the same values again is one more visibility write."""
        if not self._local_effects:
            return False
        current = workflow.info().typed_search_attributes
        return current.get(sa.JOURNEY_ID) == self._inp.journey_id and current.get(sa.JOURNEY_USER) == self._inp.user_id

    def _key(self, node_id: str) -> str:
        state = self._require_state()
        return f"{state.run_key}:{node_id}:{state.visits.get(node_id, 1)}"

    def _should_continue_as_new(self) -> bool:
        limit = self._inp.continue_after_steps
        if limit is not None and self._steps_run >= limit:
            return True
        return workflow.info().is_continue_as_new_suggested()

    def _continued_input(self) -> JourneyInput:
        state = self._require_state()
        state.seen_event_ids = state.seen_event_ids[-SEEN_EVENT_IDS_KEPT:]
        return self._inp.model_copy(update={"state": state, "trigger_event": None})

    def _require_state(self) -> RunState:
        if self._state is None:
            raise RuntimeError("run has not begun")
        return self._state


def _event_context(event: UserEvent) -> dict[str, Any]:
    """What templates, ``event.x`` conditions and ``wait until event.x`` see of
    an event."""
    return {**event.properties, "_name": event.name, "_id": event.id}


def _shown(value: object) -> object:
    """A value as a step record may carry it (JSON, short)."""
    if value is None or isinstance(value, (bool, int, float)):
        return value
    return str(value)[:80]


StepHandler = Callable[[JourneyInterpreter, Any], Awaitable[str]]

# Step class -> its handler, one per kind of ``dsl.ir.Step`` (``STEP_KINDS``):
# tests/workflows/test_step_handlers.py fails when a kind has none, and a run
# that meets one anyway raises ``UnknownStepKind``.
STEP_HANDLERS: dict[type, StepHandler] = {
    SendStep: JourneyInterpreter._send,
    CouponStep: JourneyInterpreter._coupon,
    TagStep: JourneyInterpreter._tag,
    WaitStep: JourneyInterpreter._wait,
    WaitUntilStep: JourneyInterpreter._wait_until_time,
    WaitDateStep: JourneyInterpreter._wait_user_date,
    WaitEventTimeStep: JourneyInterpreter._wait_event_time,
    WaitEventStep: JourneyInterpreter._wait_event,
    IfStep: JourneyInterpreter._if,
    SplitStep: JourneyInterpreter._split,
    LabelStep: JourneyInterpreter._pass,
    GotoStep: JourneyInterpreter._pass,
    PassStep: JourneyInterpreter._pass,
    ExitStep: JourneyInterpreter._exit,
}
