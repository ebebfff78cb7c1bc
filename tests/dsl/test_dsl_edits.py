"""Structured edits keep untouched lines and undo byte for byte."""

from __future__ import annotations

from pathlib import Path

import pytest

from dsl import parse
from dsl.edits import EDIT, EditError, apply_edit

SOURCE = (Path(__file__).parents[2] / "journeys" / "01_new_user_first_order.journey").read_text(encoding="utf-8")

EDITS = [
    {"op": "replace_step", "node": "wait-1d", "text": "wait 2d"},
    {"op": "insert_step", "position": {"after": "wait-1d"}, "text": 'send sms "你好"'},
    {
        "op": "insert_step",
        "position": {"parent": "coupon-new_user_10", "block": "out_of_stock"},
        "text": "tag add 缺货",
    },
    {"op": "delete_step", "node": "wait-1d"},
    {"op": "delete_step", "node": "coupon-new_user_10", "force": True},
    {"op": "move_step", "node": "wait-1d", "position": {"parent": None, "block": "steps"}},
    {"op": "add_branch", "node": "if-visited", "branch": "else"},
    {"op": "add_branch", "node": "if-visited", "branch": "else_if", "cond": "tag vip"},
    {"op": "set_header", "field": "description", "value": "新描述"},
    {"op": "set_header", "field": "goal", "value": None},
]


@pytest.mark.parametrize("raw", EDITS, ids=[e["op"] for e in EDITS])
def test_edit_parses_keeps_comments_and_undoes(raw: dict) -> None:
    result = apply_edit(SOURCE, EDIT.validate_python(raw))
    parse(result.source)
    assert "# 看了没买" in result.source
    assert apply_edit(result.source, result.inverse).source == SOURCE


def test_replace_changes_only_its_line() -> None:
    result = apply_edit(SOURCE, EDIT.validate_python(EDITS[0]))
    old, new = SOURCE.split("\n"), result.source.split("\n")
    assert [i for i, (a, b) in enumerate(zip(old, new, strict=True)) if a != b] == [15]
    assert new[15] == "  wait 2d"


@pytest.mark.parametrize(
    ("raw", "code"),
    [
        ({"op": "delete_step", "node": "nope"}, "unknown_node"),
        ({"op": "delete_step", "node": "coupon-new_user_10"}, "not_empty"),
        ({"op": "replace_step", "node": "wait-1d", "text": "wait"}, "bad_step"),
    ],
)
def test_refused(raw: dict, code: str) -> None:
    with pytest.raises(EditError) as info:
        apply_edit(SOURCE, EDIT.validate_python(raw))
    assert info.value.code == code
