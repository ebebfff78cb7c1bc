"""A split test on the journey page, in headless Chromium: the split node's
panel shows the running test (window, per-variant numbers) and an operator
picks the winner there; a viewer sees it and no buttons."""

from __future__ import annotations

import re
from typing import Any

import httpx
from playwright.sync_api import expect

from tests.console.conftest import ADMIN, VIEWER, LiveStack, shot, unique


def _login(page: Any, live: LiveStack, path: str, key: str) -> None:
    page.goto(live.url + path)
    expect(page).to_have_url(re.compile(r"/console/login\?next="))
    page.get_by_label("API key").fill(key)
    page.get_by_label("API key").press("Enter")
    page.wait_for_url(re.compile(re.escape(path) + r"(\?.*)?$"))


def test_the_split_node_shows_the_test_and_an_operator_picks_the_winner(
    live: LiveStack, page: Any, browser: Any
) -> None:
    journey_id, template = unique("abtest"), unique("tpl").replace("-", "_")
    source = (
        'journey "文案测试"\n  entry api\n  goal event order_paid within 1d\n'
        "  split test 50% for 7d by goal:\n"
        f'    50% A: send webhook "{template}"\n    50% B: send webhook "{template}"\n'
    )
    with httpx.Client(base_url=live.url, headers={"Authorization": f"Bearer {ADMIN}"}, timeout=30) as api:
        assert api.put(f"/v1/templates/{template}", json={"body": "hi"}).status_code in (200, 201)
        assert api.post("/v1/journeys", json={"id": journey_id, "source": source}).status_code == 201
        r = api.post(f"/v1/journeys/{journey_id}/runs", json={"user_ids": [unique("u") for _ in range(6)]})
        assert r.status_code == 202, r.text
        for _ in range(200):
            tests = api.get(f"/v1/journeys/{journey_id}/split-tests").json()
            if tests and tests[0]["started_at"]:
                break
            page.wait_for_timeout(100)

    _login(page, live, f"/console/journeys/{journey_id}", ADMIN)
    page.locator('#diagram g.node[data-node-id="split-A-B"]').click()
    state = page.locator("#split-test-state")
    expect(state).to_contain_text("Testing on 50% until")
    expect(page.locator("#node-panel .split-test tbody tr")).to_have_count(2)
    expect(page.locator("#split-test-so-far")).to_contain_text("If it ended now: too few runs in the test")
    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="Pick B").click()
    expect(state).to_have_text("Winner: B (picked by an operator)")
    expect(page.locator('#node-panel .split-test tr[data-variant="B"] th')).to_have_text("B ★")
    shot(page, "split-test-picked")
    assert page.console_errors == [], page.console_errors

    viewer = browser.new_page()
    try:
        _login(viewer, live, f"/console/journeys/{journey_id}", VIEWER)
        viewer.locator('#diagram g.node[data-node-id="split-A-B"]').click()
        expect(viewer.locator("#split-test-state")).to_have_text("Winner: B (picked by an operator)")
        expect(viewer.get_by_role("button", name=re.compile("^Pick"))).to_have_count(0)
    finally:
        viewer.close()
