"""Node rows: which nodes are counted as "waiting now" comes from the IR's
``waits`` (a new step kind needs no list here), rows follow the text's
order, and the diagram's badges leave zeros out."""

from __future__ import annotations

from dsl.ir import Journey, Step, iter_steps
from dsl.parser import parse
from dsl.render import END_ID, ENTRY_ID
from engine.node_numbers import diagram_counts, node_rows, waiting_nodes
from engine.stats import NodeStats

SOURCE = """journey "numbers"
  entry event joined
  tag add seen
  send sms "hello"
  wait 1d
  wait for event order_paid up to 3d:
    on event:
      tag add paid
    on timeout:
      send sms "nudge"
"""


def test_waiting_nodes_are_the_steps_the_ir_says_a_run_rests_at() -> None:
    ir = parse(SOURCE)
    ids = waiting_nodes(ir)
    kinds = {s.id: s.kind for s in _steps(ir)}
    assert sorted(kinds[i] for i in ids) == ["send", "send", "wait", "wait_event"]
    assert all(type(s).waits == (s.id in ids) for s in _steps(ir))


def test_rows_follow_the_text_and_badges_skip_zeros() -> None:
    ir = parse(SOURCE)
    send = next(s.id for s in _steps(ir) if s.kind == "send")
    counts = {
        "entry": NodeStats("entry", entered=3),
        send: NodeStats(send, entered=3, sent=2, suppressed=1),
        "gone-node": NodeStats("gone-node", entered=1),  # from another version
    }
    rows = node_rows(ir, counts, {send: 1})
    assert [r.node_id for r in rows] == ["entry", *[s.id for s in _steps(ir)], "end", "gone-node"]
    assert next(r for r in rows if r.node_id == send).waiting == 1
    assert next(r for r in rows if r.node_id == "entry").waiting == 0
    assert all(r.waiting is None for r in node_rows(ir, counts, None))  # unknown without Temporal
    badges = diagram_counts(rows)
    assert badges[ENTRY_ID] == {"entered": 3} and badges[END_ID] == {}
    assert badges[send] == {"entered": 3, "waiting": 1, "sent": 2, "suppressed": 1}


def _steps(ir: Journey) -> list[Step]:
    return [s for s in iter_steps(ir.steps) if s.id]
