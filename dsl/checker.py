"""Semantic checks on a parsed journey: everything the grammar cannot see.

``check`` returns every problem at once, errors and warnings, each pointing
at the source line it is about. Codes (stable; tests and docs refer to them):

Errors — the journey must not run:
- E210 unknown template, E211 unknown coupon pool, E212 unknown event,
  E213 channel not enabled (only when a ``Registry`` is given)
- E220 ``goto`` to a label that does not exist
- E221 the same label twice; E222 the same variant name twice in a split
- E223 split percentages that do not add up to 100 (or a variant at 0%)
- E224 a loop that can go round without waiting (it would spin)
- E225 a duration of zero where one is needed
- E226 unknown timezone; E227 impossible time or date (``25:00``, quiet
  hours that start when they end…)
- E228 unknown lifecycle stage; E237 unknown RFM layer
- E229 ``on timeout`` on a ``wait for event`` that has no ``up to``
- E230 a message limit below 1
- E231 ``on capped defer up to`` longer than ``MAX_CAP_DEFER`` (a message
  that late is another message; zero is E225)
- E233 ``otherwise:`` on a split that is not a test, or naming no variant;
  E234 a test sample outside 1–100% or a window over 30d; E235 ``by goal``
  without a goal line
- E232 a priority outside 1–10 or an unknown level name (found while building
  the IR, where the word's position is known)
- E131 nesting deeper than ``dsl.limits.MAX_DEPTH`` (the parser already
  refuses such text; this catches a journey built in code, before the
  recursive walks below), reported alone

Bounds found while parsing (E130–E134: size, nesting, numbers, durations,
surrogates) are listed in ``dsl.limits``.

Warnings — the journey runs, but probably not as meant:
- W301 unreachable steps (a warning, not an error: dead steps are harmless
  at run time and often left on purpose while editing; only the first step of
  each unreachable run is reported)
- W302 ``wait for event`` without ``up to`` (users may wait forever)
- W303 one user can get more messages than the journey's ``limit`` allows
- W304 one user can get more messages in 24h than the global daily limit
- W305 a holdout variant with sends (they will be suppressed)
- W306 ``wait until event.x`` where no event can be in scope (the entry is
  not an event and no ``wait for event`` comes before it): it passes at once
- W307 a journey that states no priority, sends, and can lose a user's
  last message under the caps to a live journey of a better priority, every
  time both want it (the registry's ``priorities``)
- W309 a branch no user can take: what it asks of the stage and RFM layer
  cannot hold with what is known of the user at that moment, under the
  service's rules (the registry's ``profiles``; ``dsl._same_moment``)

Each kind of step has its rules in ``STEP_CHECKS`` (one entry per kind of
``dsl.ir.Step``, a missing one is an error); the graph analysis the rules
share (reachability, loops, the message bound) is ``dsl._analysis``.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Iterator
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from dsl._analysis import DAY, Analysis, busiest, max_messages, sccs, timing
from dsl._gc import gc_paused
from dsl._report import Profiles, Registry, Report, did_you_mean, valid_time
from dsl._same_moment import check_same_moment
from dsl._step_rules import STEP_CHECKS, StepContext, check_cap_policy, check_steps
from dsl.durations import format_duration
from dsl.errors import Diagnostic
from dsl.ir import (
    DEFAULT_PRIORITY,
    RFM_LAYERS,
    STAGES,
    AudienceEntry,
    Cond,
    EventCountCond,
    EventEntry,
    GotoStep,
    Journey,
    RfmCond,
    SendStep,
    Span,
    StageCond,
    Step,
    child_blocks,
    iter_conds,
    iter_steps,
)
from dsl.limits import MAX_DEPTH, journey_depth, too_deep

__all__ = ["STEP_CHECKS", "Profiles", "Registry", "check", "max_messages"]

# Temporal's calendar specs accept these years only.
SCHEDULE_YEARS = (2000, 2100)


def _conds_with_spans(journey: Journey, steps: list[Step]) -> Iterator[tuple[Cond, Span | None]]:
    """Every condition of the journey with the span of the line it is on
    (``steps``: all its steps, as ``iter_steps`` gives them)."""
    entry = journey.entry
    if isinstance(entry, EventEntry | AudienceEntry):
        for c in iter_conds(entry.where):
            yield c, entry.span
    if journey.goal is not None:
        for c in iter_conds(journey.goal.where):
            yield c, journey.goal.span
    for rule in journey.exits:
        for c in (*iter_conds(rule.where), *iter_conds(rule.cond)):
            yield c, rule.span
    for step in steps:
        for cond, span in step.conds():
            for c in iter_conds(cond):
                yield c, span


# ---------------------------------------------------------------- rules


def _check_header(journey: Journey, steps: list[Step], report: Report) -> None:
    try:
        ZoneInfo(journey.timezone)
    except (ZoneInfoNotFoundError, ValueError, OSError):  # OSError: a name too long for a file name
        report.add(
            "E226",
            f"unknown timezone {journey.timezone!r}",
            None,
            'use an IANA name such as "Asia/Shanghai"',
            line=report.find_line("timezone"),
        )
    quiet = journey.quiet_hours
    if quiet is not None:
        if not (valid_time(quiet.start) and valid_time(quiet.end)):
            report.add("E227", "quiet hours need two times of day like 22:00-08:00", quiet.span)
        elif quiet.start == quiet.end:
            report.add("E227", "quiet hours start and end at the same time", quiet.span, "write e.g. 22:00-08:00")
    limit = journey.message_limit
    if limit is not None:
        if limit.count < 1:
            report.add("E230", "a message limit must allow at least 1 message", limit.span)
        if limit.window_seconds <= 0:
            report.add("E225", "the limit's window cannot be zero", limit.span, "write e.g. limit 3 messages per 1d")
    check_cap_policy(journey.when_capped, report)
    reentry = journey.reentry
    if reentry.mode == "after" and not reentry.cooldown_seconds:
        report.add("E225", "re-entry cooldown cannot be zero", reentry.span, "use reentry always to allow it at once")
    goal = journey.goal
    if goal is not None and goal.within_seconds is not None and goal.within_seconds <= 0:
        report.add("E225", "the goal window cannot be zero", goal.span)
    entry = journey.entry
    if isinstance(entry, AudienceEntry):
        sched = entry.schedule
        if not valid_time(sched.time):
            report.add("E227", f"impossible time {sched.time!r}", entry.span, "times are HH:MM, 00:00 to 23:59")
        if sched.every == "once":
            try:
                day = _dt.date.fromisoformat(sched.date or "")
            except ValueError:
                report.add("E227", f"impossible date {sched.date!r}", entry.span, "dates are YYYY-MM-DD")
            else:
                if not SCHEDULE_YEARS[0] <= day.year <= SCHEDULE_YEARS[1]:
                    report.add(
                        "E227",
                        f"a schedule cannot run in {day.year}",
                        entry.span,
                        f"schedules run from {SCHEDULE_YEARS[0]} to {SCHEDULE_YEARS[1]}",
                    )
    for cond, span in _conds_with_spans(journey, steps):
        if isinstance(cond, StageCond):
            for stage in cond.stages:
                if stage not in STAGES:
                    hint = (did_you_mean(stage, STAGES) or "") + " stages: " + ", ".join(STAGES)
                    report.add("E228", f"unknown stage {stage!r}", span, hint.strip())
        if isinstance(cond, RfmCond):
            for layer in cond.layers:
                if layer not in RFM_LAYERS:
                    hint = (did_you_mean(layer, RFM_LAYERS) or "") + " RFM layers: " + ", ".join(RFM_LAYERS)
                    report.add("E237", f"unknown RFM layer {layer!r}", span, hint.strip())
        if isinstance(cond, EventCountCond) and cond.within_seconds is not None and cond.within_seconds <= 0:
            report.add("E225", "a count window cannot be zero", span)


def _check_journey_events(journey: Journey, steps: list[Step], ctx: StepContext) -> None:
    """E212 for the events the header and the conditions name (the steps'
    own are their rules')."""
    entry = journey.entry
    if isinstance(entry, EventEntry):
        ctx.known_event(entry.event, entry.span)
    if journey.goal is not None:
        ctx.known_event(journey.goal.event, journey.goal.span)
    for rule in journey.exits:
        if rule.event is not None:
            ctx.known_event(rule.event, rule.span)
    for cond, span in _conds_with_spans(journey, steps):
        if isinstance(cond, EventCountCond):
            ctx.known_event(cond.event, span)


# ---------------------------------------------------------------- graph rules


def _check_unreachable(steps: list[Step], reachable: set[str], report: Report) -> None:
    previous_dead = False
    for step in steps:
        dead = step.id not in reachable
        if dead and not previous_dead:
            report.add(
                "W301", "this step can never run", step.span, "a step after exit or goto needs a label to be jumped to"
            )
        if not dead:
            for block in child_blocks(step):
                _check_unreachable(block, reachable, report)
        previous_dead = dead


def _check_spin(facts: Analysis, report: Report) -> None:
    graph, order = facts.graph, facts.order
    blocking = {n for n in facts.nodes if timing(graph.nodes[n]).holds(graph.nodes[n])}
    succ = {n: [t for t in facts.succ[n] if t not in blocking] for n in facts.nodes if n not in blocking}
    comp = sccs(list(succ), succ)
    members: dict[int, list[str]] = {}
    for node, c in comp.items():
        members.setdefault(c, []).append(node)
    for nodes in members.values():
        if len(nodes) == 1 and nodes[0] not in succ.get(nodes[0], []):
            continue
        nodes.sort(key=order.__getitem__)
        at = next((n for n in nodes if isinstance(graph.nodes[n], GotoStep)), nodes[0])
        lines = sorted({graph.nodes[n].span.line for n in nodes if graph.nodes[n].span})
        report.add(
            "E224",
            "this loop can go round without waiting" + (f" (lines {', '.join(map(str, lines))})" if lines else ""),
            graph.nodes[at].span,
            "put a wait (wait 1d, wait until 10:00 or wait for event …) inside the loop",
        )


def _check_starved(journey: Journey, steps: list[Step], registry: Registry | None, report: Report) -> None:
    """W307: without a stated priority this journey is ``normal``, and a live
    journey of a better one wins every last slot both want: say so once, at
    the first send, so the operator decides instead of finding out."""
    if registry is None or not registry.priorities or journey.priority is not None:
        return
    first_send = next((s for s in steps if isinstance(s, SendStep)), None)
    if first_send is None:
        return
    better = sorted((p, j) for j, p in registry.priorities.items() if p < DEFAULT_PRIORITY)
    if not better:
        return
    names = ", ".join(f"{j} (priority {p})" for p, j in better[:3])
    report.add(
        "W307",
        f"this journey's messages lose a user's last slot under the caps to {names} whenever both want it",
        first_send.span,
        "write e.g. priority 1 in the header if this journey should come first; leave it if the others should",
    )


def _check_bounds(journey: Journey, facts: Analysis, global_daily_limit: int | None, report: Report) -> None:
    graph = facts.graph
    limit = journey.message_limit
    checks: list[tuple[str, int, int, Span | None, str]] = []
    if limit is not None and limit.count >= 1 and limit.window_seconds > 0:
        checks.append(
            (
                "W303",
                limit.count,
                limit.window_seconds,
                limit.span,
                f"the journey's limit of {limit.count} per {format_duration(limit.window_seconds)}",
            )
        )
    if global_daily_limit is not None and global_daily_limit >= 0:
        checks.append(("W304", global_daily_limit, DAY, None, f"the global limit of {global_daily_limit} per day"))
    caps: dict[int, list[int]] = {}  # window -> caps, one search per window
    for _, allowed, window, _, _ in checks:
        caps.setdefault(window, []).append(allowed + 1)
    found = {(window, c): result for window, cs in caps.items() for c, result in busiest(facts, window, cs).items()}
    for code, allowed, window, span, what in checks:
        count, path = found[(window, allowed + 1)]
        if count <= allowed:
            continue
        lines = [graph.nodes[n].span.line for n in path if graph.nodes[n].span]  # type: ignore[union-attr]
        shown = ", ".join(map(str, lines[: allowed + 1]))
        at = span if span is not None else (graph.nodes[path[0]].span if path else None)
        report.add(
            code,
            f"one user can get more than {allowed} messages within {format_duration(window)}, above {what}",
            at,
            f"e.g. the sends on lines {shown}; space them out with waits (the excess is suppressed at run time)",
        )


def check(
    journey: Journey,
    source: str = "",
    filename: str = "<journey>",
    registry: Registry | None = None,
    global_daily_limit: int | None = None,
) -> list[Diagnostic]:
    """Every error and warning about ``journey``, sorted by position.
    ``filename`` is accepted for symmetry with ``parse``; diagnostics are
    rendered against it by the caller."""
    report = Report(source)
    deep = next(((depth, span) for depth, span in journey_depth(journey) if depth > MAX_DEPTH), None)
    if deep is not None:
        span = deep[1]
        return [too_deep(span.line, span.column, "this step") if span else too_deep(1, 1, "a condition")]
    with gc_paused():
        steps = list(iter_steps(journey.steps))
        facts = Analysis.of(journey, steps=steps)
        ctx = StepContext(
            report, registry, facts, isinstance(journey.entry, EventEntry), has_goal=journey.goal is not None
        )
        _check_journey_events(journey, steps, ctx)
        _check_header(journey, steps, report)
        check_steps(steps, ctx)
        _check_unreachable(journey.steps, facts.reachable, report)
        _check_spin(facts, report)
        _check_bounds(journey, facts, global_daily_limit, report)
        _check_starved(journey, steps, registry, report)
        check_same_moment(journey, registry.profiles if registry else None, report)
    return sorted(report.out, key=lambda d: (d.line, d.column, d.code))
