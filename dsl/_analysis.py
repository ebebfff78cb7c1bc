"""Graph analysis for the checker: what is reachable, which steps form loops,
how long each edge takes at the least, the most messages a path can send in a
window, and where the event of ``event.x`` can be in scope.

Computed once per check (``Analysis.of``) over the flattened journey graph of
``dsl.graph`` and shared by the rules in ``dsl.checker``. How long a kind of
step takes is its entry in ``TIMING``.

The message bound walks the step graph, adding the shortest time each step
can take (``wait 1d`` takes 1d, the timeout branch of ``wait for event`` takes
its timeout, the event branch may be immediate). A ``wait until`` passes at
once the first time but, inside a loop, at most once per day (per week with a
weekday) — so a daily loop is bounded while a loop driven only by events is
not. The bound is conservative: branches and holdouts are assumed to send.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from dsl.graph import Graph, build_graph
from dsl.ir import (
    CouponStep,
    ExitStep,
    GotoStep,
    IfStep,
    Journey,
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
    _Step,
    iter_steps,
)

__all__ = ["TIMING", "Analysis", "Timing", "max_messages"]

DAY = 86400
WEEK = 7 * DAY


def _never(step: Any) -> bool:
    return False


def _no_delay(step: Any, outcome: str) -> int:
    return 0


def _no_period(step: Any) -> int | None:
    return None


@dataclass(frozen=True)
class Timing:
    """How long passing one kind of step takes, as the rules need it."""

    # takes time the journey cannot skip, so a loop through it does not spin
    holds: Callable[[Any], bool] = _never
    # the shortest time along the edge of this outcome
    delay: Callable[[Any, str], int] = _no_delay
    # passes at once the first time but, inside a loop, once per this many seconds
    period: Callable[[Any], int | None] = _no_period


_AT_ONCE = Timing()  # passes at once (a date already past passes at once too)

# step class -> its timing
TIMING: dict[type[_Step], Timing] = {
    SendStep: _AT_ONCE,
    CouponStep: _AT_ONCE,
    TagStep: _AT_ONCE,
    WaitStep: Timing(holds=lambda s: s.seconds > 0, delay=lambda s, outcome: max(s.seconds, 0)),
    WaitUntilStep: Timing(holds=lambda s: True, period=lambda s: WEEK if s.weekday is not None else DAY),
    WaitDateStep: _AT_ONCE,
    WaitEventTimeStep: _AT_ONCE,
    WaitEventStep: Timing(
        holds=lambda s: True,
        delay=lambda s, outcome: max(s.timeout_seconds or 0, 0) if outcome == "timeout" else 0,
    ),
    IfStep: _AT_ONCE,
    SplitStep: _AT_ONCE,
    LabelStep: _AT_ONCE,
    GotoStep: _AT_ONCE,
    ExitStep: _AT_ONCE,
    PassStep: _AT_ONCE,
}


def timing(step: Step) -> Timing:
    found = TIMING.get(type(step))
    if found is None:
        raise TypeError(f"dsl._analysis.TIMING has no timing for step kind {step.kind!r}")
    return found


def reachable_from_start(graph: Graph) -> set[str]:
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


def sccs(nodes: list[str], succ: dict[str, list[str]]) -> dict[str, int]:
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


# leaves the source's strongly connected component?, the target's document order
_Move = tuple[str, int, bool, int, bool, int]


@dataclass
class Analysis:
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
    def of(cls, journey: Journey, graph: Graph | None = None, steps: list[Step] | None = None) -> Analysis:
        graph = graph or build_graph(journey)
        reachable = reachable_from_start(graph)
        order = {step.id: i for i, step in enumerate(steps if steps is not None else iter_steps(journey.steps))}
        nodes = sorted(reachable, key=lambda n: order.get(n, 0))
        edges = graph.edges
        succ = {
            n: [e.target for e in edges.get(n, ()) if e.target is not None and e.target in reachable] for n in nodes
        }
        comp = sccs(nodes, succ)
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
                kind = timing(step)
                looping_until = comp[n] in cyclic and kind.period(step) is not None
                moves[n] = [
                    (
                        e.target,
                        kind.delay(step, e.outcome),
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
    journey: Journey, window_seconds: int, cap: int, analysis: Analysis | None = None
) -> tuple[int, list[str]]:
    """The most sends one user can get within ``window_seconds`` along any path,
    counted up to ``cap``; and the ids of the sends on such a path."""
    return busiest(analysis or Analysis.of(journey), window_seconds, [cap])[cap]


_State = tuple[str, int, int]  # node, sends so far (up to the cap), wait-until passes in this loop


def busiest(facts: Analysis, window_seconds: int, caps: list[int]) -> dict[int, tuple[int, list[str]]]:
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
        period = timing(step).period(step) if comp[n] in cyclic else None
        if period is not None:
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


def event_in_scope(facts: Analysis) -> set[str]:
    """The reachable nodes some path reaches after an event arrived at a
    ``wait for event`` (past an ``event`` edge): where ``event.x`` can mean
    something in a journey whose entry is not an event."""
    edges = facts.graph.edges
    todo = [
        e.target
        for n in facts.nodes
        for e in edges.get(n, ())
        if e.outcome == "event" and e.target is not None and e.target in facts.reachable
    ]
    seen: set[str] = set()
    while todo:
        node = todo.pop()
        if node in seen:
            continue
        seen.add(node)
        todo.extend(t for t in facts.succ.get(node, ()) if t not in seen)
    return seen
