"""Diagrams of a journey: Mermaid text here, the SVG in ``dsl.render_svg``.

Both draw the diagram of ``dsl.diagram.build_diagram`` (the edges of
``dsl.graph.build_graph``, which the interpreter follows, plus an Entry node
describing how users enter and an End node where the journey finishes).
Nodes are labelled in the operator's words (``dsl.render_text.describe_step``),
edges with their outcome (``A 40%``, ``on timeout``, ``out of stock``,
``else``). This module is also the import point for all of it.
"""

from __future__ import annotations

import re

from dsl.diagram import (
    COLORS,
    END_ID,
    ENTRY_ID,
    Diagram,
    DiagramEdge,
    DiagramNode,
    build_diagram,
    node_kind,
)
from dsl.ir import Journey
from dsl.render_svg import to_svg
from dsl.render_text import (
    CHANNEL_NAMES,
    describe_channel,
    describe_cond,
    describe_duration,
    describe_entry,
    describe_schedule,
    describe_step,
    describe_step_tooltip,
)

__all__ = [
    "CHANNEL_NAMES",
    "COLORS",
    "END_ID",
    "ENTRY_ID",
    "Diagram",
    "DiagramEdge",
    "DiagramNode",
    "build_diagram",
    "describe_channel",
    "describe_cond",
    "describe_duration",
    "describe_entry",
    "describe_schedule",
    "describe_step",
    "describe_step_tooltip",
    "node_kind",
    "to_mermaid",
    "to_svg",
]

_MERMAID_SHAPES: dict[str, tuple[str, str]] = {
    "entry": ("([", "])"),
    "end": ("([", "])"),
    "send": ("[", "]"),
    "coupon": ("[", "]"),
    "tag": ("[", "]"),
    "wait": ("(", ")"),
    "branch": ("{", "}"),
    "split": ("{{", "}}"),
    "exit": ("([", "])"),
    "flow": ("[", "]"),
}


def mermaid_escape(text: str) -> str:
    """Text for inside a quoted Mermaid label: entity codes for the characters
    Mermaid or its HTML labels would read (quotes, ``#``, ``<``, ``>``, ``&``,
    ``|``); newlines become spaces. Chinese and other Unicode pass unchanged."""
    out = []
    for ch in text.replace("\r", " ").replace("\n", " "):
        if ch == "#":
            out.append("#35;")
        elif ch == '"':
            out.append("#quot;")
        elif ch == "<":
            out.append("#lt;")
        elif ch == ">":
            out.append("#gt;")
        elif ch == "&":
            out.append("#amp;")
        elif ch == "|":
            out.append("#124;")
        elif ch == "`":
            out.append("#96;")
        else:
            out.append(ch)
    return "".join(out)


def _mermaid_ids(nodes: list[DiagramNode]) -> dict[str, str]:
    ids: dict[str, str] = {}
    used: set[str] = set()
    for node in nodes:
        if node.id == ENTRY_ID:
            base = "entry"
        elif node.id == END_ID:
            base = "done"
        else:
            base = "s_" + re.sub(r"[^A-Za-z0-9_]", "_", node.id)
        mid, n = base, 1
        while mid in used:
            n += 1
            mid = f"{base}_{n}"
        used.add(mid)
        ids[node.id] = mid
    return ids


def to_mermaid(journey: Journey) -> str:
    """A Mermaid ``flowchart TD`` of the journey, one node per step plus Entry and
    End; a trailing newline included."""
    d = build_diagram(journey)
    ids = _mermaid_ids(d.nodes)
    title = d.title.replace("\\", "\\\\").replace('"', '\\"').replace("\n", " ")
    lines = ["---", f'title: "{title}"', "---", "flowchart TD"]
    for node in d.nodes:
        a, b = _MERMAID_SHAPES[node.kind]
        lines.append(f'    {ids[node.id]}{a}"{mermaid_escape(node.label)}"{b}')
    for edge in d.edges:
        arrow = "-.->" if edge.jump else "-->"
        src, dst = ids[edge.source], ids[edge.target]
        if edge.label:
            lines.append(f'    {src} {arrow}|"{mermaid_escape(edge.label)}"| {dst}')
        else:
            lines.append(f"    {src} {arrow} {dst}")
    by_kind: dict[str, list[str]] = {}
    for node in d.nodes:
        by_kind.setdefault(node.kind, []).append(ids[node.id])
    for kind, members in by_kind.items():
        fill, stroke, color = COLORS[kind]
        # "end" is a Mermaid keyword: prefix the class names.
        lines.append(f"    classDef kind_{kind} fill:{fill},stroke:{stroke},color:{color}")
        lines.append(f"    class {','.join(members)} kind_{kind}")
    return "\n".join(lines) + "\n"
