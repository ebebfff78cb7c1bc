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
- E228 unknown lifecycle stage
- E229 ``on timeout`` on a ``wait for event`` that has no ``up to``
- E230 a message limit below 1

Warnings — the journey runs, but probably not as meant:
- W301 unreachable steps (a warning, not an error: dead steps are harmless
  at run time and often left on purpose while editing; only the first step of
  each unreachable run is reported)
- W302 ``wait for event`` without ``up to`` (users may wait forever)
- W303 one user can get more messages than the journey's ``limit`` allows
- W304 one user can get more messages in 24h than the global daily limit
- W305 a holdout variant with sends (they will be suppressed)

The message bound walks the step graph, adding the shortest time each step
can take (``wait 1d`` takes 1d, the timeout branch of ``wait for event`` takes
its timeout, the event branch may be immediate). A ``wait until`` passes at
once the first time but, inside a loop, at most once per day (per week with a
weekday) — so a daily loop is bounded while a loop driven only by events is
not. The bound is conservative: branches and holdouts are assumed to send.
"""

from __future__ import annotations

import datetime as _dt
import difflib
import heapq
import math
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from dsl._gc import gc_paused
from dsl.errors import Diagnostic, end_with_closers
from dsl.graph import Graph, build_graph
from dsl.ids import format_duration
from dsl.ir import (
    STAGES,
    AndCond,
    AudienceEntry,
    Cond,
    CouponStep,
    EventCountCond,
    EventEntry,
    GotoStep,
    IfStep,
    Journey,
    LabelStep,
    NotCond,
    OrCond,
    SendStep,
    Span,
    SplitStep,
    StageCond,
    Step,
    WaitDateStep,
    WaitEventStep,
    WaitStep,
    WaitUntilStep,
    child_blocks,
    iter_steps,
)

__all__ = ["Registry", "check", "max_messages"]

DAY = 86400
WEEK = 7 * DAY
# Temporal's calendar specs accept these years only.
SCHEDULE_YEARS = (2000, 2100)
_TIME = re.compile(r"(\d{1,2}):(\d{2})")


@dataclass
class Registry:
    """What exists in the workspace. ``None`` means "not checked"."""

    templates: set[str] | None = None
    pools: set[str] | None = None
    events: set[str] | None = None
    channels: set[str] | None = None


class _Report:
    def __init__(self, source: str) -> None:
        self.lines = source.splitlines()
        self.out: list[Diagnostic] = []

    def add(
        self,
        code: str,
        message: str,
        span: Span | None,
        hint: str | None = None,
        *,
        line: int | None = None,
    ) -> None:
        severity = "warning" if code.startswith("W") else "error"
        if span is not None:
            end = None
            if span.end_line == span.line:
                text = self.lines[span.line - 1] if 0 < span.line <= len(self.lines) else ""
                end = end_with_closers(text, span.end_column)
            self.out.append(Diagnostic(code, message, span.line, span.column, hint, severity, end))
        else:
            ln = line or 1
            text = self.lines[ln - 1] if 0 < ln <= len(self.lines) else ""
            col = len(text) - len(text.lstrip()) + 1
            self.out.append(Diagnostic(code, message, ln, col, hint, severity, len(text.rstrip()) + 1 or None))

    def find_line(self, word: str) -> int | None:
        """The first line starting with ``word``, for header values without a span."""
        for number, text in enumerate(self.lines, start=1):
            if re.match(rf"\s*{word}\b", text):
                return number
        return None


def _did_you_mean(name: str, known: set[str] | tuple[str, ...]) -> str | None:
    close = difflib.get_close_matches(name, list(known), n=1)
    return f"did you mean {close[0]!r}?" if close else None


def _iter_conds(cond: Cond | None) -> Iterator[Cond]:
    if cond is None:
        return
    yield cond
    if isinstance(cond, AndCond | OrCond):
        for operand in cond.operands:
            yield from _iter_conds(operand)
    elif isinstance(cond, NotCond):
        yield from _iter_conds(cond.operand)


def _conds_with_spans(journey: Journey, steps: list[Step]) -> Iterator[tuple[Cond, Span | None]]:
    """Every condition of the journey with the span of the line it is on
    (``steps``: all its steps, as ``iter_steps`` gives them)."""
    entry = journey.entry
    if isinstance(entry, EventEntry | AudienceEntry):
        for c in _iter_conds(entry.where):
            yield c, entry.span
    if journey.goal is not None:
        for c in _iter_conds(journey.goal.where):
            yield c, journey.goal.span
    for rule in journey.exits:
        for c in (*_iter_conds(rule.where), *_iter_conds(rule.cond)):
            yield c, rule.span
    for step in steps:
        if isinstance(step, WaitEventStep):
            for c in _iter_conds(step.where):
                yield c, step.span
        elif isinstance(step, IfStep):
            for branch in step.branches:
                for c in _iter_conds(branch.cond):
                    yield c, branch.span or step.span


def _valid_time(text: str | None) -> bool:
    match = _TIME.fullmatch(text or "")
    return bool(match) and int(match.group(1)) < 24 and int(match.group(2)) < 60


# ---------------------------------------------------------------- rules


def _check_registry(journey: Journey, steps: list[Step], registry: Registry, report: _Report) -> None:
    def event(name: str, span: Span | None) -> None:
        if registry.events is not None and name not in registry.events:
            report.add("E212", f"unknown event {name!r}", span, _did_you_mean(name, registry.events))

    entry = journey.entry
    if isinstance(entry, EventEntry):
        event(entry.event, entry.span)
    if journey.goal is not None:
        event(journey.goal.event, journey.goal.span)
    for rule in journey.exits:
        if rule.event is not None:
            event(rule.event, rule.span)
    for cond, span in _conds_with_spans(journey, steps):
        if isinstance(cond, EventCountCond):
            event(cond.event, span)
    for step in steps:
        if isinstance(step, SendStep):
            if registry.templates is not None and step.template not in registry.templates:
                report.add(
                    "E210",
                    f"unknown template {step.template!r}",
                    step.span,
                    _did_you_mean(step.template, registry.templates),
                )
            if registry.channels is not None:
                for channel in step.channels:
                    if channel not in registry.channels:
                        report.add(
                            "E213",
                            f"channel {channel!r} is not enabled",
                            step.span,
                            "enabled channels: " + ", ".join(sorted(registry.channels)),
                        )
        elif isinstance(step, CouponStep):
            if registry.pools is not None and step.pool not in registry.pools:
                report.add(
                    "E211", f"unknown coupon pool {step.pool!r}", step.span, _did_you_mean(step.pool, registry.pools)
                )
        elif isinstance(step, WaitEventStep):
            event(step.event, step.span)


def _check_header(journey: Journey, steps: list[Step], report: _Report) -> None:
    try:
        ZoneInfo(journey.timezone)
    except (ZoneInfoNotFoundError, ValueError):
        report.add(
            "E226",
            f"unknown timezone {journey.timezone!r}",
            None,
            'use an IANA name such as "Asia/Shanghai"',
            line=report.find_line("timezone"),
        )
    quiet = journey.quiet_hours
    if quiet is not None:
        if not (_valid_time(quiet.start) and _valid_time(quiet.end)):
            report.add("E227", "quiet hours need two times of day like 22:00-08:00", quiet.span)
        elif quiet.start == quiet.end:
            report.add("E227", "quiet hours start and end at the same time", quiet.span, "write e.g. 22:00-08:00")
    limit = journey.message_limit
    if limit is not None:
        if limit.count < 1:
            report.add("E230", "a message limit must allow at least 1 message", limit.span)
        if limit.window_seconds <= 0:
            report.add("E225", "the limit's window cannot be zero", limit.span, "write e.g. limit 3 messages per 1d")
    reentry = journey.reentry
    if reentry.mode == "after" and not reentry.cooldown_seconds:
        report.add("E225", "re-entry cooldown cannot be zero", reentry.span, "use reentry always to allow it at once")
    goal = journey.goal
    if goal is not None and goal.within_seconds is not None and goal.within_seconds <= 0:
        report.add("E225", "the goal window cannot be zero", goal.span)
    entry = journey.entry
    if isinstance(entry, AudienceEntry):
        sched = entry.schedule
        if not _valid_time(sched.time):
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
                    hint = (_did_you_mean(stage, STAGES) or "") + " stages: " + ", ".join(STAGES)
                    report.add("E228", f"unknown stage {stage!r}", span, hint.strip())
        if isinstance(cond, EventCountCond) and cond.within_seconds is not None and cond.within_seconds <= 0:
            report.add("E225", "a count window cannot be zero", span)


def _check_steps(steps: list[Step], report: _Report) -> None:
    labels: dict[str, LabelStep] = {}
    for step in steps:
        if isinstance(step, LabelStep):
            if step.name in labels:
                first = labels[step.name].span
                where = f" (first on line {first.line})" if first else ""
                report.add("E221", f"label {step.name!r} is defined twice{where}", step.span, "rename one of them")
            else:
                labels[step.name] = step
        elif isinstance(step, WaitStep) and step.seconds <= 0:
            report.add(
                "E225", "wait for zero time", step.span, "write a duration like 30m, 2h or 1d, or remove the wait"
            )
        elif isinstance(step, WaitUntilStep | WaitDateStep):
            if step.time is not None and not _valid_time(step.time):
                report.add("E227", f"impossible time {step.time!r}", step.span, "times are HH:MM, 00:00 to 23:59")
            if isinstance(step, WaitUntilStep) and step.weekday is not None and not 0 <= step.weekday < 7:
                report.add("E227", "impossible weekday", step.span)
        elif isinstance(step, WaitEventStep):
            if step.timeout_seconds is None:
                if step.on_timeout:
                    report.add(
                        "E229",
                        "on timeout never runs: this wait has no up to",
                        step.span,
                        f"write wait for event {step.event} up to 3d",
                    )
                else:
                    report.add(
                        "W302",
                        f"users may wait for {step.event} forever",
                        step.span,
                        "add up to 3d (or another limit) and an on timeout branch",
                    )
            elif step.timeout_seconds <= 0:
                report.add("E225", "wait for event up to zero time", step.span)
        elif isinstance(step, SplitStep):
            names: set[str] = set()
            for variant in step.variants:
                if variant.name in names:
                    report.add(
                        "E222", f"variant {variant.name!r} appears twice in this split", variant.span or step.span
                    )
                names.add(variant.name)
                if variant.percent <= 0:
                    report.add("E223", f"variant {variant.name!r} gets {variant.percent:g}%", variant.span or step.span)
                if variant.holdout and any(isinstance(s, SendStep) for s in iter_steps(variant.steps)):
                    report.add(
                        "W305",
                        "the holdout gets no messages; its sends will only be recorded",
                        variant.span or step.span,
                        "remove the sends, or rename the variant if it should get messages",
                    )
            total = sum(v.percent for v in step.variants)
            if abs(total - 100) > 1e-6:
                report.add(
                    "E223",
                    f"split percentages add up to {total:g}%, not 100%",
                    step.span,
                    "adjust the variants so they add up to 100%",
                )
    for step in steps:
        if isinstance(step, GotoStep) and step.label not in labels:
            hint = (
                _did_you_mean(step.label, tuple(labels))
                or "add label " + step.label + " where the journey should go on"
            )
            report.add("E220", f"goto {step.label!r}: there is no such label", step.span, hint)


# ---------------------------------------------------------------- graph rules


def _reachable(graph: Graph) -> set[str]:
    seen: set[str] = set()
    todo = [graph.start] if graph.start is not None else []
    edges = graph.edges
    while todo:
        node = todo.pop()
        if node is None or node in seen:
            continue
        seen.add(node)
        todo.extend(e.target for e in edges.get(node, ()) if e.target is not None and e.target not in seen)
    return seen


def _check_unreachable(steps: list[Step], reachable: set[str], report: _Report) -> None:
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


def _sccs(nodes: list[str], succ: dict[str, list[str]]) -> dict[str, int]:
    """Tarjan's strongly connected components, iteratively (journeys can be
    long). Returns node → component number."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    comp: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    counter = 0
    n_comp = 0
    for root in nodes:
        if root in index:
            continue
        work = [(root, 0)]
        while work:
            node, i = work.pop()
            if i == 0:
                index[node] = low[node] = counter
                counter += 1
                stack.append(node)
                on_stack.add(node)
            children = succ.get(node, [])
            recurse = False
            while i < len(children):
                child = children[i]
                i += 1
                if child not in index:
                    work.append((node, i))
                    work.append((child, 0))
                    recurse = True
                    break
                if child in on_stack:
                    low[node] = min(low[node], index[child])
            if recurse:
                continue
            if low[node] == index[node]:
                while True:
                    top = stack.pop()
                    on_stack.discard(top)
                    comp[top] = n_comp
                    if top == node:
                        break
                n_comp += 1
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
    return comp


