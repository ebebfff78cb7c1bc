"""The journey as a graph of steps: which node comes after which, by outcome.

Nested blocks, labels and ``goto`` are flattened here once, so the interpreter,
the checker (reachability, spin loops, message bounds) and the diagram renderer
all follow the same edges. The interpreter's whole position is one node id,
which makes continue-as-new trivial.

Outcomes (edge keys):
Each kind's edges come from ``LINKS`` (one entry per kind of ``dsl.ir.Step``;
their keys are the kind's ``outcomes``):
- ``next``: the plain successor (sends, tags, waits, labels, pass, goto; a
  coupon that was issued).
- ``out_of_stock``: coupon pool empty.
- ``event`` / ``timeout``: the two ends of ``wait for event``.
- ``branch:<i>`` / ``else``: the arms of ``if``.
- ``variant:<name>``: the arms of ``split``.
A target of ``None`` means the journey ends there.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

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


@dataclass(frozen=True)
class Edge:
    outcome: str
    target: str | None
    label: str = ""


@dataclass
class Graph:
    start: str | None
    nodes: dict[str, Step] = field(default_factory=dict)
    edges: dict[str, list[Edge]] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)  # label name -> node id

    def successor(self, node_id: str, outcome: str = "next") -> str | None:
        for edge in self.edges.get(node_id, []):
            if edge.outcome == outcome:
                return edge.target
        raise KeyError(f"node {node_id!r} has no outcome {outcome!r}")

    def targets(self, node_id: str) -> list[str | None]:
        return [e.target for e in self.edges.get(node_id, [])]


def build_graph(journey: Journey) -> Graph:
    """Flatten the journey's nested steps into a graph. Gotos to unknown labels
    end the journey (the checker reports them)."""
    graph = Graph(start=None)
    for step in iter_steps(journey.steps):
        graph.nodes[step.id] = step
        if isinstance(step, LabelStep):
            graph.labels.setdefault(step.name, step.id)
    graph.start = _link_block(graph, journey.steps, after=None)
    return graph


def _link_block(graph: Graph, steps: list[Step], after: str | None) -> str | None:
    """Link a block whose end continues at ``after``; return its first node id."""
    following = after
    for step in reversed(steps):
        _link_step(graph, step, following)
        following = step.id
    return following


def _link_step(graph: Graph, step: Step, after: str | None) -> None:
    link = LINKS.get(type(step))
    if link is None:
        raise TypeError(f"dsl.graph.LINKS has no entry for step kind {step.kind!r}")
    graph.edges[step.id] = link(graph, step, after)


def _next(graph: Graph, step: Step, after: str | None) -> list[Edge]:
    return [Edge("next", after)]


def _goto(graph: Graph, step: GotoStep, after: str | None) -> list[Edge]:
    return [Edge("next", graph.labels.get(step.label), f"goto {step.label}")]


def _exit(graph: Graph, step: ExitStep, after: str | None) -> list[Edge]:
    return [Edge("next", None, "exit")]


def _coupon(graph: Graph, step: CouponStep, after: str | None) -> list[Edge]:
    out_of_stock = _link_block(graph, step.out_of_stock, after) if step.out_of_stock is not None else after
    return [Edge("next", after, "issued"), Edge("out_of_stock", out_of_stock, "out of stock")]


def _wait_event(graph: Graph, step: WaitEventStep, after: str | None) -> list[Edge]:
    return [
        Edge("event", _link_block(graph, step.on_event, after), f"on {step.event}"),
        Edge("timeout", _link_block(graph, step.on_timeout, after), "on timeout"),
    ]


def _if(graph: Graph, step: IfStep, after: str | None) -> list[Edge]:
    edges = [
        Edge(f"branch:{i}", _link_block(graph, b.steps, after), "yes" if i == 0 else f"else if #{i}")
        for i, b in enumerate(step.branches)
    ]
    edges.append(Edge("else", _link_block(graph, step.else_steps or [], after), "else"))
    return edges


def _split(graph: Graph, step: SplitStep, after: str | None) -> list[Edge]:
    return [
        Edge(f"variant:{v.name}", _link_block(graph, v.steps, after), f"{v.name} {v.percent:g}%") for v in step.variants
    ]


# step class -> its edges (in the order of its ``outcomes``); a kind with
# blocks links them here, so one left out would lose its nested steps
LINKS: dict[type[_Step], Callable[[Graph, Any, str | None], list[Edge]]] = {
    SendStep: _next,
    CouponStep: _coupon,
    TagStep: _next,
    WaitStep: _next,
    WaitUntilStep: _next,
    WaitDateStep: _next,
    WaitEventTimeStep: _next,
    WaitEventStep: _wait_event,
    IfStep: _if,
    SplitStep: _split,
    LabelStep: _next,
    GotoStep: _goto,
    ExitStep: _exit,
    PassStep: _next,
}
