"""A standalone server-side SVG of a journey's diagram (``dsl.diagram``).

The SVG needs no JavaScript; every node is ``<g class="node"
data-node-id="…" id="node-…">`` (its ``<title>``, the tooltip, is the step in
the operator's words, in full, with how it behaves where the short label in
the box cannot say it) and every live number an element with ``class="count
count-<key>"``, so a page can attach click handlers and update counts in
place. Layout: ``dsl.render_layout``.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from xml.sax.saxutils import escape as _xml_escape

from dsl.diagram import COLORS, ENTRY_ID, DiagramEdge, DiagramNode, build_diagram
from dsl.ir import Journey
from dsl.render_layout import Layout, layered_layout
from dsl.render_text import text_width, wrap_text

__all__ = ["to_svg"]

FONT = 13.0  # label font size, px
CHAR_W = 7.0  # px per display column at FONT (CJK take two columns)
LINE_H = 17.0
SMALL = 11.0
SMALL_CHAR_W = 6.2
PAD_X = 14.0
PAD_Y = 9.0
COUNT_H = 18.0
COUNT_GAP = 3.5  # px between the words of the badge line
WRAP_COLUMNS = 30
MIN_W = 84.0
MARGIN = 20.0
XSPACE = 34.0
YSPACE = 58.0

COUNT_ORDER = ("entered", "waiting", "sent", "suppressed")
COUNT_SHORT = {
    "entered": "in",
    "waiting": "waiting",
    "sent": "sent",
    "suppressed": "suppr.",
    "failed": "failed",
    "exited": "exited",
    "completed": "done",
    "converted": "conv.",
}

FONT_FAMILY = (
    "-apple-system, 'Segoe UI', 'PingFang SC', 'Hiragino Sans GB', 'Microsoft YaHei', "
    "'Noto Sans CJK SC', 'WenQuanYi Micro Hei', 'Noto Sans', Helvetica, Arial, sans-serif"
)


def _esc(text: object) -> str:
    return _xml_escape(str(text), {'"': "&quot;"})


def _f(x: float) -> str:
    """Compact coordinates: one decimal, no trailing zeros."""
    s = f"{x:.1f}"
    return s[:-2] if s.endswith(".0") else s


def _count_items(values: dict[str, int]) -> list[tuple[str, int]]:
    order = [k for k in COUNT_ORDER if k in values] + [k for k in values if k not in COUNT_ORDER]
    return [(k, values[k]) for k in order]


def _count_text_parts(values: dict[str, int]) -> list[tuple[str, str, str]]:
    """(key, short label, number) for the badge line."""
    return [(k, COUNT_SHORT.get(k, k), f"{int(v):,}") for k, v in _count_items(values)]


def _count_width(values: dict[str, int]) -> float:
    # gaps are dx shifts, not spaces: renderers disagree on spaces in tspans
    parts = _count_text_parts(values)
    text = "·".join(f"{s}{n}" for _, s, n in parts)
    return text_width(text) * SMALL_CHAR_W + len(parts) * COUNT_GAP + max(0, len(parts) - 1) * 2 * COUNT_GAP


@dataclass
class _Box:
    node: DiagramNode
    lines: list[str]
    w: float
    h: float
    counts: dict[str, int] | None


def _measure(node: DiagramNode, counts: dict[str, dict[str, int]] | None) -> _Box:
    lines = wrap_text(node.label, WRAP_COLUMNS)
    w = max(text_width(line) for line in lines) * CHAR_W + 2 * PAD_X
    h = len(lines) * LINE_H + 2 * PAD_Y
    values = None
    if counts is not None:
        values = dict(counts.get(node.id) or {})
        w = max(w, _count_width(values) + 2 * PAD_X)
        h += COUNT_H
    return _Box(node, lines, max(MIN_W, math.ceil(w)), h, values)


def _bezier(p0, p1, p2, p3, t: float) -> tuple[float, float]:
    u = 1 - t
    return (
        u * u * u * p0[0] + 3 * u * u * t * p1[0] + 3 * u * t * t * p2[0] + t * t * t * p3[0],
        u * u * u * p0[1] + 3 * u * u * t * p1[1] + 3 * u * t * t * p2[1] + t * t * t * p3[1],
    )


def _segments(points: list[tuple[float, float]]) -> list[tuple[tuple[float, float], ...]]:
    """Cubic pieces through the points, vertical tangents at every point (so
    edges leave and enter boxes straight)."""
    segs = []
    for p, q in zip(points, points[1:], strict=False):
        my = (p[1] + q[1]) / 2
        segs.append((p, (p[0], my), (q[0], my), q))
    return segs


def _path_d(segs) -> str:
    if not segs:
        return ""
    p0 = segs[0][0]
    out = [f"M{_f(p0[0])},{_f(p0[1])}"]
    for _, c1, c2, q in segs:
        out.append(f"C{_f(c1[0])},{_f(c1[1])} {_f(c2[0])},{_f(c2[1])} {_f(q[0])},{_f(q[1])}")
    return " ".join(out)


class _Grid:
    """A coarse spatial hash of rectangles, to keep edge labels off boxes and
    each other."""

    def __init__(self, cell: float = 120.0):
        self.cell = cell
        self.cells: dict[tuple[int, int], list[tuple[float, float, float, float]]] = {}

    def _keys(self, r):
        x0, y0, x1, y1 = r
        c = self.cell
        for i in range(int(x0 // c), int(x1 // c) + 1):
            for j in range(int(y0 // c), int(y1 // c) + 1):
                yield (i, j)

    def add(self, r) -> None:
        for k in self._keys(r):
            self.cells.setdefault(k, []).append(r)

    def hits(self, r) -> bool:
        x0, y0, x1, y1 = r
        for k in self._keys(r):
            for a0, b0, a1, b1 in self.cells.get(k, ()):
                if x0 < a1 and a0 < x1 and y0 < b1 and b0 < y1:
                    return True
        return False


_STYLE = """
.journey-diagram { font-family: %(font)s; }
.journey-diagram .title { font-size: 16px; font-weight: 600; fill: #111827; }
.journey-diagram .note { font-size: 11px; fill: #6b7280; }
.journey-diagram .node text.label { font-size: 13px; }
.journey-diagram .node .counts { font-size: 11px; fill: #374151; }
.journey-diagram .node .count { font-weight: 600; fill: #111827; }
.journey-diagram .node .count-label { fill: #6b7280; }
.journey-diagram .edge path { fill: none; stroke: #8a94a6; stroke-width: 1.4; }
.journey-diagram .edge.jump path, .journey-diagram .edge.back path { stroke: #7c6fd6; stroke-dasharray: 5 4; }
.journey-diagram .edge-label text { font-size: 11px; fill: #374151; }
.journey-diagram .edge-label rect { fill: #ffffff; fill-opacity: 0.9; }
.journey-diagram .node.highlight rect.box { stroke: #ff6d00; stroke-width: 3; }
.journey-diagram .node { cursor: pointer; }
"""


def to_svg(
    journey: Journey,
    counts: dict[str, dict[str, int]] | None = None,
    *,
    highlight: str | None = None,
    engine: str = "auto",
) -> str:
    """A standalone SVG of the journey, laid out top-down in layers.

    ``counts`` maps node ids (``ENTRY_ID`` and ``END_ID`` too) to numbers such as
    ``{"entered": 120, "waiting": 30, "sent": 80, "suppressed": 5}``, drawn as a
    badge line under each label; when given, every node gets the line (empty
    for nodes without numbers) so a page can fill it in later. ``highlight``
    marks one node. ``engine`` picks the layout (``auto``, ``grandalf``,
    ``simple``; see ``dsl.render_layout``)."""
    d = build_diagram(journey)
    boxes = {n.id: _measure(n, counts) for n in d.nodes}
    order = [n.id for n in d.nodes]
    layout: Layout = layered_layout(
        order,
        {k: (b.w, b.h) for k, b in boxes.items()},
        [(e.source, e.target) for e in d.edges],
        roots=[ENTRY_ID],
        xspace=XSPACE,
        yspace=YSPACE,
        engine=engine,
    )

    # header
    notes = wrap_text(" · ".join(d.notes), max(60, int(layout.width / SMALL_CHAR_W))) if d.notes else []
    title_w = text_width(d.title) * 9.0
    header_h = 24.0 + 15.0 * len(notes) + 14.0
    ox, oy = MARGIN, MARGIN + header_h
    has_self = any(e.source == e.target for e in d.edges)
    width = max(layout.width + (50.0 if has_self else 0.0), title_w, 320.0) + 2 * MARGIN
    if notes:
        width = max(width, max(text_width(n) for n in notes) * SMALL_CHAR_W + 2 * MARGIN)
    height = oy + layout.height + MARGIN

    pos = {k: (x + ox, y + oy) for k, (x, y) in layout.pos.items()}
    routes = [[(x + ox, y + oy) for x, y in r] for r in layout.routes]

    # ports: where each edge leaves and enters its boxes, spread along the side
    # in the order of where the edge is heading.
    sides: dict[tuple[str, str], list[tuple[float, int, str]]] = {}
    for i, e in enumerate(d.edges):
        if e.source == e.target:
            continue
        back = layout.back[i]
        first = routes[i][0] if routes[i] else pos[e.target]
        last = routes[i][-1] if routes[i] else pos[e.source]
        sides.setdefault((e.source, "top" if back else "bottom"), []).append((first[0], i, "out"))
        sides.setdefault((e.target, "bottom" if back else "top"), []).append((last[0], i, "in"))
    ports: dict[tuple[int, str], tuple[float, float]] = {}
    for (node_id, side), items in sides.items():
        items.sort(key=lambda t: (t[0], t[1]))
        b = boxes[node_id]
        cx, cy = pos[node_id]
        k = len(items)
        spacing = min(16.0, (b.w - 24.0) / (k - 1)) if k > 1 else 0.0
        y = cy + b.h / 2 if side == "bottom" else cy - b.h / 2
        for j, (_, i, role) in enumerate(items):
            ports[(i, role)] = (cx + (j - (k - 1) / 2) * spacing, y)

    grid = _Grid()
    for k, (cx, cy) in pos.items():
        b = boxes[k]
        grid.add((cx - b.w / 2, cy - b.h / 2, cx + b.w / 2, cy + b.h / 2))

    out: list[str] = []
    w = out.append
    w(
        f'<svg xmlns="http://www.w3.org/2000/svg" class="journey-diagram" '
        f'width="{_f(width)}" height="{_f(height)}" viewBox="0 0 {_f(width)} {_f(height)}" '
        f'font-family="{_esc(FONT_FAMILY)}" data-layout="{layout.engine}">'
    )
    w(f"<title>{_esc(d.title)}</title>")
    w("<defs>")
    w(f"<style>{_esc(_STYLE % {'font': FONT_FAMILY})}</style>")
    for mid, color in (("jd-arrow", "#8a94a6"), ("jd-arrow-jump", "#7c6fd6")):
        w(
            f'<marker id="{mid}" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="9" markerHeight="9" '
            f'markerUnits="userSpaceOnUse" orient="auto"><path d="M0,1 L10,5 L0,9 z" fill="{color}"/></marker>'
        )
    w("</defs>")
    w('<rect class="background" x="0" y="0" width="100%" height="100%" fill="#ffffff"/>')

    # header
    w('<g class="header">')
    w(
        f'<text class="title" x="{_f(MARGIN)}" y="{_f(MARGIN + 16)}" font-size="16" font-weight="600">{_esc(d.title)}</text>'
    )
    for j, note in enumerate(notes):
        w(
            f'<text class="note" x="{_f(MARGIN)}" y="{_f(MARGIN + 36 + 15 * j)}" font-size="11" fill="#6b7280">'
            f"{_esc(note)}</text>"
        )
    w("</g>")

    # edges
    labels: list[str] = []
    w('<g class="edges">')
    for i, e in enumerate(d.edges):
        back = layout.back[i]
        classes = ["edge"]
        if e.jump:
            classes.append("jump")
        if back:
            classes.append("back")
        dashed = e.jump or back
        if e.source == e.target:
            cx, cy = pos[e.source]
            b = boxes[e.source]
            x = cx + b.w / 2
            p0, p3 = (x, cy - 6), (x, cy + 6)
            segs = [(p0, (x + 46, cy - 34), (x + 46, cy + 34), p3)]
        else:
            pts = [ports[(i, "out")], *routes[i], ports[(i, "in")]]
            segs = _segments(pts)
        color = "#7c6fd6" if dashed else "#8a94a6"
        marker = "jd-arrow-jump" if dashed else "jd-arrow"
        dash = ' stroke-dasharray="5 4"' if dashed else ""
        w(
            f'<g class="{" ".join(classes)}" data-source="{_esc(e.source)}" data-target="{_esc(e.target)}" '
            f'data-outcome="{_esc(e.outcome)}">'
            f'<path d="{_path_d(segs)}" fill="none" stroke="{color}" stroke-width="1.4"{dash} '
            f'marker-end="url(#{marker})"/></g>'
        )
        if e.label:
            labels.append(_edge_label_svg(e, segs, grid))
    w("</g>")
    w('<g class="edge-labels">')
    out.extend(labels)
    w("</g>")

    # nodes
    w('<g class="nodes">')
    for node in d.nodes:
        out.append(_node_svg(boxes[node.id], pos[node.id], highlight == node.id))
    w("</g>")
    w("</svg>")
    return "\n".join(out) + "\n"


def _edge_label_svg(e: DiagramEdge, segs, grid: _Grid) -> str:
    tw = text_width(e.label) * SMALL_CHAR_W + 8
    th = 15.0
    p0, c1, c2, p3 = segs[0]
    chosen = None
    for t in (0.45, 0.3, 0.62, 0.2, 0.78):
        x, y = _bezier(p0, c1, c2, p3, t)
        rect = (x - tw / 2, y - th / 2, x + tw / 2, y + th / 2)
        if not grid.hits(rect):
            chosen = rect
            break
    if chosen is None:
        x, y = _bezier(p0, c1, c2, p3, 0.45)
        chosen = (x - tw / 2, y - th / 2, x + tw / 2, y + th / 2)
    grid.add(chosen)
    x0, y0, x1, y1 = chosen
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    return (
        f'<g class="edge-label" data-source="{_esc(e.source)}" data-outcome="{_esc(e.outcome)}">'
        f'<rect x="{_f(x0)}" y="{_f(y0)}" width="{_f(x1 - x0)}" height="{_f(th)}" rx="4" fill="#ffffff" '
        f'fill-opacity="0.9"/>'
        f'<text x="{_f(cx)}" y="{_f(cy + 4)}" text-anchor="middle" font-size="11" fill="#374151">'
        f"{_esc(e.label)}</text></g>"
    )


def _node_svg(box: _Box, center: tuple[float, float], highlighted: bool) -> str:
    node = box.node
    fill, stroke, color = COLORS[node.kind]
    cx, cy = center
    x0, y0 = cx - box.w / 2, cy - box.h / 2
    rx = box.h / 2 if node.kind in ("entry", "end") else 8.0
    nid = _esc(node.id)
    classes = f"node kind-{node.kind}" + (" highlight" if highlighted else "")
    step_kind = f' data-step-kind="{_esc(node.step_kind)}"' if node.step_kind else ""
    parts = [
        f'<g class="{classes}" data-node-id="{nid}" id="node-{nid}" data-kind="{node.kind}"{step_kind}>',
        f"<title>{_esc(node.tooltip or node.label)}</title>",
    ]
    if highlighted:
        parts.append(
            f'<rect class="halo" x="{_f(x0 - 5)}" y="{_f(y0 - 5)}" width="{_f(box.w + 10)}" '
            f'height="{_f(box.h + 10)}" rx="{_f(rx + 5)}" fill="#ff6d00" fill-opacity="0.18"/>'
        )
    sw = "3" if highlighted else "1.5"
    sc = "#ff6d00" if highlighted else stroke
    parts.append(
        f'<rect class="box" x="{_f(x0)}" y="{_f(y0)}" width="{_f(box.w)}" height="{_f(box.h)}" rx="{_f(rx)}" '
        f'fill="{fill}" stroke="{sc}" stroke-width="{sw}"/>'
    )
    text_top = y0 + PAD_Y
    parts.append(f'<text class="label" text-anchor="middle" font-size="{_f(FONT)}" fill="{color}">')
    for j, line in enumerate(box.lines):
        parts.append(f'<tspan x="{_f(cx)}" y="{_f(text_top + LINE_H * j + 12.5)}">{_esc(line)}</tspan>')
    parts.append("</text>")
    if box.counts is not None:
        ly = y0 + box.h - COUNT_H - 2
        parts.append(
            f'<line class="count-divider" x1="{_f(x0 + 6)}" y1="{_f(ly)}" x2="{_f(x0 + box.w - 6)}" y2="{_f(ly)}" '
            f'stroke="{stroke}" stroke-opacity="0.35"/>'
        )
        cparts = [
            f'<text class="counts" data-node-id="{nid}" x="{_f(cx)}" y="{_f(ly + 13.5)}" text-anchor="middle" '
            f'font-size="{_f(SMALL)}" fill="#374151">'
        ]
        for j, (key, short, number) in enumerate(_count_text_parts(box.counts)):
            if j:
                cparts.append(f'<tspan class="count-sep" dx="{_f(COUNT_GAP)}" fill="#9ca3af">·</tspan>')
            k = _esc(key)
            dx = f' dx="{_f(COUNT_GAP)}"' if j else ""
            cparts.append(f'<tspan class="count-label"{dx} fill="#6b7280">{_esc(short)}</tspan>')
            cparts.append(
                f'<tspan class="count count-{_css_key(key)}" dx="{_f(COUNT_GAP)}" data-node-id="{nid}" data-key="{k}" '
                f'font-weight="600" fill="#111827">{_esc(number)}</tspan>'
            )
        cparts.append("</text>")
        parts.append("".join(cparts))
    parts.append("</g>")
    return "".join(parts)


def _css_key(key: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]", "_", key)