def _blocks(step: Step) -> bool:
    """Does passing this step take time the journey cannot skip?"""
    if isinstance(step, WaitStep):
        return step.seconds > 0
    return isinstance(step, WaitUntilStep | WaitEventStep)


def _check_spin(facts: _Analysis, report: _Report) -> None:
    graph, order = facts.graph, facts.order
    blocking = {n for n in facts.nodes if _blocks(graph.nodes[n])}
    succ = {n: [t for t in facts.succ[n] if t not in blocking] for n in facts.nodes if n not in blocking}
    comp = _sccs(list(succ), succ)
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


def _edge_delay(step: Step, outcome: str) -> int:
    if isinstance(step, WaitStep):
        return max(step.seconds, 0)
    if isinstance(step, WaitEventStep) and outcome == "timeout":
        return max(step.timeout_seconds or 0, 0)
    return 0


# per edge: target, delay, a wait-until pass in a loop?, sends at the target,
# leaves the source's strongly connected component?, the target's document order
_Move = tuple[str, int, bool, int, bool, int]


@dataclass
class _Analysis:
    """The graph facts several rules share, computed once per check."""

    graph: Graph
    reachable: set[str]
    order: dict[str, int]
    comp: dict[str, int]
    cyclic: set[int]
    nodes: list[str] = field(default_factory=list)  # the reachable ones, in document order
    succ: dict[str, list[str]] = field(default_factory=dict)  # reachable successors
    _moves: dict[str, list[_Move]] | None = None

    @classmethod
    def of(cls, journey: Journey, graph: Graph | None = None, steps: list[Step] | None = None) -> _Analysis:
        graph = graph or build_graph(journey)
        reachable = _reachable(graph)
        order = {step.id: i for i, step in enumerate(steps if steps is not None else iter_steps(journey.steps))}
        nodes = sorted(reachable, key=lambda n: order.get(n, 0))
        edges = graph.edges
        succ = {
            n: [e.target for e in edges.get(n, ()) if e.target is not None and e.target in reachable] for n in nodes
        }
        comp = _sccs(nodes, succ)
        cyclic = {comp[n] for n in nodes for t in succ[n] if comp[t] == comp[n]}
        return cls(graph, reachable, order, comp, cyclic, nodes, succ)

    def moves(self) -> dict[str, list[_Move]]:
        """Every reachable node's edges as the message bound walks them."""
        if self._moves is None:
            graph, reachable, comp, cyclic, order = self.graph, self.reachable, self.comp, self.cyclic, self.order
            sends = {n for n in self.nodes if isinstance(graph.nodes[n], SendStep)}
            moves: dict[str, list[_Move]] = {}
            for n in self.nodes:
                step = graph.nodes[n]
                looping_until = isinstance(step, WaitUntilStep) and comp[n] in cyclic
                moves[n] = [
                    (
                        e.target,
                        _edge_delay(step, e.outcome),
                        looping_until,
                        1 if e.target in sends else 0,
                        comp[e.target] != comp[n],
                        order.get(e.target, 0),
                    )
                    for e in graph.edges.get(n, ())
                    if e.target is not None and e.target in reachable
                ]
            self._moves = moves
        return self._moves


