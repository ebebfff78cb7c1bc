"""Each structured edit on golden sources (comments, blank lines, Chinese
names, CRLF) → the expected text in ``tests/dsl/edits/expected``.

A golden is the whole text after the edit, so a reviewer sees that only the
edited lines changed and that they read as ``journeys fmt`` would write them.
Every case also undoes byte for byte, and its ``changed_lines`` cover every
line that differs. Goldens are written only with ``UPDATE_GOLDEN=1``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from dsl import parse
from dsl.edits import EDIT, EditError, apply_edit
from tests.dsl.support import assert_golden

HERE = Path(__file__).parent / "edits"
EXPECTED = HERE / "expected"


def _source(name: str) -> str:
    return (HERE / name).read_bytes().decode("utf-8")


def _send(channel: str, template: str, *more: str) -> dict[str, Any]:
    return {"kind": "send", "channels": [channel, *more], "best_of": bool(more), "template": template}


# (golden name, input file, edit)
CASES: list[tuple[str, str, dict[str, Any]]] = [
    # ---- insert after a step, one of every kind from the palette
    (
        "insert_send_after_top",
        "steps.journey",
        {"op": "insert_step", "position": {"after": "wait-1d"}, "step": _send("sms", "第二天")},
    ),
    (
        "insert_send_best_of_after_commented",
        "steps.journey",
        {
            "op": "insert_step",
            "position": {"after": "send-wecom-x45557f"},
            "step": _send("push", "推送", "wecom", "sms"),
        },
    ),
    (
        "insert_coupon_after_compound",
        "steps.journey",
        {
            "op": "insert_step",
            "position": {"after": "coupon-new_user_10"},
            "text": 'coupon "二单券"\n  on out_of_stock: pass',
        },
    ),
    (
        "insert_tag_remove",
        "steps.journey",
        {
            "op": "insert_step",
            "position": {"after": "tag-add-x68343a-vip"},
            "step": {"kind": "tag", "action": "remove", "tags": ["新用户"]},
        },
    ),
    (
        "insert_wait_until_weekday",
        "steps.journey",
        {
            "op": "insert_step",
            "position": {"after": "wait-until-fri-1000"},
            "step": {"kind": "wait_until", "time": "09:30", "weekday": 0},
        },
    ),
    (
        "insert_wait_date",
        "steps.journey",
        {
            "op": "insert_step",
            "position": {"after": "wait-1d"},
            "step": {"kind": "wait_date", "attribute": "生日", "offset_seconds": -86400, "time": "10:00"},
        },
    ),
    (
        "insert_wait_event_time",
        "steps.journey",
        {
            "op": "insert_step",
            "position": {"after": "tag-add-first_order"},
            "step": {"kind": "wait_event_time", "field": "paid_at", "offset_seconds": 7200},
        },
    ),
    (
        "insert_wait_for_event_with_blocks",
        "steps.journey",
        {
            "op": "insert_step",
            "position": {"after": "wait-1d"},
            "text": 'wait for event 浏览 where page == "商品" up to 2d:\n  on event: tag add 浏览过\n  on timeout: exit',
        },
    ),
    (
        "insert_if_else",
        "steps.journey",
        {
            "op": "insert_step",
            "position": {"after": "wait-1d"},
            "text": 'if tag 老客:\n  send sms "回馈"\nelse:\n  pass',
        },
    ),
    (
        "insert_split",
        "steps.journey",
        {"op": "insert_step", "position": {"after": "wait-1d"}, "text": 'split:\n  50% 甲: send sms "a"\n  50% 乙'},
    ),
    (
        "insert_goto",
        "steps.journey",
        {"op": "insert_step", "position": {"after": "send-sms-b"}, "text": "goto 提醒"},
    ),
    ("insert_label", "steps.journey", {"op": "insert_step", "position": {"after": "exit"}, "text": "label 结尾"}),
    (
        "insert_exit_after_inline",
        "steps.journey",
        {"op": "insert_step", "position": {"after": "send-sms-c"}, "text": "exit"},
    ),
    (
        "insert_after_last_of_block",
        "steps.journey",
        {"op": "insert_step", "position": {"after": "goto-x81944e"}, "step": {"kind": "wait", "seconds": 3600}},
    ),
    (
        "insert_after_holdout_split",
        "steps.journey",
        {"op": "insert_step", "position": {"after": "split-A-B-holdout"}, "text": "tag add 收尾"},
    ),
    # ---- insert at the start of a block
    (
        "insert_start_top",
        "steps.journey",
        {"op": "insert_step", "position": {"parent": None, "block": "steps"}, "text": 'send sms "开头"'},
    ),
    (
        "insert_start_branch",
        "steps.journey",
        {"op": "insert_step", "position": {"parent": "if-visited", "block": "branch:0"}, "text": "tag add 看过"},
    ),
    (
        "insert_start_else_if",
        "steps.journey",
        {"op": "insert_step", "position": {"parent": "if-visited", "block": "branch:1"}, "text": "wait 1h"},
    ),
    (
        "insert_start_inline_else",
        "steps.journey",
        {"op": "insert_step", "position": {"parent": "if-visited", "block": "else"}, "text": "tag add 看过"},
    ),
    (
        "insert_start_inline_out_of_stock",
        "steps.journey",
        {
            "op": "insert_step",
            "position": {"parent": "coupon-new_user_10", "block": "out_of_stock"},
            "text": "tag add 缺货",
        },
    ),
    (
        "insert_start_on_event",
        "steps.journey",
        {
            "op": "insert_step",
            "position": {"parent": "wait-event-order_paid", "block": "on_event"},
            "text": 'if tag a:\n  send sms "x"\nelse:\n  exit',
        },
    ),
    (
        "insert_start_on_timeout",
        "steps.journey",
        {
            "op": "insert_step",
            "position": {"parent": "wait-event-order_paid", "block": "on_timeout"},
            "text": "wait 1d",
        },
    ),
    (
        "insert_start_inline_variant",
        "steps.journey",
        {"op": "insert_step", "position": {"parent": "split-A-B-holdout", "block": "variant:A"}, "text": "wait 1h"},
    ),
    (
        "insert_start_variant",
        "steps.journey",
        {"op": "insert_step", "position": {"parent": "split-A-B-holdout", "block": "variant:B"}, "text": "wait 1h"},
    ),
    (
        "crlf_insert_into_empty_variant",
        "crlf.journey",
        {"op": "insert_step", "position": {"parent": "split-A-B", "block": "variant:B"}, "text": "exit"},
    ),
    (
        "crlf_insert_over_inline_pass",
        "crlf.journey",
        {"op": "insert_step", "position": {"parent": "if-a", "block": "branch:0"}, "text": "wait 1d"},
    ),
    (
        "crlf_insert_compound_over_pass",
        "crlf.journey",
        {
            "op": "insert_step",
            "position": {"parent": "if-a", "block": "else"},
            "text": "split:\n  50% A: pass\n  50% B: pass",
        },
    ),
    (
        "crlf_insert_after_top",
        "crlf.journey",
        {"op": "insert_step", "position": {"after": "wait-1d"}, "text": 'send sms "尾"'},
    ),
    # ---- delete a step
    ("delete_with_comment_above", "steps.journey", {"op": "delete_step", "node": "tag-add-x68343a-vip"}),
    ("delete_with_trailing_comment", "steps.journey", {"op": "delete_step", "node": "wait-1d"}),
    ("delete_only_step_of_branch", "steps.journey", {"op": "delete_step", "node": "send-sms-a"}),
    ("delete_inline", "steps.journey", {"op": "delete_step", "node": "send-sms-c"}),
    ("delete_in_block_before_blank", "steps.journey", {"op": "delete_step", "node": "tag-add-first_order"}),
    ("delete_compound_forced", "steps.journey", {"op": "delete_step", "node": "split-A-B-holdout", "force": True}),
    ("delete_if_forced", "steps.journey", {"op": "delete_step", "node": "if-visited", "force": True}),
    ("delete_only_top_step", "header.journey", {"op": "delete_step", "node": "send-wecom-x45557f"}),
    # ---- delete a branch
    (
        "delete_branch_else",
        "steps.journey",
        {"op": "delete_branch", "node": "if-visited", "block": "else", "force": True},
    ),
    (
        "delete_branch_else_if",
        "steps.journey",
        {"op": "delete_branch", "node": "if-visited", "block": "branch:1", "force": True},
    ),
    (
        "delete_branch_first_if",
        "steps.journey",
        {"op": "delete_branch", "node": "if-visited", "block": "branch:0", "force": True},
    ),
    (
        "delete_branch_on_event",
        "steps.journey",
        {"op": "delete_branch", "node": "wait-event-order_paid", "block": "on_event", "force": True},
    ),
    (
        "delete_branch_on_timeout",
        "steps.journey",
        {"op": "delete_branch", "node": "wait-event-order_paid", "block": "on_timeout", "force": True},
    ),
    (
        "delete_branch_out_of_stock",
        "steps.journey",
        {"op": "delete_branch", "node": "coupon-new_user_10", "block": "out_of_stock", "force": True},
    ),
    (
        "delete_branch_variant",
        "steps.journey",
        {"op": "delete_branch", "node": "split-A-B-holdout", "block": "variant:B", "force": True},
    ),
    (
        "delete_branch_holdout",
        "steps.journey",
        {"op": "delete_branch", "node": "split-A-B-holdout", "block": "variant:holdout"},
    ),
    (
        "crlf_delete_branch_empty_variant",
        "crlf.journey",
        {"op": "delete_branch", "node": "split-A-B", "block": "variant:B"},
    ),
    # ---- move
    ("move_down_to_end", "steps.journey", {"op": "move_step", "node": "wait-1d", "position": {"after": "exit"}}),
    ("move_up", "steps.journey", {"op": "move_step", "node": "exit", "position": {"after": "wait-1d"}}),
    (
        "move_out_of_inline",
        "steps.journey",
        {"op": "move_step", "node": "send-sms-nudge_a", "position": {"after": "wait-1d"}},
    ),
    (
        "move_into_inline_branch",
        "steps.journey",
        {"op": "move_step", "node": "tag-add-x68343a-vip", "position": {"parent": "if-visited", "block": "else"}},
    ),
    (
        "move_compound_into_block",
        "steps.journey",
        {"op": "move_step", "node": "if-visited", "position": {"parent": "wait-event-order_paid", "block": "on_event"}},
    ),
    (
        "move_only_step_leaves_pass",
        "steps.journey",
        {"op": "move_step", "node": "send-sms-b", "position": {"after": "exit"}},
    ),
    (
        "crlf_move_into_empty_variant",
        "crlf.journey",
        {"op": "move_step", "node": "wait-1d", "position": {"parent": "split-A-B", "block": "variant:A"}},
    ),
    # ---- set a step's fields
    (
        "set_wait_duration",
        "steps.journey",
        {"op": "replace_step", "node": "wait-1d", "step": {"kind": "wait", "seconds": 7200}},
    ),
    (
        "set_send_channels",
        "steps.journey",
        {"op": "replace_step", "node": "send-wecom-x45557f", "step": _send("push", "欢迎2", "sms")},
    ),
    ("set_inline_send", "steps.journey", {"op": "replace_step", "node": "send-sms-c", "step": _send("wecom", "丙")}),
    (
        "set_coupon_pool_keeps_branch",
        "steps.journey",
        {"op": "replace_step", "node": "coupon-new_user_10", "text": 'coupon "新券"\n  on out_of_stock: pass'},
    ),
    (
        "set_tags",
        "steps.journey",
        {
            "op": "replace_step",
            "node": "tag-add-x68343a-vip",
            "step": {"kind": "tag", "action": "add", "tags": ["新用户", "会员 卡"]},
        },
    ),
    (
        "set_wait_until",
        "steps.journey",
        {"op": "replace_step", "node": "wait-until-fri-1000", "step": {"kind": "wait_until", "time": "08:00"}},
    ),
    (
        "set_wait_date",
        "steps.journey",
        {
            "op": "replace_step",
            "node": "wait-until-term_start-minus-7d",
            "step": {"kind": "wait_date", "attribute": "term_start", "offset_seconds": -259200},
        },
    ),
    (
        "set_wait_event_keeps_blocks",
        "steps.journey",
        {
            "op": "replace_step",
            "node": "wait-event-order_paid",
            "text": "wait for event 下单 up to 5d:\n  on event: pass\n  on timeout: pass",
        },
    ),
    (
        "set_if_conditions_keep_blocks",
        "steps.journey",
        {
            "op": "replace_step",
            "node": "if-visited",
            "text": 'if tag 新 or tag 旧:\n  pass\nelse if user.city == "北京":\n  pass\nelse:\n  pass',
        },
    ),
    (
        "set_split_percents_keep_blocks",
        "steps.journey",
        {
            "op": "replace_step",
            "node": "split-A-B-holdout",
            "text": "split:\n  50% A: pass\n  30% 乙: pass\n  20% holdout",
        },
    ),
    ("set_label_name_gotos_follow", "steps.journey", {"op": "replace_step", "node": "x81944e", "text": "label 再提醒"}),
    ("set_goto_target", "steps.journey", {"op": "replace_step", "node": "goto-x81944e", "text": "goto 别处"}),
    ("set_kind_leaf_to_leaf", "steps.journey", {"op": "replace_step", "node": "wait-until-fri-1000", "text": "exit"}),
    (
        "set_inline_to_compound",
        "steps.journey",
        {"op": "replace_step", "node": "send-sms-c", "text": "if tag x:\n  exit"},
    ),
    (
        "set_compound_to_leaf_forced",
        "steps.journey",
        {"op": "replace_step", "node": "split-A-B-holdout", "text": 'send sms "合并"', "force": True},
    ),
    (
        "crlf_set_split_head",
        "crlf.journey",
        {"op": "replace_step", "node": "split-A-B", "text": "split:\n  70% A\n  30% B"},
    ),
    (
        "capped_send_policy_changed",
        "capped.journey",
        {"op": "replace_step", "node": "send-sms-a", "step": _send("sms", "a") | {"when_capped": {"mode": "skip"}}},
    ),
    ("capped_send_replaced", "capped.journey", {"op": "replace_step", "node": "send-sms-a", "text": "wait 2h"}),
    ("capped_header_policy_removed", "capped.journey", {"op": "set_header", "field": "when_capped", "value": None}),
    (
        "brackets_set_if_conditions",
        "brackets.journey",
        {
            "op": "replace_step",
            "node": "if-category",
            "text": "if stage in [new, active]:\n  pass\nelse if tag c:\n  pass",
        },
    ),
    (
        "brackets_delete_first_branch",
        "brackets.journey",
        {"op": "delete_branch", "node": "if-category", "block": "branch:0", "force": True},
    ),
    (
        "brackets_set_wait_event",
        "brackets.journey",
        {"op": "replace_step", "node": "wait-event-x5f386e", "text": "wait for event 看 up to 1d"},
    ),
    (
        "brackets_add_on_event",
        "brackets.journey",
        {"op": "add_branch", "node": "wait-event-x5f386e", "branch": "on_event"},
    ),
    (
        "brackets_move_inline_out",
        "brackets.journey",
        {"op": "move_step", "node": "tag-add-x4c83e1", "position": {"after": "tag-add-x083009"}},
    ),
    (
        "split_test_head_and_otherwise",
        "split_test.journey",
        {
            "op": "replace_step",
            "node": "split-A-B",
            "text": "split test 20% for 1d by event clicked:\n  60% A: pass\n  40% B\n  otherwise: B",
        },
    ),
    (
        "split_test_add_variant_before_otherwise",
        "split_test.journey",
        {"op": "add_branch", "node": "split-A-B", "branch": "variant", "name": "C", "percent": 10},
    ),
    (
        "split_test_deleted_with_otherwise",
        "split_test.journey",
        {"op": "delete_step", "node": "split-A-B", "force": True},
    ),
    (
        "split_test_move_into_empty_variant",
        "split_test.journey",
        {"op": "move_step", "node": "exit", "position": {"parent": "split-A-B", "block": "variant:B"}},
    ),
    ("header_priority", "split_test.journey", {"op": "set_header", "field": "priority", "value": 10}),
    # ---- add a branch
    (
        "add_else_if",
        "steps.journey",
        {"op": "add_branch", "node": "if-visited", "branch": "else_if", "cond": "tag 老客"},
    ),
    ("add_else", "steps.journey", {"op": "add_branch", "node": "if-visited", "branch": "else"}),  # refused: it has one
    (
        "add_variant_takes_from_largest",
        "steps.journey",
        {"op": "add_branch", "node": "split-A-B-holdout", "branch": "variant", "name": "丙", "percent": 10},
    ),
    (
        "crlf_add_variant",
        "crlf.journey",
        {"op": "add_branch", "node": "split-A-B", "branch": "variant", "name": "C", "percent": 20},
    ),
    (
        "add_on_timeout_after_delete",
        "steps.journey",
        {"op": "add_branch", "node": "wait-event-order_paid", "branch": "on_timeout"},
    ),  # refused: it has one
    # ---- header
    ("header_name", "header.journey", {"op": "set_header", "field": "name", "value": "会员日 2"}),
    ("header_description_added", "header.journey", {"op": "set_header", "field": "description", "value": "每月 8 号"}),
    (
        "header_entry_audience",
        "header.journey",
        {
            "op": "set_header",
            "field": "entry",
            "value": {
                "kind": "audience",
                "where": {"kind": "tag", "tag": "会员"},
                "schedule": {"every": "week", "time": "10:00", "weekday": 0},
            },
        },
    ),
    ("header_entry_api", "header.journey", {"op": "set_header", "field": "entry", "value": {"kind": "api"}}),
    (
        "header_reentry_after",
        "header.journey",
        {"op": "set_header", "field": "reentry", "value": {"mode": "after", "cooldown_seconds": 604800}},
    ),
    ("header_goal_removed_with_comment", "header.journey", {"op": "set_header", "field": "goal", "value": None}),
    (
        "header_goal_changed",
        "header.journey",
        {
            "op": "set_header",
            "field": "goal",
            "value": {"event": "order_paid", "within_seconds": 604800, "exit_on_goal": True},
        },
    ),
    ("header_exits_replaced", "header.journey", {"op": "set_header", "field": "exits", "value": [{"event": "退订"}]}),
    ("header_exits_cleared", "header.journey", {"op": "set_header", "field": "exits", "value": []}),
    (
        "header_exit_keeps_comment",
        "header.journey",
        {
            "op": "set_header",
            "field": "exits",
            "value": [
                {
                    "event": "unsubscribed",
                    "where": {"kind": "compare", "subject": "event", "field": "reason", "op": "==", "value": "太多"},
                }
            ],
        },
    ),
    (
        "header_timezone_added_in_order",
        "header.journey",
        {"op": "set_header", "field": "timezone", "value": "Asia/Tokyo"},
    ),
    (
        "header_quiet_hours_changed",
        "header.journey",
        {"op": "set_header", "field": "quiet_hours", "value": {"start": "21:30", "end": "09:00"}},
    ),
    ("header_quiet_hours_removed", "header.journey", {"op": "set_header", "field": "quiet_hours", "value": None}),
    (
        "header_limit_added",
        "header.journey",
        {
            "op": "set_header",
            "field": "message_limit",
            "value": {"count": 2, "window_seconds": 86400, "calendar": "day"},
        },
    ),
    (
        "header_when_capped_added",
        "header.journey",
        {"op": "set_header", "field": "when_capped", "value": {"mode": "defer", "max_delay_seconds": 43200}},
    ),
    (
        "header_entry_as_text",
        "header.journey",
        {"op": "set_header", "field": "entry", "text": 'entry event "加群" where channel == "wecom"'},
    ),
    (
        "header_exits_as_text",
        "header.journey",
        {"op": "set_header", "field": "exits", "text": 'exit when event "退订"\nexit when tag vip and not tag 老客'},
    ),
    (
        "header_exits_grow",
        "header.journey",
        {
            "op": "set_header",
            "field": "exits",
            "text": "exit when event unsubscribed\nexit when tag 黑名单\nexit when tag 投诉",
        },
    ),
    ("header_goal_removed_as_empty_text", "header.journey", {"op": "set_header", "field": "goal", "text": ""}),
    ("crlf_header_description", "crlf.journey", {"op": "set_header", "field": "description", "value": "行尾"}),
]

# cases that are refused, with the code they are refused with
REFUSED = {"add_else": "exists", "add_on_timeout_after_delete": "exists"}


@pytest.mark.parametrize(("name", "source_file", "raw"), CASES, ids=[c[0] for c in CASES])
def test_edit_matches_golden_and_undoes(name: str, source_file: str, raw: dict[str, Any]) -> None:
    source = _source(source_file)
    edit = EDIT.validate_python(raw)
    if name in REFUSED:
        with pytest.raises(EditError) as info:
            apply_edit(source, edit)
        assert info.value.code == REFUSED[name]
        return
    result = apply_edit(source, edit)
    assert_golden(EXPECTED / f"{name}.journey", result.source)
    parse(result.source)
    undone = apply_edit(result.source, result.inverse)
    assert undone.source.encode("utf-8") == source.encode("utf-8")
    _assert_changed_lines_cover_the_diff(source, result.source, result.changed_lines)
    if source_file == "crlf.journey":  # added lines take the text's line ending
        assert all(line.endswith("\r") for line in result.source.split("\n")[:-1])


def _assert_changed_lines_cover_the_diff(old: str, new: str, changed: tuple[int, int]) -> None:
    a, b = old.split("\n"), new.split("\n")
    first, last = changed
    if first == 0:  # lines only went away: the new text is the old one minus a run
        assert len(b) < len(a)
        assert any(a[:i] + a[i + len(a) - len(b) :] == b for i in range(len(b) + 1))
        return
    assert b[: first - 1] == a[: first - 1]
    assert b[last:] == a[len(a) - (len(b) - last) :]


def test_every_golden_is_a_case() -> None:
    """A golden left behind by a renamed case would never be compared."""
    names = {c[0] for c in CASES} - set(REFUSED)
    assert {p.stem for p in EXPECTED.glob("*.journey")} == names


@pytest.mark.parametrize(
    ("raw", "code"),
    [
        ({"op": "delete_step", "node": "nope"}, "unknown_node"),
        ({"op": "delete_step", "node": "coupon-new_user_10"}, "not_empty"),
        ({"op": "delete_step", "node": "if-visited"}, "not_empty"),
        ({"op": "replace_step", "node": "split-A-B-holdout", "text": "exit"}, "not_empty"),
        ({"op": "replace_step", "node": "wait-1d", "text": "wait"}, "bad_step"),
        ({"op": "replace_step", "node": "wait-1d", "text": "wait 1d\nwait 2d"}, "bad_step"),
        ({"op": "replace_step", "node": "wait-1d"}, "bad_step"),
        ({"op": "replace_step", "node": "wait-1d", "step": {"kind": "wait"}}, "bad_step"),
        ({"op": "replace_step", "node": "wait-1d", "step": _send("sms", "x") | {"channels": []}}, "bad_step"),
        ({"op": "insert_step", "position": {"parent": "wait-1d", "block": "else"}, "text": "exit"}, "unknown_block"),
        ({"op": "insert_step", "position": {"parent": None, "block": "else"}, "text": "exit"}, "unknown_block"),
        ({"op": "insert_step", "position": {"after": "nope"}, "text": "exit"}, "unknown_node"),
        ({"op": "delete_branch", "node": "if-visited", "block": "else"}, "not_empty"),
        ({"op": "delete_branch", "node": "if-visited", "block": "branch:7", "force": True}, "unknown_block"),
        ({"op": "delete_branch", "node": "wait-1d", "block": "else"}, "unknown_block"),
        (
            {"op": "move_step", "node": "if-visited", "position": {"parent": "if-visited", "block": "else"}},
            "bad_position",
        ),
        ({"op": "move_step", "node": "wait-event-order_paid", "position": {"after": "goto-x81944e"}}, "bad_position"),
        ({"op": "add_branch", "node": "wait-1d", "branch": "else"}, "bad_branch"),
        ({"op": "add_branch", "node": "if-visited", "branch": "else_if"}, "bad_branch"),
        ({"op": "add_branch", "node": "split-A-B-holdout", "branch": "variant", "name": "A", "percent": 5}, "exists"),
        (
            {"op": "add_branch", "node": "split-A-B-holdout", "branch": "variant", "name": "D", "percent": 50},
            "bad_branch",
        ),
        ({"op": "add_branch", "node": "split-A-B-holdout", "branch": "variant", "name": "D"}, "bad_branch"),
        ({"op": "add_branch", "node": "coupon-new_user_10", "branch": "out_of_stock"}, "exists"),
        ({"op": "set_header", "field": "name", "value": ""}, "bad_header"),
        ({"op": "set_header", "field": "entry", "value": {"kind": "bogus"}}, "bad_header"),
        ({"op": "set_header", "field": "exits", "value": [{}]}, "bad_header"),
        ({"op": "set_header", "field": "timezone", "value": None}, "bad_header"),
        ({"op": "set_header", "field": "goal", "text": "quiet hours 22:00-08:00"}, "bad_header"),
        ({"op": "set_header", "field": "goal", "text": "goal event"}, "bad_header"),
        ({"op": "set_header", "field": "name", "text": "x"}, "bad_header"),
        ({"op": "restore_lines", "start": 3, "expect": ["not this"], "lines": []}, "stale"),
        ({"op": "restore_lines", "start": 10_000, "expect": [""], "lines": []}, "stale"),
    ],
)
def test_refused(raw: dict[str, Any], code: str) -> None:
    with pytest.raises(EditError) as info:
        apply_edit(_source("steps.journey"), EDIT.validate_python(raw))
    assert info.value.code == code, info.value.message


def test_the_only_branch_and_variant_cannot_go() -> None:
    single = 'journey "x"\n  if tag a:\n    exit\n  split:\n    100% A\n'
    for raw in (
        {"op": "delete_branch", "node": "if-a", "block": "branch:0", "force": True},
        {"op": "delete_branch", "node": "split-A", "block": "variant:A"},
    ):
        with pytest.raises(EditError) as info:
            apply_edit(single, EDIT.validate_python(raw))
        assert info.value.code == "last_branch"


def test_text_with_syntax_errors_is_refused() -> None:
    with pytest.raises(EditError) as info:
        apply_edit('journey "x"\n  wait\n', EDIT.validate_python({"op": "delete_step", "node": "wait-1d"}))
    assert info.value.code == "source_has_errors" and "line 2" in info.value.message


def test_a_bom_stays_in_front() -> None:
    source = "\ufeff" + _source("header.journey")
    result = apply_edit(source, EDIT.validate_python({"op": "set_header", "field": "name", "value": "有 BOM"}))
    assert result.source.startswith("\ufeff# 头部编辑") and '\njourney "有 BOM"   # 名字\n' in result.source
    assert apply_edit(result.source, result.inverse).source == source
