"""The diagram editor on a 100-step journey, in headless Chromium: the
diagram draws every node, a step near the end is reached and edited from
the diagram, the edit lands on its own line (comments kept), and the
diagram follows — "stays usable" as a behaviour, not a timing."""

from __future__ import annotations

import re
from typing import Any

from playwright.sync_api import expect

from tests.console.conftest import ADMIN, LiveStack, shot, unique

STEPS = 100


def _journey(event: str) -> str:
    lines = ["# 一百步", 'journey "长旅程"', f"  entry event {event}"]
    for i in range(STEPS // 2):
        lines.append(f"  # 第 {i} 轮")
        lines.append(f'  send sms "step_{i}"')
        lines.append(f"  wait {i + 1}m")
    return "\n".join(lines) + "\n"


def test_a_hundred_step_journey_is_edited_near_its_end(live: LiveStack, page: Any) -> None:
    source = _journey(unique("joined").replace("-", "_"))
    page.goto(live.url + "/console/editor")
    page.get_by_label("API key").fill(ADMIN)
    page.get_by_label("API key").press("Enter")
    page.wait_for_url(re.compile(r"/console/editor$"))
    page.locator("#source").fill(source)
    expect(page.locator("#check-state")).to_have_text(re.compile("No errors"), timeout=30_000)
    nodes = page.locator("#preview-diagram g.node")
    expect(nodes).to_have_count(STEPS + 2, timeout=30_000)  # the steps, entry and end

    last_wait = page.locator(f'#preview-diagram g.node[data-node-id="wait-{STEPS // 2}m"]')
    last_wait.scroll_into_view_if_needed()
    last_wait.click()
    duration = page.get_by_label("Wait for")
    expect(duration).to_have_value(f"{STEPS // 2}m")
    duration.fill("3d")
    page.locator("#inspector").get_by_role("button", name="Save").click()
    expect(page.locator("#source")).to_have_value(re.compile(r"\n  wait 3d\n$"), timeout=30_000)
    text = page.locator("#source").input_value()
    assert text == source.replace(f"  wait {STEPS // 2}m\n", "  wait 3d\n")  # only that line changed
    expect(page.locator('#preview-diagram g.node[data-node-id="wait-3d"]')).to_have_count(1)
    expect(nodes).to_have_count(STEPS + 2)
    shot(page, "editor-long-journey-edited")
    assert page.console_errors == []  # type: ignore[attr-defined]
