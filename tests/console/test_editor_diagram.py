"""Editing a journey on the editor's diagram, in headless Chromium.

Every change here is made on the diagram and its forms (the text pane is
only filled once, to start from a journey with comments): insert a step from
the palette, set a wait's duration, Chinese names, delete a branch after a
confirmation, move a step, the header form, undo and redo across both panes,
and the keyboard alone. After each edit the text pane holds the new text —
its comments intact — and the diagram its node. Screenshots go to
``artifacts/screenshots/``. Waits are bounded polls, never timings.
"""

from __future__ import annotations

import re
from typing import Any

from playwright.sync_api import expect

from tests.console.conftest import ADMIN, LiveStack, shot, unique

JOURNEY = """\
# 测试：图上编辑
journey "图上编辑 {tag}"
  entry event {event}
  reentry once

  # 欢迎
  send wecom "welcome"
  wait 1d   # 一天
  if tag vip:
    send sms "vip_offer"
  else:
    tag add 普通   # 不是会员
    exit
"""
COMMENTS = ["# 测试：图上编辑", "  # 欢迎", "   # 一天"]


def _open(page: Any, live: LiveStack) -> str:
    """Sign in, put a journey with comments in the editor; its text."""
    source = JOURNEY.format(tag=unique("t"), event=unique("joined").replace("-", "_"))
    page.goto(live.url + "/console/editor")
    page.get_by_label("API key").fill(ADMIN)
    page.get_by_label("API key").press("Enter")
    page.wait_for_url(re.compile(r"/console/editor$"))
    page.locator("#source").fill(source)
    _settled(page, source)
    return source


def _settled(page: Any, text: str | None = None) -> None:
    """The text pane holds ``text`` and the diagram was drawn from it."""
    if text is not None:
        expect(page.locator("#source")).to_have_value(text)
    expect(page.locator("#check-state")).to_have_text(re.compile("No errors|error"))
    expect(page.locator("#preview-diagram svg")).to_have_count(1)


def _node(page: Any, node_id: str) -> Any:
    return page.locator(f'#preview-diagram g.node[data-node-id="{node_id}"]')


def _text(page: Any) -> str:
    return page.locator("#source").input_value()


def _saved(page: Any, contains: str) -> str:
    expect(page.locator("#source")).to_have_value(re.compile(re.escape(contains)))
    expect(page.locator("#edit-state")).not_to_have_text("Saving…")
    return _text(page)


def test_insert_set_fields_chinese_names_undo_redo(live: LiveStack, page: Any) -> None:
    source = _open(page, live)

    # ---- insert a step from the palette after the wait
    _node(page, "wait-1d").click()
    expect(page.locator("#inspector")).to_be_visible()
    expect(page.locator("#inspector form")).to_have_attribute("aria-label", "Fields of wait")
    page.locator("#inspector .palette button[data-kind=tag]").click()
    inserted = _saved(page, "  tag add new_tag\n")
    assert inserted == source.replace("  wait 1d   # 一天\n", "  wait 1d   # 一天\n  tag add new_tag\n")
    expect(_node(page, "tag-add-new_tag")).to_have_class(re.compile("selected"))
    tags = page.get_by_label("Tags (comma between)")
    expect(tags).to_be_focused()  # the new step's form opens on its first field
    shot(page, "editor-diagram-01-inserted")

    # ---- its fields, with Chinese names
    tags.fill("新客，老客")
    tags.press("Enter")
    named = _saved(page, "  tag add 新客, 老客\n")
    assert named == inserted.replace("tag add new_tag", "tag add 新客, 老客")
    expect(page.locator("#preview-diagram svg")).to_contain_text("新客")

    # ---- a wait's duration
    _node(page, "wait-1d").click()
    duration = page.get_by_label("Wait for")
    expect(duration).to_have_value("1d")
    duration.fill("2h")
    page.locator("#inspector").get_by_role("button", name="Save").click()
    waited = _saved(page, "  wait 2h   # 一天\n")  # the line's comment stays
    assert waited == named.replace("wait 1d   # 一天", "wait 2h   # 一天")
    expect(_node(page, "wait-2h")).to_have_class(re.compile("selected"))  # still selected under its new id
    expect(_node(page, "wait-1d")).to_have_count(0)
    shot(page, "editor-diagram-02-wait-2h")

    # ---- undo, undo, redo: the exact texts, the diagram with them
    page.locator("#undo").click()
    _saved(page, "wait 1d   # 一天")
    assert _text(page) == named
    expect(_node(page, "wait-1d")).to_have_count(1)
    page.keyboard.press("Control+z")
    expect(page.locator("#source")).to_have_value(inserted)
    page.locator("#redo").click()
    expect(page.locator("#source")).to_have_value(named)
    page.keyboard.press("Control+Shift+z")
    expect(page.locator("#source")).to_have_value(waited)
    expect(page.locator("#redo")).to_be_disabled()

    # ---- across panes: typing, then a diagram edit, then two undos
    page.locator("#source").press("Control+End")
    page.keyboard.type('  send sms "再见"\n')
    typed = waited + '  send sms "再见"\n'
    _settled(page, typed)
    expect(page.locator("#preview-diagram svg")).to_contain_text("再见")
    _node(page, "wait-2h").click()
    page.locator("#inspector").get_by_role("button", name="Delete step").click()
    deleted = _saved(page, '  send sms "再见"\n')
    assert "wait 2h" not in deleted and "   # 一天" not in deleted
    page.keyboard.press("Control+z")
    expect(page.locator("#source")).to_have_value(typed)
    page.locator("#undo").click()
    expect(page.locator("#source")).to_have_value(waited)
    _settled(page, waited)
    for comment in COMMENTS:
        assert comment in _text(page)
    shot(page, "editor-diagram-03-undone")
    assert page.console_errors == []  # type: ignore[attr-defined]


