"""The step handlers: one per kind of ``dsl.ir.Step``, each answering only
*which outcome* happened (the graph says where that leads), and
``STEP_HANDLERS``, the table the run loop dispatches on.

Everything a handler does to the user goes through activities with
idempotency keys derived from (run, node, visit), so retries and replays
never send or issue twice. This module must stay free of side effects.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any

from temporalio import workflow
from temporalio.exceptions import ActivityError

from contracts import names
from contracts import search_attributes as sa
from contracts.activities import (
    CouponRequest,
    CouponResult,
    SendRequest,
    SendResult,
    SplitTestRequest,
    SplitTestResult,
    TagRequest,
)
from contracts.conditions import count_queries, evaluate
from dsl.ir import (
    DEFAULT_PRIORITY,
    CouponStep,
    ExitStep,
    GotoStep,
    IfStep,
    LabelStep,
    PassStep,
    SendStep,
    SplitStep,
    TagStep,
    Variant,
    WaitDateStep,
    WaitEventStep,
    WaitEventTimeStep,
    WaitStep,
    WaitUntilStep,
)
from dsl.tag_names import make_tag
from workflows.effects import effect, snapshot
from workflows.event_wait import wait_event
from workflows.goals_exits import Exited, has_user_exits, stop_before_effect
from workflows.localtime import quiet_hours_end, zone
from workflows.patches import LEAN_SNAPSHOTS
from workflows.records import record
from workflows.run import Run
from workflows.waits import sleep_until, wait, wait_event_time, wait_until_time, wait_user_date


async def send(run: Run, step: SendStep) -> str:
    """Quiet hours first, then the send; a send that a frequency cap stops
    under ``on capped defer`` sleeps until the caps allow it and goes round
    again (quiet hours and exits are checked anew), until its longest
    deferral has passed. With ``on capped skip`` (every journey before the
    policy existed) the loop runs once: the same commands as ever."""
    policy = step.when_capped or run.inp.ir.when_capped
    defer_until = None
    if policy is not None and policy.mode == "defer" and policy.max_delay_seconds:
        defer_until = workflow.now() + timedelta(seconds=policy.max_delay_seconds)
    while True:
        await _hold_for_quiet_hours(run, step)
        stop_before_effect(run)
        still_deferrable = defer_until is not None and workflow.now() < defer_until
        request = _send_request(run, step, defer_until if still_deferrable else None)
        try:
            result = await effect(run, names.SEND, SendResult, request)
        except ActivityError as err:
            record(run, step.id, "send", "failed", {"reason": f"gave up retrying: {err.cause or err}"})
            return "next"
        if result.status == "capped" and result.retry_at is not None:
            # never a busy loop, whatever the engine answers: at least a minute
            retry_at = max(result.retry_at, workflow.now() + timedelta(minutes=1))
            until = retry_at.isoformat()
            record(
                run, step.id, "send", "deferred", {"until": until, "reason": result.reason, "channel": result.channel}
            )
            await sleep_until(run, retry_at, step.id)
            continue
        record(run, step.id, "send", result.status, {"channel": result.channel, "reason": result.reason})
        return "next"


async def _hold_for_quiet_hours(run: Run, step: SendStep) -> None:
    state = run.require_state()
    quiet = run.inp.ir.quiet_hours
    user = None
    if quiet or has_user_exits(run) or not run.follows(LEAN_SNAPSHOTS):
        user = await snapshot(run, templates=[step.template])
    if quiet and user and step.template not in user.transactional_templates and not state.holdout:
        tz = zone(user.timezone, run.inp.ir.timezone)
        until = quiet_hours_end(workflow.now(), tz, quiet.start, quiet.end)
        if until is not None:
            record(run, step.id, "send", "deferred", {"until": until.isoformat(), "reason": "quiet hours"})
            await sleep_until(run, until, step.id)


def _send_request(run: Run, step: SendStep, defer_until: datetime | None) -> SendRequest:
    state = run.require_state()
    limit = run.inp.ir.message_limit
    return SendRequest(
        idempotency_key=run.key(step.id),
        run_key=state.run_key,
        journey_id=run.inp.journey_id,
        version=run.inp.version,
        node_id=step.id,
        user_id=run.inp.user_id,
        channels=list(step.channels),
        best_of=step.best_of,
        template=step.template,
        variant=state.variant,
        holdout=state.holdout,
        event=state.last_event,
        coupon=state.last_coupon,
        journey_limit_count=limit.count if limit else None,
        journey_limit_window_seconds=limit.window_seconds if limit else None,
        journey_limit_calendar=limit.calendar if limit else None,
        journey_timezone=run.inp.ir.timezone,
        defer_until=defer_until,
        priority=run.inp.ir.priority or DEFAULT_PRIORITY,
        now=workflow.now(),
    )


async def coupon(run: Run, step: CouponStep) -> str:
    state = run.require_state()
    if has_user_exits(run) or not run.follows(LEAN_SNAPSHOTS):
        await snapshot(run)  # exit conditions on tags are checked before a side effect
    stop_before_effect(run)
    if state.holdout:
        record(run, step.id, "coupon", "suppressed", {"reason": "holdout"})
        return "next"
    try:
        result = await effect(
            run,
            names.ISSUE_COUPON,
            CouponResult,
            CouponRequest(
                idempotency_key=run.key(step.id),
                run_key=state.run_key,
                journey_id=run.inp.journey_id,
                node_id=step.id,
                user_id=run.inp.user_id,
                pool=step.pool,
                now=workflow.now(),
            ),
        )
        status, issued = result.status, result.coupon
    except ActivityError as err:
        status, issued = "failed", None
        record(run, step.id, "coupon", "failed", {"reason": str(err.cause or err)})
    if status == "issued":
        state.last_coupon = issued
        record(run, step.id, "coupon", "issued", {"code": (issued or {}).get("code")})
        return "next"
    if status != "failed":
        record(run, step.id, "coupon", status)
    return "out_of_stock"


async def tag(run: Run, step: TagStep) -> str:
    """Constant tags, and (``computed``) tags made from the event's or the
    user's fields, made safe by ``dsl.tag_names``; one whose value is missing
    or leaves nothing is skipped with the reason in the step's record. Steps
    without computed tags do exactly what they always did."""
    tags, skipped = list(step.tags), []
    if step.computed:
        made, skipped = await _computed_tags(run, step)
        tags += [t for t in made if t not in tags]
    stop_before_effect(run)
    if tags:
        await effect(
            run,
            names.CHANGE_TAGS,
            None,
            TagRequest(
                user_id=run.inp.user_id,
                action=step.action,
                tags=tags,
                source=f"journey:{run.inp.journey_id}",
                now=workflow.now(),
            ),
            deadline=False,
        )
    record(run, step.id, "tag", step.action, {"tags": tags, "skipped": skipped or None})
    # The engine tells the user's other runs; this one knows (no signal to itself).
    run.tags_changed = run.live_signals and has_user_exits(run)
    return "next"


async def _computed_tags(run: Run, step: TagStep) -> tuple[list[str], list[str]]:
    """(the tags made, why others were not)."""
    event = run.require_state().last_event or {}
    attributes: dict[str, Any] = {}
    if any(p.subject == "user" for parts in step.computed or [] for p in parts):
        attributes = (await snapshot(run)).attributes
    made, skipped = [], []
    for parts in step.computed or []:
        pieces, missing = [], None
        for p in parts:
            if p.text is not None:
                pieces.append(p.text)
                continue
            value = (event if p.subject == "event" else attributes).get(p.field or "")
            if value is None or isinstance(value, dict | list) or value == "":
                missing = f"{p.subject}.{p.field} is missing"
                break
            pieces.append(str(value))
        name = make_tag("".join(pieces)) if missing is None else None
        if name is None:
            skipped.append(missing or f"{''.join(pieces)!r} makes no tag")
        else:
            made.append(name)
    return made, skipped


async def if_(run: Run, step: IfStep) -> str:
    queries = [q for branch in step.branches for q in count_queries(branch.cond)]
    user = await snapshot(run, counts=queries)
    event = run.require_state().last_event
    for index, branch in enumerate(step.branches):
        if evaluate(branch.cond, user, event):
            record(run, step.id, "if", f"branch:{index}")
            return f"branch:{index}"
    record(run, step.id, "if", "else")
    return "else"


async def split(run: Run, step: SplitStep) -> str:
    """A variant drawn by percentage, or the one ``forced_variants`` names
    for this split (a simulation walking a chosen branch). A forced name the
    split does not have draws as usual: the simulator refuses such names
    before it starts anything, and a bad input must not fail a run."""
    forced_name = run.inp.forced_variants.get(step.id)
    forced = next((v for v in step.variants if v.name == forced_name), None)
    if forced is not None:
        return _take(run, step, forced, {"forced": True})
    if step.test is not None:
        return await _split_test(run, step)
    return _take(run, step, _draw(step), None)


def _take(run: Run, step: SplitStep, chosen: Variant, detail: dict[str, Any] | None) -> str:
    state = run.require_state()
    state.variants[step.id] = chosen.name
    state.variant = chosen.name
    state.holdout = state.holdout or chosen.holdout
    if run.inp.search_attributes:
        workflow.upsert_search_attributes([sa.JOURNEY_VARIANT.value_set(chosen.name)])
    record(run, step.id, "split", f"variant:{chosen.name}", detail)
    return f"variant:{chosen.name}"


async def _split_test(run: Run, step: SplitStep) -> str:
    """``split test P% for W by …``: while the window (from the first run
    here, ``engine.split_tests``) is open, P% of the runs are drawn into the
    test and the rest wait here until it closes; then, and for every later
    run, the winner decided once for the version. Only journeys written with
    a test split take this path (the field is new), so older runs replay."""
    test = step.test
    assert test is not None
    asked = await _ask_test(run, step, decide=False)
    if asked.winner is None:
        closes = asked.started_at + timedelta(seconds=test.window_seconds)
        if workflow.now() < closes:
            if workflow.random().random() * 100 < test.sample_percent:
                return _take(run, step, _draw(step), {"test": True})
            record(run, step.id, "split", "held", {"until": closes.isoformat(), "reason": "split test running"})
            await sleep_until(run, closes, step.id)
        asked = await _ask_test(run, step, decide=True)
    names = {v.name: v for v in step.variants}
    winner = names.get(asked.winner or "") or names.get(step.fallback()) or step.variants[0]
    return _take(run, step, winner, {"winner": True, "decided_by": asked.decided_by})


async def _ask_test(run: Run, step: SplitStep, *, decide: bool) -> SplitTestResult:
    request = SplitTestRequest(
        journey_id=run.inp.journey_id, version=run.inp.version, node_id=step.id, now=workflow.now(), decide=decide
    )
    return await effect(run, names.SPLIT_TEST, SplitTestResult, request, deadline=False)


def _draw(step: SplitStep) -> Variant:
    roll = workflow.random().random() * 100
    cumulative = 0.0
    for variant in step.variants:
        cumulative += variant.percent
        if roll < cumulative:
            return variant
    return step.variants[-1]


async def pass_(run: Run, step: LabelStep | GotoStep | PassStep) -> str:
    """Steps that only shape the graph (its edges say where a goto goes)."""
    record(run, step.id, step.kind, "passed")
    return "next"


async def exit_(run: Run, step: ExitStep) -> str:
    record(run, step.id, step.kind, "passed")
    run.exit_reason = run.exit_reason or "exit step"
    raise Exited()


StepHandler = Callable[[Run, Any], Awaitable[str]]

# Step class -> its handler, one per kind of ``dsl.ir.Step`` (``STEP_KINDS``):
# tests/workflows/test_step_handlers.py fails when a kind has none, and a run
# that meets one anyway raises ``UnknownStepKind``.
STEP_HANDLERS: dict[type, StepHandler] = {
    SendStep: send,
    CouponStep: coupon,
    TagStep: tag,
    WaitStep: wait,
    WaitUntilStep: wait_until_time,
    WaitDateStep: wait_user_date,
    WaitEventTimeStep: wait_event_time,
    WaitEventStep: wait_event,
    IfStep: if_,
    SplitStep: split,
    LabelStep: pass_,
    GotoStep: pass_,
    PassStep: pass_,
    ExitStep: exit_,
}
