"""Layered (Sugiyama) top-down layout for journey diagrams.

``layered_layout`` places boxes of given sizes in layers and routes each edge
through one point per layer it crosses. Small and medium graphs go to
``grandalf`` (crossing reduction + Brandes–Köpf placement); above
``GRANDALF_LIMIT`` vertices (dummies counted) a simpler layered layout of our own
(longest-path ranks, barycenter ordering, barycenter placement) keeps long
journeys fast. Cycles (``goto``) are broken by reversing feedback edges, which
come back flagged in ``Layout.back``.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field

# Vertices incl. dummies; above this our own layout is used. grandalf's
# placement compares each layer with the ones before it, so its cost grows
# with the square of the depth: a 200-step journey took 48 ms with it and
# 18 ms with ours (measured, one core), and the editor redraws on every edit.
# Hand-drawn journeys (the examples: 3–44 vertices) keep grandalf's nicer
# crossing reduction.
GRANDALF_LIMIT = 150
COMPONENT_GAP = 60.0
LONG_SPAN = 10  # simple layout: edges across more layers go along a side lane
LANE_GAP = 14.0


@dataclass
class Layout:
    """Centres of the boxes, and per edge the points it passes between its ends
    (source to target order), whether it points up (a loop back) and the layer of
    every box."""

    pos: dict[Hashable, tuple[float, float]] = field(default_factory=dict)
    routes: list[list[tuple[float, float]]] = field(default_factory=list)
    back: list[bool] = field(default_factory=list)
    rank: dict[Hashable, int] = field(default_factory=dict)
    width: float = 0.0
    height: float = 0.0
    engine: str = ""


class _View:
    __slots__ = ("w", "h", "xy")

    def __init__(self, w: float, h: float):
        self.w = w
        self.h = h
        self.xy = (0.0, 0.0)


def layered_layout(
    nodes: Sequence[Hashable],
    sizes: dict[Hashable, tuple[float, float]],
    edges: Sequence[tuple[Hashable, Hashable]],
    *,
    roots: Sequence[Hashable] = (),
    xspace: float = 30.0,
    yspace: float = 50.0,
    engine: str = "auto",
) -> Layout:
    """Lay out ``nodes`` (in a stable order) top-down. ``roots`` go to the top
    layer of their component. ``engine`` is ``auto``, ``grandalf`` or
    ``simple``."""
    if engine == "auto":
        engine = "grandalf" if _estimate_vertices(nodes, edges, roots) <= GRANDALF_LIMIT else "simple"
    if engine == "grandalf":
        try:
            return _grandalf_layout(nodes, sizes, edges, roots, xspace, yspace)
        except (RecursionError, AssertionError, KeyError, IndexError, ValueError):
            pass  # grandalf trips on some graphs; the simple layout never does
    return _simple_layout(nodes, sizes, edges, roots, xspace, yspace)


# ---------------------------------------------------------------- shared helpers


def _components(nodes: Sequence[Hashable], edges: Sequence[tuple[Hashable, Hashable]]) -> list[list[Hashable]]:
    parent = {n: n for n in nodes}

    def find(x):
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for u, v in edges:
        ru, rv = find(u), find(v)
        if ru != rv:
            parent[rv] = ru
    groups: dict[Hashable, list[Hashable]] = {}
    for n in nodes:
        groups.setdefault(find(n), []).append(n)
    return list(groups.values())


def _back_edges(
    nodes: Sequence[Hashable], edges: Sequence[tuple[Hashable, Hashable]], roots: Sequence[Hashable]
) -> set[int]:
    """Indices of edges closing a cycle in a DFS from the roots (then from every
    node not reached yet), self-loops included."""
    out: dict[Hashable, list[tuple[int, Hashable]]] = defaultdict(list)
    indeg: dict[Hashable, int] = defaultdict(int)
    for i, (u, v) in enumerate(edges):
        out[u].append((i, v))
        indeg[v] += 1
    state: dict[Hashable, int] = {}  # 1 on stack, 2 done
    back: set[int] = set()
    starts = list(roots) + [n for n in nodes if indeg[n] == 0] + list(nodes)
    for s in starts:
        if s in state:
            continue
        state[s] = 1
        stack = [(s, iter(out[s]))]
        while stack:
            node, it = stack[-1]
            for i, v in it:
                st = state.get(v)
                if st == 1:
                    back.add(i)
                elif st is None:
                    state[v] = 1
                    stack.append((v, iter(out[v])))
                    break
            else:
                state[node] = 2
                stack.pop()
    return back


def _ranks(
    nodes: Sequence[Hashable], edges: Sequence[tuple[Hashable, Hashable]], back: set[int], roots: Sequence[Hashable]
) -> dict[Hashable, int]:
    """Longest-path layering of the graph with back edges reversed."""
    succ: dict[Hashable, list[Hashable]] = defaultdict(list)
    indeg = {n: 0 for n in nodes}
    for i, (u, v) in enumerate(edges):
        if u == v:
            continue
        if i in back:
            u, v = v, u
        succ[u].append(v)
        indeg[v] += 1
    rank = {n: 0 for n in nodes}
    queue = [n for n in nodes if indeg[n] == 0]
    head = 0
    while head < len(queue):
        u = queue[head]
        head += 1
        for v in succ[u]:
            rank[v] = max(rank[v], rank[u] + 1)
            indeg[v] -= 1
            if indeg[v] == 0:
                queue.append(v)
    return rank


def _estimate_vertices(nodes, edges, roots) -> int:
    back = _back_edges(nodes, edges, roots)
    rank = _ranks(nodes, edges, back, roots)
    return len(nodes) + sum(max(0, abs(rank[v] - rank[u]) - 1) for u, v in edges)


def _separate(xs: list[float], widths: list[float], gap: float) -> list[float]:
    """Move positions (already in left-to-right order) apart just enough that
    boxes keep ``gap`` between them: the mean of a left-to-right and a
    right-to-left push."""
    n = len(xs)
    if n < 2:
        return list(xs)
    right = list(xs)
    for i in range(1, n):
        right[i] = max(right[i], right[i - 1] + (widths[i - 1] + widths[i]) / 2 + gap)
    left = list(xs)
    for i in range(n - 2, -1, -1):
        left[i] = min(left[i], left[i + 1] - (widths[i + 1] + widths[i]) / 2 - gap)
    return [(a + b) / 2 for a, b in zip(left, right, strict=True)]


def _normalise(layout: Layout, nodes, sizes, extra_points: list[list[tuple[float, float]]]) -> None:
    """Shift so the top-left box corner is at (0, 0); set width and height."""
    if not nodes:
        return
    minx = min(layout.pos[n][0] - sizes[n][0] / 2 for n in nodes)
    miny = min(layout.pos[n][1] - sizes[n][1] / 2 for n in nodes)
    maxx = max(layout.pos[n][0] + sizes[n][0] / 2 for n in nodes)
    maxy = max(layout.pos[n][1] + sizes[n][1] / 2 for n in nodes)
    for pts in extra_points:
        for x, y in pts:
            minx, maxx = min(minx, x), max(maxx, x)
            miny, maxy = min(miny, y), max(maxy, y)
    for n in nodes:
        x, y = layout.pos[n]
        layout.pos[n] = (x - minx, y - miny)
    for i, pts in enumerate(extra_points):
        extra_points[i] = [(x - minx, y - miny) for x, y in pts]
    layout.width = maxx - minx
    layout.height = maxy - miny


# ---------------------------------------------------------------- grandalf


def _grandalf_layout(nodes, sizes, edges, roots, xspace, yspace) -> Layout:
    from grandalf.graphs import Edge, Graph, Vertex
    from grandalf.layouts import SugiyamaLayout

    routes: list[list[tuple[float, float]]] = [[] for _ in edges]
    back = [False] * len(edges)
    parts: list[tuple[Layout, list[int]]] = []
    root_set = set(roots)
    for comp in _components(nodes, edges):
        members = set(comp)
        comp_edges = [i for i, (u, v) in enumerate(edges) if u in members]
        verts = {}
        for n in comp:
            vx = Vertex(n)
            vx.view = _View(*sizes[n])
            verts[n] = vx
        g_edges = []
        for i in comp_edges:
            u, v = edges[i]
            if u == v:
                continue
            e = Edge(verts[u], verts[v], data=i)
            g_edges.append(e)
        graph = Graph(list(verts.values()), g_edges)
        (core,) = graph.C
        comp_roots = [verts[n] for n in comp if n in root_set]
        local_back = _back_edges(comp, [edges[i] for i in comp_edges], [n for n in comp if n in root_set])
        back_idx = {comp_edges[j] for j in local_back}
        inverted = [e for e in g_edges if e.data in back_idx]
        if not comp_roots:
            comp_roots = [v for v in core.sV if not v.e_in()] or [verts[comp[0]]]
        sug = SugiyamaLayout(core)
        sug.xspace = xspace
        sug.yspace = yspace
        sug.dw = 12.0  # dummies (long-edge bends) need little room
        sug.route_edge = lambda e, pts: None
        sug.init_all(roots=comp_roots, inverted_edges=inverted)
        sug.draw(N=1.5)

        # Brandes–Köpf averaging can make boxes touch: enforce the gaps per layer.
        for layer in sug.layers:
            items = sorted(layer, key=lambda v: v.view.xy[0])
            xs = _separate([v.view.xy[0] for v in items], [v.view.w for v in items], xspace)
            for v, x in zip(items, xs, strict=True):
                v.view.xy = (x, v.view.xy[1])

        part = Layout(engine="grandalf")
        for n, vx in verts.items():
            part.pos[n] = vx.view.xy
            part.rank[n] = sug.grx[vx].rank
        comp_routes = []
        for e in g_edges:
            i = e.data
            pts: list[tuple[float, float]] = []
            if e in sug.ctrls:
                ctrl = sug.ctrls[e]
                r0, r1 = sug.grx[e.v[0]].rank, sug.grx[e.v[1]].rank
                step = 1 if r0 < r1 else -1
                pts = [ctrl[r].view.xy for r in range(r0 + step, r1, step)]
            back[i] = sug.grx[e.v[0]].rank > sug.grx[e.v[1]].rank
            comp_routes.append(pts)
        _normalise(part, comp, sizes, comp_routes)
        for e, pts in zip(g_edges, comp_routes, strict=True):
            routes[e.data] = pts
        part.routes = []
        parts.append((part, [e.data for e in g_edges]))

    # shift routes along with their component
    out = Layout(engine="grandalf")
    x0 = 0.0
    for part, idxs in parts:
        for k, (x, y) in part.pos.items():
            out.pos[k] = (x + x0, y)
        for i in idxs:
            routes[i] = [(x + x0, y) for x, y in routes[i]]
        out.rank.update(part.rank)
        out.height = max(out.height, part.height)
        x0 += part.width + COMPONENT_GAP
    out.width = max(0.0, x0 - COMPONENT_GAP)
    for i, (u, v) in enumerate(edges):
        if u == v:
            back[i] = True
    out.routes = routes
    out.back = back
    return out


# ---------------------------------------------------------------- our own


def _simple_layout(nodes, sizes, edges, roots, xspace, yspace) -> Layout:
    """Longest-path ranks, dummies for long edges, barycenter ordering sweeps,
    then barycenter x placement with separation. Linear-ish; fine for
    thousands of nodes."""
    back = _back_edges(nodes, edges, roots)
    rank = _ranks(nodes, edges, back, roots)

    # Components side by side: give each its own x range by ordering within layers.
    comp_of: dict[Hashable, int] = {}
    for ci, comp in enumerate(_components(nodes, edges)):
        for n in comp:
            comp_of[n] = ci

    # vertices: real nodes, then dummies ("d", edge index, rank)
    vsize: dict[Hashable, tuple[float, float]] = {n: sizes[n] for n in nodes}
    vrank: dict[Hashable, int] = dict(rank)
    chains: list[list[Hashable]] = []  # per edge: vertices top to bottom (in layer order)
    up: dict[Hashable, list[Hashable]] = defaultdict(list)
    down: dict[Hashable, list[Hashable]] = defaultdict(list)
    long_edges: set[int] = set()
    for i, (u, v) in enumerate(edges):
        if u == v:
            chains.append([u])
            continue
        a, b = (v, u) if rank[u] > rank[v] else (u, v)
        if rank[b] - rank[a] > LONG_SPAN:
            long_edges.add(i)  # routed along a lane at the side, no dummies
            chains.append([a, b])
            continue
        chain = [a]
        for r in range(rank[a] + 1, rank[b]):
            d = ("\0d", i, r)
            vsize[d] = (12.0, 1.0)
            vrank[d] = r
            comp_of[d] = comp_of[a]
            chain.append(d)
        chain.append(b)
        for x, y in zip(chain, chain[1:], strict=False):
            down[x].append(y)
            up[y].append(x)
        chains.append(chain)

    nlayers = max(vrank.values(), default=-1) + 1
    layers: list[list[Hashable]] = [[] for _ in range(nlayers)]
    # initial order: DFS discovery from roots, so children follow their parents
    seen: set = set()
    order_seed: list[Hashable] = []
    for s in list(roots) + list(nodes):
        if s in seen:
            continue
        stack = [s]
        while stack:
            x = stack.pop()
            if x in seen:
                continue
            seen.add(x)
            order_seed.append(x)
            stack.extend(reversed(down[x]))
    for x in vsize:
        if x not in seen:
            order_seed.append(x)
    for x in order_seed:
        layers[vrank[x]].append(x)
    for layer in layers:
        layer.sort(key=lambda x: comp_of[x])  # stable: keeps DFS order within a component

    pos_in: dict[Hashable, float] = {}

    def reindex(layer):
        for i, x in enumerate(layer):
            pos_in[x] = i

    for layer in layers:
        reindex(layer)
    for sweep in range(4):
        rng = range(1, nlayers) if sweep % 2 == 0 else range(nlayers - 2, -1, -1)
        nbrs = up if sweep % 2 == 0 else down
        for r in rng:
            layer = layers[r]

            def key(x, nbrs=nbrs):
                ns = nbrs[x]
                bc = sum(pos_in[n] for n in ns) / len(ns) if ns else pos_in[x]
                return (comp_of[x], bc)

            layer.sort(key=key)
            reindex(layer)

    # x placement
    xs: dict[Hashable, float] = {}
    for layer in layers:
        cur = 0.0
        for x in layer:
            w = vsize[x][0]
            xs[x] = cur + w / 2
            cur += w + xspace
    for sweep in range(6):
        rng = range(1, nlayers) if sweep % 2 == 0 else range(nlayers - 2, -1, -1)
        nbrs = up if sweep % 2 == 0 else down
        for r in rng:
            layer = layers[r]
            want = []
            for x in layer:
                ns = nbrs[x]
                want.append(sum(xs[n] for n in ns) / len(ns) if ns else xs[x])
            placed = _separate(want, [vsize[x][0] for x in layer], xspace)
            for x, px in zip(layer, placed, strict=True):
                xs[x] = px

    # y placement
    ys: dict[Hashable, float] = {}
    layer_h: list[float] = []
    y = 0.0
    for layer in layers:
        h = max((vsize[x][1] for x in layer), default=0.0)
        layer_h.append(h)
        for x in layer:
            ys[x] = y + h / 2
        y += h + yspace

    out = Layout(engine="simple")
    for n in nodes:
        out.pos[n] = (xs[n], ys[n])
        out.rank[n] = rank[n]
    routes: list[list[tuple[float, float]]] = []
    backs: list[bool] = []
    right = max((xs[x] + vsize[x][0] / 2 for x in xs), default=0.0)
    lanes: dict[Hashable, float] = {}
    for i, (u, v) in enumerate(edges):
        chain = chains[i]
        if i in long_edges:
            # Leave the source into the gap next to its layer, run down (or up)
            # a lane right of everything, shared by all long edges to the same
            # target, and come in from the gap next to the target's layer.
            lane = lanes.setdefault(v, right + LANE_GAP * (len(lanes) + 1))
            hu, hv = layer_h[rank[u]] / 2 + yspace / 2, layer_h[rank[v]] / 2 + yspace / 2
            if rank[u] > rank[v]:
                routes.append([(lane, ys[u] - hu), (lane, ys[v] + hv)])
            else:
                routes.append([(lane, ys[u] + hu), (lane, ys[v] - hv)])
            backs.append(rank[u] > rank[v])
            continue
        inner = [(xs[d], ys[d]) for d in chain[1:-1]]
        is_back = u == v or rank[u] > rank[v]
        if rank[u] > rank[v]:
            inner.reverse()
        routes.append(inner)
        backs.append(is_back)
    _normalise(out, nodes, sizes, routes)
    out.routes = routes
    out.back = backs
    return out
