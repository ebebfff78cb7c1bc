"""Build ``journeys/01_new_user_first_order.journey`` on the editor's diagram.

Issue 18's acceptance test: from the editor's starter, emptied on the
diagram, an operator builds the first example's whole logic with the
diagram, its palette and forms only — never typing in the text pane —
deploys it, sends events through the API and sees the counts on the journey
page's diagram. The text the diagram made, after ``journeys fmt``, is a
golden, and it is the example's journey (the same IR). Screenshots of each
state go to ``artifacts/screenshots/``. Waits are bounded polls.
"""

from __future__ import annotations

import re
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
from playwright.sync_api import expect

from dsl import format_journey, parse
from tests.console.conftest import ADMIN, WRITE, LiveStack, shot, unique
from tests.dsl.support import assert_golden, content

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "journeys" / "01_new_user_first_order.journey"
GOLDEN = Path(__file__).parent / "editor" / "01_built_on_the_diagram.journey"
TEMPLATES = [
    "welcome_coupon",
    "sorry_no_coupon",
    "general_coupon_reminder",
    "second_order_coupon",
    "app_exclusive_coupon",
]
POOLS = ["new_user_10", "second_order_15"]


def _text(page: Any) -> str:
    return page.locator("#source").input_value()


def _until(page: Any, fragment: str) -> None:
    """The text pane has ``fragment`` and the edit's answer is in."""
    expect(page.locator("#source")).to_have_value(re.compile(re.escape(fragment)))
    expect(page.locator("#edit-state")).not_to_have_text("Saving…")


def _node(page: Any, node_id: str) -> Any:
    return page.locator(f'#preview-diagram g.node[data-node-id="{node_id}"]')


def _insert(page: Any, kind: str) -> None:
    page.locator(f"#inspector .palette button[data-kind={kind}]").click()
    expect(page.locator("#edit-state")).to_have_text(re.compile("Inserted|Saved"))


def _at_start(page: Any, block: str, kind: str) -> None:
    page.locator("#inspector .block-row", has_text=block).get_by_role("button", name="Insert at start").click()
    _insert(page, kind)


def _send(page: Any, channels: str, template: str) -> None:
    page.locator("#inspector").get_by_label(re.compile("^Channels")).fill(channels)
    page.locator("#inspector").get_by_label("Template", exact=True).fill(template)
    page.locator("#inspector form").get_by_role("button", name="Save").click()
    _until(page, f'"{template}"')


def _fill_and_save(page: Any, label: str, value: str, expect_text: str) -> None:
    page.locator("#inspector").get_by_label(label, exact=True).fill(value)
    page.locator("#inspector form").get_by_role("button", name="Save").click()
    _until(page, expect_text)


