"""The journey page shows goal conversions of runs that had already ended
(``engine.goals``): per variant, in the totals, and in the readouts after a
broadcast. Runs, a broadcast and orders are written to the live stack's store
as the worker and the ingest would have; the page is read in Chromium."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

import httpx
from playwright.sync_api import expect

from contracts.activities import StepRecord
from engine import broadcasts, runs
from engine.events import ingest_event, link_identities
from engine.store import Store
from engine.store.types import utcnow
from tests.console.conftest import ADMIN, LiveStack, shot, unique

SOURCE = """journey "短信召回 {tag}"
  entry api
  reentry always
  goal event order_paid within 3d

  split:
    50% A: send sms "copy_a"
    50% B: send sms "copy_b"
"""


def seed(store: Store, jid: str, broadcast_id: str) -> None:
    """Six runs of one broadcast, ended a second after entering; A's users
    buy two of three, B's one of three, minutes after their run ended."""
    start = utcnow() - timedelta(minutes=20)
    broadcasts.begin(store, broadcast_id, journey_id=jid, version=1, trigger="api", page_size=100, now=start)
    for i, variant in enumerate("AAABBB"):
        at = start + timedelta(minutes=1, seconds=i)
        uid = link_identities(store, {"member_id": f"{jid}-m{i}"}, now=at - timedelta(days=1))
        key = f"journey:{jid}:{uid}:1"
        store.transact(
            lambda s, key=key, uid=uid, at=at: runs.begin(
                s,
                store,
                run_key=key,
                journey_id=jid,
                version=1,
                user_id=uid,
                mode="always",
                cooldown_seconds=None,
                now=at,
                trigger_event={"id": broadcasts.marker(broadcast_id), "name": "audience"},
            )
        )
        split = StepRecord(
            run_key=key,
            seq=1,
            journey_id=jid,
            version=1,
            user_id=uid,
            node_id="split",
            kind="split",
            outcome=f"variant:{variant}",
            variant=variant,
            at=at,
        )
        runs.record_steps(store, [split])
        done = at + timedelta(seconds=1)
        store.transact(
            lambda s, key=key, uid=uid, done=done: runs.end(
                s, run_key=key, journey_id=jid, user_id=uid, outcome="completed", reason=None, now=done
            )
        )
        if i in (0, 1, 3):
            ingest_event(
                store,
                event_id=f"{jid}-paid-{i}",
                name="order_paid",
                user_id=uid,
                occurred_at=done + timedelta(minutes=5),
            )


def test_journey_page_shows_conversions_of_ended_runs(live: LiveStack, page: Any) -> None:
    assert live.store is not None
    jid, tag = unique("recall"), unique("t")
    with httpx.Client(base_url=live.url, headers={"Authorization": f"Bearer {ADMIN}"}, timeout=30) as api:
        r = api.post("/v1/journeys", json={"id": jid, "source": SOURCE.format(tag=tag)})
        assert r.status_code == 201, r.text
    broadcast_id = unique("bc")
    seed(live.store, jid, broadcast_id)

    page.goto(live.url + f"/console/journeys/{jid}")
    expect(page).to_have_url(re.compile(r"/console/login\?next="))
    page.get_by_label("API key").fill(ADMIN)
    page.get_by_label("API key").press("Enter")
    page.wait_for_url(re.compile(rf"/console/journeys/{jid}$"))

    expect(page.locator('[data-summary="converted"]')).to_have_text("3")
    expect(page.locator('[data-summary="conversion_rate"]')).to_have_text("50.0%")
    variants = page.locator("#variants tbody")
    expect(variants.locator('tr[data-variant="A"] td').nth(1)).to_have_text("2")
    expect(variants.locator('tr[data-variant="B"] td').nth(1)).to_have_text("1")
    expect(variants.locator('tr[data-variant="A"]')).to_contain_text("66.7%")

    pick = page.get_by_label("After")
    expect(pick.locator("option")).to_have_count(2)
    pick.select_option(index=1)
    page.get_by_role("button", name="Show readouts").click()
    table = page.locator("#readouts tbody")
    expect(table.locator("tr.readout-total")).to_have_count(3)
    first = table.locator('tr.readout-total[data-offset="3h"]')
    expect(first.locator('[data-key="converted"]')).to_have_text("3")
    expect(first).to_contain_text("(so far)")
    expect(table.locator('tr[data-offset="6h"][data-variant="A"] [data-key="converted"]')).to_have_text("2")
    expect(table.locator('tr[data-offset="6h"][data-variant="B"] [data-key="converted"]')).to_have_text("1")
    shot(page, "11-journey-goal-readouts")

    # the journeys list counts them too
    page.get_by_role("link", name="Journeys", exact=True).click()
    expect(page.locator(f'tr[data-journey-id="{jid}"]')).to_contain_text("50.0%")
    assert page.console_errors == [], page.console_errors
