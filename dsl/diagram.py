"""The diagram of a journey, independent of how it is drawn: nodes (Entry,
one per step, End) and edges (the graph's, in order), labelled in the
operator's words, with a drawing kind per node.

``dsl.render`` draws it as Mermaid, ``dsl.render_svg`` as SVG. The per-kind
facts are ``NODE_KINDS`` (step class → drawing kind, which picks the colour
and shape) and ``EDGE_LABELS`` (step class → the label of each of its edges).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from dsl.graph import build_graph
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
from dsl.render_text import (
    describe_cap_policy,
    describe_cond,
    describe_entry,
    describe_exit_rule,
    describe_goal,
    describe_message_limit,
    describe_priority,
    describe_quiet_hours,
    describe_reentry,
    describe_step,
    describe_step_tooltip,
)

__all__ = [
    "COLORS",
    "EDGE_LABELS",
    "END_ID",
    "ENTRY_ID",
    "NODE_KINDS",
    "Diagram",
    "DiagramEdge",
    "DiagramNode",
    "build_diagram",
    "node_kind",
]

ENTRY_ID = "__entry__"
END_ID = "__end__"

# ---------------------------------------------------------------- the diagram


@dataclass
class DiagramNode:
    id: str
    kind: str  # entry, end, send, coupon, tag, wait, branch, split, exit, flow
    label: str  # short: drawn in the node
    step_kind: str = ""  # the IR kind, "" for entry/end
    tooltip: str = ""  # what hovering shows: the step's words in full and how it behaves; "" means the label


@dataclass
class DiagramEdge:
    source: str
    target: str
    outcome: str
    label: str = ""
    jump: bool = False  # from a goto


@dataclass
class Diagram:
    title: str
    nodes: list[DiagramNode] = field(default_factory=list)
    edges: list[DiagramEdge] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # description, goal, exit rules, ...


# step class -> drawing kind (fill colour and shape, see ``COLORS``)
NODE_KINDS: dict[type[_Step], str] = {
    SendStep: "send",
    CouponStep: "coupon",
    TagStep: "tag",
    WaitStep: "wait",
    WaitUntilStep: "wait",
    WaitDateStep: "wait",
    WaitEventTimeStep: "wait",
    WaitEventStep: "wait",
    IfStep: "branch",
    SplitStep: "split",
    LabelStep: "flow",
    GotoStep: "flow",
    ExitStep: "exit",
    PassStep: "flow",
}

# drawing kind: (fill, stroke, text)
COLORS: dict[str, tuple[str, str, str]] = {
    "entry": ("#dbe8ff", "#3b6fd8", "#10264f"),
    "end": ("#e5e7eb", "#6b7280", "#1f2937"),
    "send": ("#e1f0fd", "#1e88e5", "#0b2e4f"),
    "coupon": ("#fff1dc", "#f08c00", "#4a2a00"),
    "tag": ("#f4e6f7", "#8e24aa", "#3b0d48"),
    "wait": ("#fff8d6", "#c79a00", "#3f3200"),
    "branch": ("#e3f4e4", "#3d9b41", "#123d14"),
    "split": ("#dcf5f3", "#00897b", "#003d36"),
    "exit": ("#fde4e4", "#e53935", "#5a0c0b"),
    "flow": ("#f3f4f6", "#9ca3af", "#374151"),
}


def node_kind(step: Step) -> str:
    """The drawing kind (fill colour) of a step."""
    kind = NODE_KINDS.get(type(step))
    if kind is None:
        raise TypeError(f"dsl.diagram.NODE_KINDS has no drawing kind for step kind {step.kind!r}")
    return kind


def _node_label(step: Step) -> str:
    # A many-armed if says its conditions on the edges instead.
    if isinstance(step, IfStep) and len(step.branches) > 1:
        return "if"
    return describe_step(step)


def _graph_label(step: Step, outcome: str, graph_label: str) -> str:
    """The graph's own edge label, except on a plain ``next`` (nothing to say)."""
    return "" if outcome == "next" else graph_label


def _no_label(step: Step, outcome: str, graph_label: str) -> str:
    return ""  # the node already says it


def _if_label(step: IfStep, outcome: str, graph_label: str) -> str:
    if outcome == "else":
        return "else"
    if len(step.branches) == 1:
        return "yes"
    i = int(outcome.split(":", 1)[1])
    return describe_cond(step.branches[i].cond)