def max_messages(
    journey: Journey, window_seconds: int, cap: int, analysis: _Analysis | None = None
) -> tuple[int, list[str]]:
    """The most sends one user can get within ``window_seconds`` along any path,
    counted up to ``cap``; and the ids of the sends on such a path."""
    return _busiest(analysis or _Analysis.of(journey), window_seconds, [cap])[cap]


_State = tuple[str, int, int]  # node, sends so far (up to the cap), wait-until passes in this loop


def _busiest(facts: _Analysis, window_seconds: int, caps: list[int]) -> dict[int, tuple[int, list[str]]]:
    """``max_messages`` for several caps with one search, run with the largest.
    Until a path first reaches a smaller cap, the searches for the two caps are
    the same step for step (no count is cut off yet); the smaller one stops
    there, so its answer is that path."""
    graph, reachable, order, comp, cyclic = facts.graph, facts.reachable, facts.order, facts.comp, facts.cyclic
    out: dict[int, tuple[int, list[str]]] = {c: (0, []) for c in caps}
    cap = max(caps)
    if not reachable or window_seconds <= 0 or cap <= 0:
        return out
    nodes = facts.nodes
    passes: dict[int, int] = {}
    for n in nodes:
        step = graph.nodes[n]
        if isinstance(step, WaitUntilStep) and comp[n] in cyclic:
            period = WEEK if step.weekday is not None else DAY
            passes[comp[n]] = passes.get(comp[n], 0) + math.ceil(window_seconds / period)
    moves = facts.moves()

    best: dict[_State, int] = {}
    parent: dict[_State, _State | None] = {}
    heap: list[tuple[int, int, _State]] = []
    sending: set[str] = set()
    for n in nodes:
        if not isinstance(graph.nodes[n], SendStep):
            continue  # a busiest window can always start at a send
        sending.add(n)
        state = (n, 1, 0)
        best[state] = 0
        parent[state] = None
        heap.append((0, order.get(n, 0), state))
    if not heap:
        return out
    heapq.heapify(heap)
    top: _State = heap[0][2]
    first: dict[int, _State] = {1: top}  # sends -> the first state to reach that many
    inf = math.inf
    pop, push, best_get = heapq.heappop, heapq.heappush, best.get
    while heap:
        elapsed, _, state = pop(heap)
        if best_get(state, inf) < elapsed:
            continue
        node, k, p = state
        if k > top[1]:
            top = first[k] = state
            if k >= cap:
                break
        for target, delay, looping_until, target_sends, leaves, target_order in moves[node]:
            e2 = elapsed + delay
            if e2 >= window_seconds:
                continue
            p2 = p
            if looping_until:
                p2 += 1
                if p2 > passes[comp[node]]:
                    continue
            if leaves:
                p2 = 0
            k2 = k + target_sends
            nxt = (target, cap if k2 > cap else k2, p2)
            if e2 < best_get(nxt, inf):
                best[nxt] = e2
                parent[nxt] = state
                push(heap, (e2, target_order, nxt))

    def path_to(cursor: _State | None) -> list[str]:
        path: list[str] = []
        while cursor is not None:
            if cursor[0] in sending:
                path.append(cursor[0])
            cursor = parent.get(cursor)
        path.reverse()
        return path

    for c in caps:
        if c > 0:
            # a cap of 1 is reached by the first send at once; one never reached
            # means the searches never differed, so the answer is where this one ended
            end = first[min(c, top[1])]
            out[c] = (end[1], path_to(end))
    return out


def _check_bounds(journey: Journey, facts: _Analysis, global_daily_limit: int | None, report: _Report) -> None:
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
    found = {(window, c): result for window, cs in caps.items() for c, result in _busiest(facts, window, cs).items()}
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
    report = _Report(source)
    with gc_paused():
        steps = list(iter_steps(journey.steps))
        if registry is not None:
            _check_registry(journey, steps, registry, report)
        _check_header(journey, steps, report)
        _check_steps(steps, report)
        facts = _Analysis.of(journey, steps=steps)
        _check_unreachable(journey.steps, facts.reachable, report)
        _check_spin(facts, report)
        _check_bounds(journey, facts, global_daily_limit, report)
    return sorted(report.out, key=lambda d: (d.line, d.column, d.code))