def test_delete_a_branch_only_after_confirming(live: LiveStack, page: Any) -> None:
    source = _open(page, live)
    _node(page, "if-vip").click()
    expect(page.locator("#inspector form")).to_have_attribute("aria-label", "Fields of if")
    row = page.locator("#inspector .block-row", has_text="else (2 steps)")
    expect(row).to_be_visible()

    asked: list[str] = []
    page.once("dialog", lambda d: (asked.append(d.message), d.dismiss()))
    row.get_by_role("button", name="Delete branch").click()
    expect(page.locator("#edit-state")).not_to_have_text("Saving…")
    assert asked and "2 steps" in asked[0]
    assert _text(page) == source  # said no: nothing changed

    page.once("dialog", lambda d: d.accept())
    row.get_by_role("button", name="Delete branch").click()
    gone = _saved(page, '    send sms "vip_offer"\n')
    assert gone == source.replace("  else:\n    tag add 普通   # 不是会员\n    exit\n", "")
    expect(page.locator("#preview-diagram g.node[data-step-kind=exit]")).to_have_count(0)
    expect(page.locator("#inspector .block-row")).to_have_count(1)  # the if is still selected: one branch left
    shot(page, "editor-diagram-04-branch-deleted")

    # a branch that holds nothing goes without a question
    page.locator("#inspector").get_by_role("button", name="Add else", exact=True).click()
    _saved(page, "  else:\n    pass\n")
    page.locator("#inspector .block-row", has_text="else (0 steps)").get_by_role("button", name="Delete branch").click()
    expect(page.locator("#source")).to_have_value(gone)
    assert page.console_errors == []  # type: ignore[attr-defined]


def test_split_move_and_header_forms(live: LiveStack, page: Any) -> None:
    source = _open(page, live)
    # a split from the palette, at the start of the journey (the entry node's palette)
    _node(page, "__entry__").click()
    expect(page.locator("#inspector form")).to_have_attribute("aria-label", "Journey settings")
    page.locator("#inspector .palette button[data-kind=split]").click()
    split = _saved(page, "  split:\n    50% A: pass\n    50% B: pass\n")
    assert split.index("  split:") < split.index("  # 欢迎")
    page.get_by_label("Variant", exact=True).first.fill("甲")
    page.get_by_label("%", exact=True).first.fill("70")
    expect(page.locator("#inspector .total")).to_contain_text("must be 100%")
    page.get_by_label("%", exact=True).nth(1).fill("30")
    expect(page.locator("#inspector .total")).to_have_text("Total 100%")
    page.locator("#inspector").get_by_role("button", name="Save").click()
    _saved(page, "  split:\n    70% 甲: pass\n    30% B: pass\n")

    # move the welcome message (and its comment) into variant 甲
    _node(page, "send-wecom-welcome").click()
    page.locator("#inspector").get_by_role("button", name="Cut to move").click()
    expect(_node(page, "send-wecom-welcome")).to_have_class(re.compile("cut"))
    page.locator("#preview-diagram g.node[data-step-kind=split]").click()
    page.locator("#inspector .block-row", has_text="variant 甲").get_by_role("button", name="Paste at start").click()
    moved = _saved(page, '    70% 甲:\n      # 欢迎\n      send wecom "welcome"\n')
    assert moved.count('send wecom "welcome"') == 1

    # the header form: a goal and quiet hours
    page.locator("#header-edit").click()
    page.get_by_label("Goal event (empty: none)").fill("首单")
    page.get_by_label("Within").fill("7d")
    page.get_by_label("Quiet hours from").fill("22:00")
    page.get_by_label("to", exact=True).fill("08:00")
    page.get_by_role("button", name="Save settings").click()
    header = _saved(page, "  goal event 首单 within 7d\n")
    assert "  quiet hours 22:00-08:00\n" in header
    assert header.index("goal event") < header.index("quiet hours") < header.index("  split:")
    shot(page, "editor-diagram-05-split-header")
    page.locator("#undo").click()  # the form's two lines are one step back
    expect(page.locator("#source")).to_have_value(moved)
    for comment in COMMENTS:
        assert comment in moved
    assert source != moved
    assert page.console_errors == []  # type: ignore[attr-defined]