def _split_label(step: SplitStep, outcome: str, graph_label: str) -> str:
    name = outcome.split(":", 1)[1]
    for v in step.variants:
        if v.name == name:
            text = f"{v.name} {v.percent:g}%"
            return text + " (holdout)" if v.holdout and v.name.lower() != "holdout" else text
    return graph_label


# step class -> the label drawn on each of its edges (step, outcome, the
# graph's label)
EDGE_LABELS: dict[type[_Step], Callable[[Any, str, str], str]] = {
    SendStep: _graph_label,
    CouponStep: lambda step, outcome, graph_label: graph_label,  # "issued" / "out of stock"
    TagStep: _graph_label,
    WaitStep: _graph_label,
    WaitUntilStep: _graph_label,
    WaitDateStep: _graph_label,
    WaitEventTimeStep: _graph_label,
    WaitEventStep: _graph_label,
    IfStep: _if_label,
    SplitStep: _split_label,
    LabelStep: _graph_label,
    GotoStep: _no_label,
    ExitStep: _no_label,
    PassStep: _graph_label,
}


def _edge_label(step: Step, outcome: str, graph_label: str) -> str:
    label = EDGE_LABELS.get(type(step))
    if label is None:
        raise TypeError(f"dsl.diagram.EDGE_LABELS has no edge labels for step kind {step.kind!r}")
    return label(step, outcome, graph_label)


def _with_ids(journey: Journey) -> Journey:
    """The journey itself if every step has a unique id, else a copy whose
    missing or repeated ids are filled in (a diagram of an unchecked draft)."""
    seen: set[str] = set()
    ok = True
    for step in iter_steps(journey.steps):
        if not step.id or step.id in seen or step.id in (ENTRY_ID, END_ID):
            ok = False
            break
        seen.add(step.id)
    if ok:
        return journey
    copy = journey.model_copy(deep=True)
    used = {s.id for s in iter_steps(copy.steps) if s.id}
    seen = set()
    n = 0
    for step in iter_steps(copy.steps):
        if not step.id or step.id in seen or step.id in (ENTRY_ID, END_ID):
            while True:
                n += 1
                candidate = f"step{n}"
                if candidate not in used:
                    break
            step.id = candidate
            used.add(candidate)
        seen.add(step.id)
    return copy


def build_diagram(journey: Journey) -> Diagram:
    """Nodes (Entry, steps in document order, End) and edges (Entry → first
    step, then every graph edge in order; ``None`` targets go to End)."""
    journey = _with_ids(journey)
    graph = build_graph(journey)
    d = Diagram(title=journey.name)
    if journey.description:
        d.notes.append(journey.description)
    entry_note = describe_reentry(journey.reentry)
    d.notes.append(entry_note)
    if journey.goal is not None:
        d.notes.append(describe_goal(journey.goal))
    d.notes.extend(describe_exit_rule(r) for r in journey.exits)
    if journey.quiet_hours is not None:
        d.notes.append(describe_quiet_hours(journey.quiet_hours))
    if journey.message_limit is not None:
        d.notes.append(describe_message_limit(journey.message_limit))
    if journey.when_capped is not None:
        d.notes.append(describe_cap_policy(journey.when_capped))
    if journey.priority is not None:
        d.notes.append(describe_priority(journey.priority))

    d.nodes.append(DiagramNode(ENTRY_ID, "entry", "Entry: " + describe_entry(journey.entry)))
    for node_id, step in graph.nodes.items():
        d.nodes.append(DiagramNode(node_id, node_kind(step), _node_label(step), step.kind, describe_step_tooltip(step)))
    d.edges.append(DiagramEdge(ENTRY_ID, graph.start or END_ID, "start"))
    for node_id, step in graph.nodes.items():
        for e in graph.edges.get(node_id, []):
            d.edges.append(
                DiagramEdge(
                    node_id,
                    e.target or END_ID,
                    e.outcome,
                    _edge_label(step, e.outcome, e.label),
                    jump=isinstance(step, GotoStep),
                )
            )
    if any(e.target == END_ID for e in d.edges):
        d.nodes.append(DiagramNode(END_ID, "end", "End"))
    return d
