"""The editor's "Try it" panel in headless Chromium: the journey in the text
pane runs for a test user with a scripted order on the real interpreter
(time-skipping), the timeline shows what happened in the operator's words,
and the diagram marks the steps reached and dims the one that was not."""

from __future__ import annotations

import re
from typing import Any

from playwright.sync_api import expect

from tests.console.conftest import ADMIN, LiveStack, shot

JOURNEY = """\
journey "试一试"
  entry event signed_up
  send sms "welcome"
  wait for event order_paid up to 1d:
    on event:
      send sms "thanks"
    on timeout:
      send sms "nudge"
"""


def test_try_a_journey_for_a_test_user_before_deploying(live: LiveStack, page: Any) -> None:
    page.goto(live.url + "/console/editor")
    page.get_by_label("API key").fill(ADMIN)
    page.get_by_label("API key").press("Enter")
    page.wait_for_url(re.compile(r"/console/editor$"))
    page.locator("#source").fill(JOURNEY)
    expect(page.locator("#preview-diagram svg")).to_have_count(1)
    expect(page.locator("#check-state")).to_have_text(re.compile("No errors"))

    page.get_by_label("Phone", exact=True).fill("13800007001")
    page.get_by_label("Events, one a line").fill("+2h order_paid amount=120")
    page.locator("#try-form").get_by_role("button", name="Run").click()
    out = page.locator("#try-out")
    expect(out).to_contain_text("thanks", timeout=60_000)
    expect(out).to_contain_text("order_paid")
    expect(page.locator("#try-state")).to_have_text("1 step(s) never reached (dimmed on the diagram)")
    expect(page.locator('#preview-diagram g.node[data-node-id="send-sms-thanks"]')).to_have_class(re.compile("reached"))
    expect(page.locator('#preview-diagram g.node[data-node-id="send-sms-nudge"]')).to_have_class(
        re.compile("unreached")
    )
    shot(page, "editor-try-it")

    # every variant of a split, one run each: both branches lit
    split = JOURNEY.replace(
        '  send sms "welcome"\n', '  split:\n    50% A: send sms "welcome_a"\n    50% B: send sms "welcome_b"\n'
    )
    page.locator("#source").fill(split)
    expect(page.locator('#preview-diagram g.node[data-node-id="send-sms-welcome_b"]')).to_have_count(1)
    page.get_by_label("every variant of every split").check()
    page.locator("#try-form").get_by_role("button", name="Run").click()
    expect(page.locator("#try-state")).to_contain_text("2 runs (one per variant)", timeout=60_000)
    for node in ("send-sms-welcome_a", "send-sms-welcome_b"):
        expect(page.locator(f'#preview-diagram g.node[data-node-id="{node}"]')).to_have_attribute("data-hits", "1")
    expect(page.locator('#preview-diagram g.node[data-node-id="send-sms-thanks"]')).to_have_attribute("data-hits", "2")

    # a bad event line is said at once, nothing is run
    page.get_by_label("Events, one a line").fill("order_paid")
    page.locator("#try-form").get_by_role("button", name="Run").click()
    expect(page.locator("#try-state")).to_contain_text("write each event as")
    assert page.console_errors == []  # type: ignore[attr-defined]


def test_who_an_audience_journey_would_enter_now(live: LiveStack, page: Any) -> None:
    """Users tagged through the API; the editor counts and lists who the
    audience selects now, starting nothing."""
    import httpx

    from tests.console.conftest import WRITE, unique

    tag = unique("vip").replace("-", "_")
    members = [unique("m") for _ in range(3)]
    with httpx.Client(base_url=live.url, auth=(WRITE, ""), timeout=30) as seg:
        for i, m in enumerate(members):
            r = seg.post("/v1/identify", json={"userId": m, "traits": {"phone": f"1380000710{i}"}})
            assert r.status_code == 200, r.text
    with httpx.Client(base_url=live.url, headers={"Authorization": f"Bearer {ADMIN}"}, timeout=30) as api:
        for m in members[:2]:
            found = api.get("/v1/users/lookup", params={"kind": "member_id", "value": m})
            assert found.status_code == 200, found.text
            r = api.post(f"/v1/users/{found.json()['user_id']}/tags", json={"tags": [tag]})
            assert r.status_code == 200, r.text
    page.goto(live.url + "/console/editor")
    page.get_by_label("API key").fill(ADMIN)
    page.get_by_label("API key").press("Enter")
    page.wait_for_url(re.compile(r"/console/editor$"))
    page.locator("#source").fill(
        f'journey "周末推送"\n  entry audience where tag {tag} every day at 10:00\n  send sms "hi"\n'
    )
    expect(page.locator("#check-state")).to_have_text(re.compile("No errors"))
    page.get_by_role("button", name="Who would enter now").click()
    expect(page.locator("#audience-count")).to_contain_text("2 users would enter now")
    expect(page.locator("#audience-out ul.audience-sample li")).to_have_count(2)
    assert page.console_errors == []  # type: ignore[attr-defined]
