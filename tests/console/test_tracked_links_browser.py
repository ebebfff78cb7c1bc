"""A tracked link clicked in headless Chromium: a journey sends a message
with a tracked link (the real service: Temporal dev server, worker, outbox
channels, SQLite, uvicorn), the message's text is shown on a page, the
browser clicks the link and lands on the link's page through the redirect;
the click is the user's ``message_clicked`` with the link's tags, and the
journey page's variants table shows it beside the conversions."""

from __future__ import annotations

import re
from collections.abc import Iterator
from html import escape
from typing import Any

import httpx
import pytest
from playwright.sync_api import expect
from sqlalchemy import select

from engine.channels.outbox import OutboxProvider
from engine.store.models import Delivery, Event, Tag
from tests.console.conftest import ADMIN, WRITE, LiveStack, shot, unique

SECRET = "browser-click-test-secret-0123456789"


def _outbox(stack: LiveStack) -> OutboxProvider:
    provider = stack.activities.providers["webhook"]
    assert isinstance(provider, OutboxProvider)
    return provider


@pytest.fixture(scope="module")
def linked(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveStack]:
    """The console's live stack with tracked links configured: their base is
    the server's own address."""
    stack = LiveStack(
        tmp_path_factory.mktemp("links-live"), settings_for=lambda url: {"link_secret": SECRET, "link_base_url": url}
    )
    stack.start()
    try:
        yield stack
    finally:
        stack.stop()


def _login(page: Any, stack: LiveStack, path: str) -> None:
    page.goto(stack.url + path)
    expect(page).to_have_url(re.compile(r"/console/login\?next="))
    page.get_by_label("API key").fill(ADMIN)
    page.get_by_label("API key").press("Enter")
    page.wait_for_url(re.compile(re.escape(path) + r"(\?.*)?$"))


def test_a_tracked_link_clicked_in_the_browser_redirects_and_counts(linked: LiveStack, page: Any) -> None:
    assert linked.store is not None
    jid, tpl, member = unique("clicks"), unique("tpl").replace("-", "_"), unique("m")
    landing = linked.url + "/console/login"  # any page of ours will do as the shop's
    source = f'journey "点击测试"\n  entry api\n  split:\n    100% A: send webhook "{tpl}"\n'
    body = f'新品上架，点这里看 {{{{ track("{landing}", tags=["skincare"], name="serum") }}}} 回T退订'
    with httpx.Client(base_url=linked.url, headers={"Authorization": f"Bearer {ADMIN}"}, timeout=30) as api:
        assert api.put(f"/v1/templates/{tpl}", json={"body": body}).status_code in (200, 201)
        assert api.post("/v1/journeys", json={"id": jid, "source": source}).status_code == 201
        assert api.post("/v1/identify", json={"userId": member}, auth=(WRITE, "")).status_code == 200
        found = api.get("/v1/users/lookup", params={"kind": "member_id", "value": member})
        uid = found.json()["user_id"]
        assert api.post(f"/v1/journeys/{jid}/runs", json={"user_ids": [uid]}).status_code == 202
        key = None
        for _ in range(300):
            with linked.store.read() as s:
                key = s.scalar(
                    select(Delivery.idempotency_key).where(Delivery.journey_id == jid, Delivery.status == "sent")
                )
            if key:
                break
            page.wait_for_timeout(100)
        assert key, "the message was not sent"
    (message,) = [m for m in _outbox(linked).outbox.messages("webhook") if m.idempotency_key == key]
    link = next(word for word in message.body.split() if "/r/" in word)
    assert link.startswith(linked.url + "/r/") and landing not in message.body

    # the message as the user sees it, the link made clickable as a chat app does
    html = escape(message.body).replace(escape(link), f'<a id="the-link" href="{escape(link)}">{escape(link)}</a>')
    page.set_content(f'<html><body><p id="message">{html}</p></body></html>')
    with page.expect_navigation(url=re.compile(re.escape(landing) + "$")):
        page.locator("#the-link").click()
    expect(page).to_have_url(landing)
    with linked.store.read() as s:
        clicks = s.scalars(select(Event).where(Event.user_id == uid, Event.name == "message_clicked")).all()
        tags = dict(s.execute(select(Tag.tag, Tag.source).where(Tag.user_id == uid)).all())
    assert len(clicks) == 1 and clicks[0].properties["link"] == landing
    assert clicks[0].properties["link_name"] == "serum" and clicks[0].properties["variant"] == "A"
    assert tags.get("skincare") == "link_click"

    _login(page, linked, f"/console/journeys/{jid}")
    row = page.locator('#variants tr[data-variant="A"]')
    expect(row.locator('[data-key="clicks"]')).to_have_text("1")
    expect(row.locator('[data-key="click_rate"]')).to_have_text(re.compile(r"^100(\.0)?%$"))
    shot(page, "tracked-link-clicks")
    assert page.console_errors == [], page.console_errors
