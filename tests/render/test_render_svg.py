"""The server-side SVG diagram."""

from __future__ import annotations

import random
import time
import xml.etree.ElementTree as ET

import pytest
from render_samples import sample_journey

from dsl.graph import build_graph
from dsl.ir import (
    Branch,
    GotoStep,
    IfStep,
    Journey,
    LabelStep,
    SendStep,
    SplitStep,
    TagCond,
    Variant,
    WaitStep,
    iter_steps,
)
from dsl.render import END_ID, ENTRY_ID, build_diagram, describe_step, describe_step_tooltip, to_svg

NS = "{http://www.w3.org/2000/svg}"


def _parse(svg: str) -> ET.Element:
    return ET.fromstring(svg)


def _nodes(root: ET.Element) -> dict[str, ET.Element]:
    return {g.get("data-node-id"): g for g in root.iter(f"{NS}g") if "node" in (g.get("class") or "").split()}


def _edges(root: ET.Element) -> list[ET.Element]:
    return [g for g in root.iter(f"{NS}g") if "edge" in (g.get("class") or "").split()]


def _box(g: ET.Element) -> tuple[float, float, float, float]:
    rect = next(r for r in g.iter(f"{NS}rect") if r.get("class") == "box")
    x, y, w, h = (float(rect.get(k)) for k in ("x", "y", "width", "height"))
    return x, y, x + w, y + h


def _text(el: ET.Element) -> str:
    return "".join(el.itertext())


def _assert_no_overlaps(nodes: dict[str, ET.Element]) -> None:
    boxes = sorted(_box(g) for g in nodes.values())
    for i, a in enumerate(boxes):
        for b in boxes[i + 1 :]:
            if b[0] >= a[2]:
                break
            assert not (a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]), (a, b)