def test_the_diagram_by_keyboard_alone(live: LiveStack, page: Any) -> None:
    source = _open(page, live)
    page.locator("#header-edit").focus()
    page.keyboard.press("Tab")  # the diagram is one tab stop…
    focused = page.evaluate("() => document.activeElement.dataset.nodeId")
    assert focused == "__entry__"
    page.keyboard.press("ArrowDown")  # …whose arrows walk the steps
    page.keyboard.press("ArrowDown")
    assert page.evaluate("() => document.activeElement.dataset.nodeId") == "wait-1d"
    page.keyboard.press("Enter")
    expect(page.get_by_label("Wait for")).to_be_focused()
    page.keyboard.press("Control+a")
    page.keyboard.type("3d")
    page.keyboard.press("Enter")
    _saved(page, "  wait 3d   # 一天\n")
    expect(_node(page, "wait-3d")).to_be_focused()  # back on the node after saving

    page.keyboard.press("Insert")  # the palette for "after this"
    expect(page.locator("#inspector .palette button").first).to_be_focused()
    page.keyboard.press("Tab")
    page.keyboard.press("Tab")
    page.keyboard.press("Tab")  # Send, Coupon, Tag, Wait
    page.keyboard.press("Enter")
    _saved(page, "  wait 3d   # 一天\n  wait 1d\n")
    page.keyboard.press("Escape")  # leave the form: back to the new step
    node = page.evaluate("() => document.activeElement.dataset.nodeId")
    assert node in ("wait-1d", None)
    _node(page, "wait-1d").focus()
    page.keyboard.press("Delete")
    _saved(page, "  wait 3d   # 一天\n  if tag vip:\n")
    page.keyboard.press("Alt+ArrowUp")  # the focused step moves up: past the welcome message
    text = _saved(page, '  wait 3d   # 一天\n  # 欢迎\n  send wecom "welcome"\n')
    assert text == source.replace(
        '  # 欢迎\n  send wecom "welcome"\n  wait 1d   # 一天\n',
        '  wait 3d   # 一天\n  # 欢迎\n  send wecom "welcome"\n',
    )
    shot(page, "editor-diagram-06-keyboard")
    assert page.console_errors == []  # type: ignore[attr-defined]


def test_an_older_texts_check_answer_is_dropped_once_typing_starts(live: LiveStack, page: Any) -> None:
    """The check of the starter text answers after the operator put a journey in:
    its old diagram must not be drawn as if it were this text's (it was, and a
    later redraw then took keyboard focus off the step being edited)."""
    held: list[Any] = []

    def hold_first(route: Any) -> None:
        if not held:
            held.append(route)  # answered below, after the text changed
        else:
            route.continue_()

    page.route("**/v1/journeys/check", hold_first)
    page.goto(live.url + "/console/editor")
    page.get_by_label("API key").fill(ADMIN)
    page.get_by_label("API key").press("Enter")
    page.wait_for_url(re.compile(r"/console/editor$"))
    expect(page.locator("#check-state")).to_have_text("Checking…")
    assert len(held) == 1
    source = JOURNEY.format(tag=unique("t"), event=unique("joined").replace("-", "_"))
    page.locator("#source").fill(source)
    with page.expect_response("**/v1/journeys/check"):
        held[0].continue_()
    # the stale answer arrived while the text's own check waits for the typing pause
    assert page.locator("#check-state").text_content() != "No errors"
    _settled(page, source)
    expect(_node(page, "wait-1d")).to_have_count(1)


def test_a_step_chosen_before_the_outline_came_stays_chosen_after_saving(live: LiveStack, page: Any) -> None:
    """On a slow server the keys can outrun the first outline: the step was
    chosen while its line was unknown, and saving its form then put the
    selection (and keyboard focus) on the journey's first step."""
    _open(page, live)
    held: list[Any] = []

    def hold_first(route: Any) -> None:
        if not held:
            held.append(route)  # answered below, after the keys
        else:
            route.continue_()

    page.route("**/v1/journeys/outline", hold_first)
    page.locator("#header-edit").focus()
    page.keyboard.press("Tab")
    with page.expect_request("**/v1/journeys/outline"):  # held: the keys outrun it
        page.keyboard.press("ArrowDown")
    page.keyboard.press("ArrowDown")
    assert page.evaluate("() => document.activeElement.dataset.nodeId") == "wait-1d"
    page.keyboard.press("Enter")
    expect(page.get_by_label("Wait for")).to_have_count(0)  # no form before the outline
    held[0].continue_()
    expect(page.get_by_label("Wait for")).to_be_focused()
    page.keyboard.press("Control+a")
    page.keyboard.type("3d")
    page.keyboard.press("Enter")
    _saved(page, "  wait 3d   # 一天\n")
    expect(_node(page, "wait-3d")).to_be_focused()
    expect(_node(page, "wait-3d")).to_have_class(re.compile("selected"))
