"""The operator's answer to sends that failed (a template broken at send
time, fixed since): the journey page's node panel offers to replay them, an
admin confirms, the worker sends them again with their keys, and the panel
shows them sent. A viewer is not offered the button."""

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


def test_replay_failed_sends_from_the_node_panel(live: LiveStack, page: Any, browser: Any) -> None:
    journey_id, template = unique("replay"), unique("code_tpl").replace("-", "_")
    source = f'journey "补发"\n  entry api\n  send webhook "{template}"\n'
    with httpx.Client(base_url=live.url, headers={"Authorization": f"Bearer {ADMIN}"}, timeout=30) as api:
        # a coupon code in a send that has no coupon: it fails when it is rendered
        assert api.put(f"/v1/templates/{template}", json={"body": "券码 {{ coupon.code }}"}).status_code in (200, 201)
        assert api.post("/v1/journeys", json={"id": journey_id, "source": source}).status_code == 201
        r = api.post(f"/v1/journeys/{journey_id}/runs", json={"user_ids": [unique("u"), unique("u")]})
        assert r.status_code == 202, r.text
        for _ in range(200):
            nodes = api.get(f"/v1/journeys/{journey_id}/stats").json()["nodes"]
            if sum(n["failed"] for n in nodes) == 2:
                break
            page.wait_for_timeout(100)
        else:
            raise AssertionError(f"the sends did not fail: {nodes}")
        send_id = next(n["node_id"] for n in nodes if n["failed"])
        # the template is fixed
        assert api.put(f"/v1/templates/{template}", json={"body": "您好，欢迎回来"}).status_code in (200, 201)

    _login(page, live, f"/console/journeys/{journey_id}", ADMIN)
    page.locator(f'#diagram g.node[data-node-id="{send_id}"]').click()
    panel = page.locator("#node-panel")
    expect(panel.locator("table.deliveries")).to_contain_text("failed")
    button = page.get_by_role("button", name="Replay 2 failed sends")
    page.once("dialog", lambda dialog: dialog.accept())
    button.click()
    expect(page.locator("#replay-result")).to_contain_text("2 marked for replay")
    shot(page, "replay-requested")
    deliveries = panel.locator("table.deliveries tbody tr")
    expect(deliveries.filter(has_text="sent")).to_have_count(2, timeout=30_000)
    expect(page.get_by_role("button", name=re.compile("Replay"))).to_have_count(0)
    assert page.console_errors == [], page.console_errors

    viewer = browser.new_page()
    try:
        _login(viewer, live, f"/console/journeys/{journey_id}", VIEWER)
        viewer.locator(f'#diagram g.node[data-node-id="{send_id}"]').click()
        expect(viewer.locator("#node-panel table.deliveries")).to_contain_text("sent")
        expect(viewer.get_by_role("button", name=re.compile("Replay"))).to_have_count(0)
    finally:
        viewer.close()
