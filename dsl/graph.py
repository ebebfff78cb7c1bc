"""The journey as a graph of steps: which node comes after which, by outcome.

Nested blocks, labels and ``goto`` are flattened here once, so the interpreter,
the checker (reachability, spin loops, message bounds) and the diagram renderer
all follow the same edges. The interpreter's whole position is one node id,
which makes continue-as-new trivial.

Outcomes (edge keys):
- ``next``: the plain successor (sends, tags, waits, labels, pass, goto).
- ``out_of_stock``: coupon pool empty.
- ``event`` / ``timeout``: the two ends of ``wait for event``.
- ``branch:<i>`` / ``else``: the arms of ``if``.
- ``variant:<name>``: the arms of ``split``.
A target of ``None`` means the journey ends there.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from dsl.ir import (
    CouponStep,
    ExitStep,
    GotoStep,
    IfStep,
    Journey,
    LabelStep,
    SplitStep,
    Step,
    WaitEventStep,
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
    edges: list[Edge]
    if isinstance(step, GotoStep):
        edges = [Edge("next", graph.labels.get(step.label), f"goto {step.label}")]
    elif isinstance(step, ExitStep):
        edges = [Edge("next", None, "exit")]
    elif isinstance(step, CouponStep):
        edges = [Edge("next", after, "issued")]
        if step.out_of_stock is not None:
            edges.append(Edge("out_of_stock", _link_block(graph, step.out_of_stock, after), "out of stock"))
        else:
            edges.append(Edge("out_of_stock", after, "out of stock"))
    elif isinstance(step, WaitEventStep):
        edges = [
            Edge("event", _link_block(graph, step.on_event, after), f"on {step.event}"),
            Edge("timeout", _link_block(graph, step.on_timeout, after), "on timeout"),
        ]
    elif isinstance(step, IfStep):
        edges = [
            Edge(f"branch:{i}", _link_block(graph, b.steps, after), "yes" if i == 0 else f"else if #{i}")
            for i, b in enumerate(step.branches)
        ]
        edges.append(Edge("else", _link_block(graph, step.else_steps or [], after), "else"))
    elif isinstance(step, SplitStep):
        edges = [
            Edge(f"variant:{v.name}", _link_block(graph, v.steps, after), f"{v.name} {v.percent:g}%")
            for v in step.variants
        ]
    else:
        edges = [Edge("next", after)]
    graph.edges[step.id] = edges