def test_build_the_first_example_on_the_diagram_only(live: LiveStack, page: Any) -> None:
    with httpx.Client(base_url=live.url, headers={"Authorization": f"Bearer {ADMIN}"}, timeout=30) as api:
        for name in TEMPLATES:
            assert api.put(f"/v1/templates/{name}", json={"body": f"{name}：你好"}).status_code in (200, 201)
        for name in POOLS:
            assert api.put(f"/v1/pools/{name}", json={"stock": 100}).status_code in (200, 201)

    page.goto(live.url + "/console/editor")
    page.get_by_label("API key").fill(ADMIN)
    page.get_by_label("API key").press("Enter")
    page.wait_for_url(re.compile(r"/console/editor$"))
    expect(page.locator("#check-state")).to_have_text(re.compile("No errors"))
    page.locator("#source").evaluate("(t) => t.addEventListener('input', () => t.dataset.typed = '1')")

    # ---- empty the starter on the diagram: its steps go, a pass stays
    for line in ('send wecom "welcome"', "wait 1d", 'send sms "first_order_reminder"'):
        first = page.locator("#preview-diagram g.node[data-step-kind]").first
        first.focus()
        first.press("Delete")
        expect(page.locator("#source")).not_to_have_value(re.compile(re.escape(line)))
    _until(page, "\n  pass\n")
    shot(page, "editor-build-01-empty")

    # ---- the header, in its form
    page.locator("#header-edit").click()
    form = page.locator("#inspector form")
    form.get_by_label("Name", exact=True).fill("new-user first order")
    form.get_by_label("Description", exact=True).fill("进群领券 → 首单 → 二单 → 下载APP")
    form.get_by_label("Entry", exact=True).select_option("event")
    form.get_by_label("Entry event").fill("joined_group")
    form.get_by_label("Entry condition").fill('channel == "wecom_group"')
    form.get_by_label("Re-entry").select_option("once")
    form.get_by_label("Goal event (empty: none)").fill("app_installed")
    form.get_by_label("Within").fill("30d")
    form.get_by_label(re.compile("^Exit when")).fill("event unsubscribed\ntag blacklisted")
    form.get_by_label("Timezone").fill("Asia/Shanghai")
    form.get_by_label("Quiet hours from").fill("22:00")
    form.get_by_label("to", exact=True).fill("08:00")
    form.get_by_label("At most … messages").fill("3")
    form.get_by_label("per", exact=True).fill("1d")
    form.get_by_role("button", name="Save settings").click()
    _until(page, "  limit 3 messages per 1d\n")
    expect(page.locator("#edit-state")).to_have_text("Settings saved")

    # ---- send, coupon with its out_of_stock branch, wait
    _node(page, "pass").click()
    _insert(page, "send")  # in the pass's place
    _send(page, "wecom", "welcome_coupon")
    _insert(page, "coupon")
    _fill_and_save(page, "Coupon pool", "new_user_10", 'coupon "new_user_10"')
    page.locator("#inspector").get_by_role("button", name="Add on out_of_stock").click()
    _until(page, "    on out_of_stock: pass\n")
    _at_start(page, "on out_of_stock", "send")
    _send(page, "wecom", "sorry_no_coupon")
    _node(page, "coupon-new_user_10").click()
    _insert(page, "wait")
    _until(page, "  wait 1d\n")
    shot(page, "editor-build-02-first-steps")

    # ---- if visited and not ordered: push when reachable, else wecom or sms
    _insert(page, "if")
    _fill_and_save(page, "If", "tag visited and not tag ordered", "  if tag visited and not tag ordered:\n")
    page.locator("#inspector .block-row", has_text="else (0 steps)").get_by_role("button", name="Delete branch").click()
    expect(page.locator("#inspector .block-row")).to_have_count(1)
    _at_start(page, "if (0 steps)", "if")
    _fill_and_save(page, "If", "reachable push", "    if reachable push:\n")
    _at_start(page, "if (0 steps)", "send")
    _send(page, "push", "general_coupon_reminder")
    _node(page, "if-reachable-push").click()
    _at_start(page, "else (0 steps)", "send")
    _send(page, "wecom, sms", "general_coupon_reminder")
    shot(page, "editor-build-03-if")

    # ---- two waits for the order, each with its branches
    _node(page, "if-visited").click()
    for timeout, tag, sends in (
        ("7d", "first_order", [("coupon", "second_order_15"), ("send", ("push, wecom, sms", "second_order_coupon"))]),
        ("14d", "second_order", [("send", ("wecom, sms", "app_exclusive_coupon"))]),
    ):
        _insert(page, "wait_event")
        _fill_and_save(page, "Up to (empty: no time limit)", timeout, f"  wait for event order_paid up to {timeout}:\n")
        waited = page.evaluate("() => document.querySelector('#preview-diagram g.node.selected').dataset.nodeId")
        _at_start(page, "on event", "tag")
        _fill_and_save(page, "Tags (comma between)", tag, f"tag add {tag}")
        for kind, what in sends:
            _insert(page, kind)
            if kind == "coupon":
                _fill_and_save(page, "Coupon pool", str(what), f'coupon "{what}"')
            else:
                _send(page, *what)  # type: ignore[misc]
        _node(page, waited).click()
        _at_start(page, "on timeout", "exit")
        _node(page, waited).click()
    shot(page, "editor-build-04-built")

    # ---- the text: never typed, and once formatted the example's journey
    built = _text(page)
    assert page.locator("#source").get_attribute("data-typed") is None, "the text pane was typed in"
    formatted = format_journey(parse(built), built)
    assert_golden(GOLDEN, formatted)
    assert content(parse(formatted)) == content(parse(EXAMPLE.read_text(encoding="utf-8")))

    # ---- deploy, then events through the API, and the counts on the diagram
    journey_id = unique("built-first-order")
    expect(page.locator("#deploy")).to_be_enabled()
    page.get_by_label("Id", exact=True).fill(journey_id)
    page.locator("#deploy").click()
    page.wait_for_url(re.compile(rf"/console/journeys/{journey_id}$"))
    page.wait_for_function("() => Number(document.getElementById('journey').dataset.polls || 0) >= 1")
    member = unique("m")
    with httpx.Client(base_url=live.url, auth=(WRITE, ""), timeout=30) as seg:
        r = seg.post("/v1/identify", json={"userId": member, "traits": {"wecom_external_userid": f"wx-{member}"}})
        assert r.status_code == 200, r.text
        r = seg.post(
            "/v1/track",
            json={
                "userId": member,
                "event": "joined_group",
                "properties": {"channel": "wecom_group"},
                "messageId": unique("msg"),
            },
        )
        assert r.status_code == 200, r.text
    count = page.locator('#diagram .count[data-node-id="__entry__"][data-key="entered"]')
    expect(count).to_have_text("1")
    if 8 <= datetime.now(ZoneInfo("Asia/Shanghai")).hour < 22:  # outside the journey's quiet hours: it sends
        expect(page.locator('#diagram .count[data-node-id="send-wecom-welcome_coupon"][data-key="sent"]')).to_have_text(
            "1"
        )
        expect(page.locator('#diagram .count[data-node-id="wait-1d"][data-key="waiting"]')).to_have_text("1")
    shot(page, "editor-build-05-deployed-counts")
    assert page.console_errors == []  # type: ignore[attr-defined]