def big_journey(n: int, seed: int = 0) -> Journey:
    """A random journey of about ``n`` steps: nested ifs and splits, labels and
    gotos back and forth."""
    rnd = random.Random(seed)
    counter = [0]
    labels: list[str] = []

    def nid() -> str:
        counter[0] += 1
        return f"n{counter[0]}"

    def block(depth: int, budget: int) -> list:
        steps: list = []
        while budget > 0:
            r = rnd.random()
            if depth < 4 and r < 0.15:
                branches = [
                    Branch(cond=TagCond(tag=f"t{i}"), steps=block(depth + 1, budget // 6))
                    for i in range(rnd.randint(1, 3))
                ]
                step = IfStep(id=nid(), branches=branches, else_steps=block(depth + 1, budget // 8))
            elif depth < 4 and r < 0.25:
                step = SplitStep(
                    id=nid(),
                    variants=[Variant(name=v, percent=50, steps=block(depth + 1, budget // 6)) for v in "AB"],
                )
            elif r < 0.33:
                labels.append(f"l{counter[0]}")
                step = LabelStep(id=nid(), name=labels[-1])
            elif r < 0.36 and labels:
                step = GotoStep(id=nid(), label=rnd.choice(labels))
            elif r < 0.6:
                step = WaitStep(id=nid(), seconds=3600 * rnd.randint(1, 48))
            else:
                step = SendStep(id=nid(), channels=["sms"], template=f"tpl_{counter[0]}")
            steps.append(step)
            budget -= 1 + sum(1 for _ in iter_steps([step]))
        return steps

    return Journey(name="big", steps=block(0, n))


COUNTS = {
    "welcome": {"entered": 120, "waiting": 30, "sent": 80, "suppressed": 5},
    "wait1": {"entered": 100, "waiting": 1234},
    ENTRY_ID: {"entered": 130},
}


@pytest.mark.parametrize("engine", ["grandalf", "simple"])
def test_sample_is_valid_xml_with_every_node_and_edge(sample, engine):
    svg = to_svg(sample, engine=engine)
    root = _parse(svg)
    assert root.tag == f"{NS}svg"
    assert root.get("data-layout") == engine
    graph = build_graph(sample)
    nodes = _nodes(root)
    assert set(nodes) == set(graph.nodes) | {ENTRY_ID, END_ID}
    for node_id, step in graph.nodes.items():
        g = nodes[node_id]
        assert g.get("id") == f"node-{node_id}"
        title = g.find(f"{NS}title")
        label = "if" if isinstance(step, IfStep) and len(step.branches) > 1 else describe_step(step)
        # the tooltip is the step in full (and how it behaves), the box the short label
        assert title is not None and title.text == describe_step_tooltip(step)
        # the wrapped lines put together give the label back
        shown = " ".join(_text(t) for t in g.iter(f"{NS}tspan"))
        assert shown.replace(" ", "") == label.replace(" ", "")
    assert len(_edges(root)) == sum(len(e) for e in graph.edges.values()) + 1
    _assert_no_overlaps(nodes)


def test_labels_are_the_operators_words(sample):
    root = _parse(to_svg(sample))
    titles = {g.get("data-node-id"): g.find(f"{NS}title").text for g in _nodes(root).values()}
    assert titles["welcome"] == "send best of WeCom → push → SMS: welcome"
    assert titles["waitpay"].startswith("wait for order_paid where amount ≥ 100 (up to 3 days) — takes the earliest")
    assert titles["again"] == "goto reminder"
    assert titles["delivery"] == "wait until 2 hours before event.delivery_at at 10:00"
    assert titles[ENTRY_ID] == 'Entry: on event signup where channel = "app"'
    assert titles[END_ID] == "End"
    edge_labels = {_text(g) for g in root.iter(f"{NS}g") if g.get("class") == "edge-label"}
    assert {"A 40%", "B 40%", "control 20% (holdout)", "on timeout", "on order_paid", "out of stock", "else"} <= (
        edge_labels
    )
    assert 'user.city = "上海"' in edge_labels


def test_counts_are_drawn_and_addressable(sample):
    root = _parse(to_svg(sample, COUNTS))
    nodes = _nodes(root)
    welcome = nodes["welcome"]
    counts = {el.get("data-key"): el for el in welcome.iter() if "count" in (el.get("class") or "").split()}
    assert set(counts) == {"entered", "waiting", "sent", "suppressed"}
    for key, el in counts.items():
        assert el.get("class") == f"count count-{key}"
        assert el.get("data-node-id") == "welcome"
        assert el.text == str(COUNTS["welcome"][key])
    waiting = next(el for el in nodes["wait1"].iter() if el.get("class") == "count count-waiting")
    assert waiting.text == "1,234"
    entered = next(el for el in nodes[ENTRY_ID].iter() if el.get("class") == "count count-entered")
    assert entered.text == "130"
    # nodes without numbers still get an (empty) badge line to fill in later
    empty = next(el for el in nodes["coupon"].iter() if el.get("class") == "counts")
    assert empty.get("data-node-id") == "coupon" and _text(empty) == ""
    # without counts there is no badge line at all
    plain = _parse(to_svg(sample))
    assert not [el for el in plain.iter() if el.get("class") == "counts"]


def test_counts_make_boxes_taller(sample):
    plain = _nodes(_parse(to_svg(sample)))
    counted = _nodes(_parse(to_svg(sample, COUNTS)))
    a, b = _box(plain["coupon"]), _box(counted["coupon"])
    assert b[3] - b[1] > a[3] - a[1]


def test_highlight_marks_one_node(sample):
    root = _parse(to_svg(sample, highlight="split"))
    nodes = _nodes(root)
    assert "highlight" in nodes["split"].get("class").split()
    assert all("highlight" not in g.get("class").split() for k, g in nodes.items() if k != "split")
    _parse(to_svg(sample, highlight="no-such-node"))  # ignored


def test_text_is_xml_escaped():
    journey = Journey(
        name='A & B <"test">',
        steps=[SendStep(id='s&<"1">', channels=["sms"], template="a<b>&'c'\"d\"")],
    )
    svg = to_svg(journey, {'s&<"1">': {"entered": 1}})
    root = _parse(svg)
    assert root.find(f"{NS}title").text == 'A & B <"test">'
    node = _nodes(root)['s&<"1">']
    assert node.get("id") == 'node-s&<"1">'
    assert node.find(f"{NS}title").text == "send SMS: a<b>&'c'\"d\""


def test_goto_loops_are_drawn_as_back_edges(sample):
    root = _parse(to_svg(sample))
    again = [g for g in _edges(root) if g.get("data-source") == "again"]
    assert len(again) == 1
    assert again[0].get("data-target") == "lbl"
    assert {"jump", "back"} <= set(again[0].get("class").split())
    assert again[0].find(f"{NS}path").get("marker-end")


def test_cjk_labels_get_wider_boxes():
    journey = Journey(
        name="宽度",
        steps=[
            SendStep(id="latin", channels=["sms"], template="abcdefghij"),
            SendStep(id="cjk", channels=["sms"], template="上海专属优惠券礼包"),
        ],
    )
    nodes = _nodes(_parse(to_svg(journey)))
    latin, cjk = _box(nodes["latin"]), _box(nodes["cjk"])
    # 9 CJK characters take about as much room as 18 Latin ones
    assert (cjk[2] - cjk[0]) - (latin[2] - latin[0]) > 40


def test_long_labels_wrap():
    journey = Journey(
        name="wrap",
        steps=[SendStep(id="s", channels=["wecom", "push", "sms", "email"], best_of=True, template="x" * 12)],
    )
    node = _nodes(_parse(to_svg(journey)))["s"]
    assert len(list(node.iter(f"{NS}tspan"))) >= 2


def test_unreachable_steps_and_self_contained_loops_render():
    journey = Journey(
        name="loops",
        steps=[
            LabelStep(id="top", name="top"),
            WaitStep(id="w", seconds=3600),
            GotoStep(id="g", label="top"),
            SendStep(id="dead", channels=["sms"], template="never"),  # after a goto: unreachable
        ],
    )
    root = _parse(to_svg(journey))
    nodes = _nodes(root)
    assert set(nodes) >= {"top", "w", "g", "dead", ENTRY_ID, END_ID}
    assert len(_edges(root)) == 5
    _assert_no_overlaps(nodes)


def test_empty_journey():
    root = _parse(to_svg(Journey(name="empty")))
    assert set(_nodes(root)) == {ENTRY_ID, END_ID}
    assert len(_edges(root)) == 1


def test_diagram_edges_follow_the_graph(sample):
    d = build_diagram(sample)
    graph = build_graph(sample)
    assert [(e.source, e.target) for e in d.edges[1:]] == [
        (node_id, e.target or END_ID) for node_id in graph.nodes for e in graph.edges[node_id]
    ]


@pytest.mark.parametrize("engine", ["grandalf", "simple"])
def test_big_random_journeys_lay_out_cleanly(engine):
    journey = big_journey(200, seed=3)
    root = _parse(to_svg(journey, engine=engine))
    nodes = _nodes(root)
    graph = build_graph(journey)
    assert len(nodes) == len(graph.nodes) + 2
    assert len(_edges(root)) == sum(len(e) for e in graph.edges.values()) + 1
    _assert_no_overlaps(nodes)


def test_thousand_nodes_is_fast():
    journey = big_journey(1100, seed=1)
    n = sum(1 for _ in iter_steps(journey.steps))
    assert n >= 1000
    t0 = time.perf_counter()
    svg = to_svg(journey, {s.id: {"entered": 1} for s in iter_steps(journey.steps)})
    elapsed = time.perf_counter() - t0
    assert elapsed < 5.0, elapsed
    assert set(_nodes(_parse(svg))) >= {s.id for s in iter_steps(journey.steps)} | {ENTRY_ID}


def test_long_loops_go_along_a_lane_without_blowing_up():
    # 200 gotos back to the top across up to 1000 layers: no quadratic bends
    steps: list = [LabelStep(id="top", name="top")]
    for i in range(1000):
        if i % 5 == 4:
            steps.append(
                IfStep(
                    id=f"if{i}",
                    branches=[Branch(cond=TagCond(tag="x"), steps=[GotoStep(id=f"g{i}", label="top")])],
                )
            )
        else:
            steps.append(WaitStep(id=f"w{i}", seconds=60))
    t0 = time.perf_counter()
    svg = to_svg(Journey(name="loops", steps=steps))
    assert time.perf_counter() - t0 < 5.0
    assert len(svg) < 3_000_000
    root = _parse(svg)
    assert len(_edges(root)) == sum(len(e) for e in build_graph(Journey(name="x", steps=steps)).edges.values()) + 1


def test_sample_renders_identically_twice():
    assert to_svg(sample_journey(), COUNTS) == to_svg(sample_journey(), COUNTS)


def test_a_wait_for_event_node_keeps_a_short_label_and_says_the_rule_on_hover(sample):
    root = _parse(to_svg(sample))
    g = _nodes(root)["waitpay"]
    shown = " ".join(_text(t) for t in g.iter(f"{NS}tspan"))
    assert "since entry" not in shown and shown.replace(" ", "") == "waitfororder_paidwhereamount≥100(upto3days)"
    title = g.find(f"{NS}title").text
    assert "takes the earliest matching order_paid since entry that no earlier wait took" in title
    assert "even one that came during an earlier step" in title
