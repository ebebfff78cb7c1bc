"""Mermaid text of a journey."""

from __future__ import annotations

import re
import sys
from pathlib import Path

from render_samples import sample_journey

from dsl.graph import build_graph
from dsl.ir import GotoStep, Journey, LabelStep, SendStep, WaitStep
from dsl.render import to_mermaid

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from tests.dsl.support import assert_golden  # noqa: E402

GOLDEN = Path(__file__).parent / "golden"


def _edge_lines(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if re.search(r" (-->|-\.->)[ |]", line)]


def test_sample_matches_golden():
    assert_golden(GOLDEN / "sample.mmd", to_mermaid(sample_journey()))


def test_expected_lines(sample):
    text = to_mermaid(sample)
    lines = [line.strip() for line in text.splitlines()]
    assert lines[:4] == ["---", 'title: "新客激活 onboarding"', "---", "flowchart TD"]
    for expected in [
        'entry(["Entry: on event signup where channel = #quot;app#quot;"])',
        's_welcome["send best of WeCom → push → SMS: welcome"]',
        's_coupon["coupon new_user_10"]',
        's_wait1("wait 1 day")',
        's_waitpay("wait for order_paid where amount ≥ 100 (up to 3 days)")',
        's_ifvis{"if"}',
        's_split{{"split"}}',
        's_nudge_a["send SMS: nudge_a"]',
        's_again["goto reminder"]',
        'done(["End"])',
        "entry --> s_welcome",
        's_coupon -->|"out of stock"| s_sorry',
        's_coupon -->|"issued"| s_wait1',
        's_waitpay -->|"on timeout"| s_ifvis',
        's_waitpay -->|"on order_paid"| s_tagpaid',
        's_split -->|"A 40%"| s_nudge_a',
        's_split -->|"control 20% (holdout)"| s_term',
        's_ifvis -->|"visited and not ordered"| s_split',
        's_ifvis -->|"user.city = #quot;上海#quot;"| s_sh',
        's_ifvis -->|"else"| s_monday',
        "s_again -.-> s_lbl",
        "s_done --> done",
        "s_pass1 --> done",
    ]:
        assert expected in lines, expected


def test_one_edge_per_graph_edge_plus_entry(sample):
    graph = build_graph(sample)
    n_graph_edges = sum(len(edges) for edges in graph.edges.values())
    assert len(_edge_lines(to_mermaid(sample))) == n_graph_edges + 1


def test_quotes_and_markup_are_escaped(sample):
    text = to_mermaid(sample)
    line = next(line for line in text.splitlines() if line.strip().startswith("s_sh["))
    assert line.strip() == 's_sh["send WeCom: 上海专属 #quot;VIP#quot; #lt;优惠#gt; #35;1"]'
    # inside every quoted label there is no raw quote left
    for line in text.splitlines()[4:]:
        for label in re.findall(r'"(.*?)"', line):
            assert "<" not in label and ">" not in label


def test_single_if_branch_edges_read_yes_else(audience):
    text = to_mermaid(audience)
    assert 's_cnt{"if order_paid ≥ 2 times within 30 days"}' in text
    assert 's_cnt -->|"yes"| s_vip' in text
    assert 's_cnt -->|"else"| s_c2' in text
    assert (
        'entry(["Entry: audience stage in [silent, churned] or (RFM is high and reachable on push), every Monday at 09:30"])'
        in text
    )


def test_ids_are_sanitised_and_never_keywords():
    journey = Journey(
        name="ids",
        steps=[
            SendStep(id="end", channels=["sms"], template="a"),
            WaitStep(id="w-1.x", seconds=60),
            LabelStep(id="o", name="top"),
            GotoStep(id="x", label="top"),
        ],
    )
    text = to_mermaid(journey)
    node_ids = re.findall(r"^    (\w+)[\[\(\{>]", text, flags=re.M)
    assert node_ids == ["entry", "s_end", "s_w_1_x", "s_o", "s_x"]
    assert "classDef end" not in text and "classDef kind_" in text
    assert "s_x -.-> s_o" in text


def test_empty_journey_goes_straight_to_end():
    text = to_mermaid(Journey(name="empty"))
    assert 'entry(["Entry: via API"])' in text
    assert "entry --> done" in text


def test_steps_without_ids_still_render():
    journey = Journey(name="draft", steps=[WaitStep(seconds=60), SendStep(channels=["sms"], template="t")])
    text = to_mermaid(journey)
    assert 's_step1("wait 1 minute")' in text
    assert "s_step1 --> s_step2" in text
    assert journey.steps[0].id == ""  # the caller's journey is left alone
