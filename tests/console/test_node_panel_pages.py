"""The node panel's "More …" buttons and the journey page's note on kept
counts, in headless Chromium.

A node 100k runs wait at is listed a page at a time (``view.PANEL_LIMIT``);
the panel asks the next page by the cursor the last one gave and appends it,
until the last page, where the button goes. A big journey's counts are kept
and recounted in the background (``engine.count_cache``); the page says how
old they are then, and nothing when they were counted for the answer.

Most of this needs no Temporal: ``store_stack`` serves the API app without a
client (who waits then comes from the store, seeded as ``tests.api.many_runs``
does). One test walks visibility's own pages on the full ``live`` stack.
"""

from __future__ import annotations

import re
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi.testclient import TestClient
from playwright.sync_api import expect

from api.app import create_app
from api.console import view
from engine import count_cache, stats
from engine.store import Store
from tests.api.many_runs import seed_waiting
from tests.console.conftest import ADMIN, LiveStack, make_settings, shot, unique
from tests.console.test_console_pages import deploy, login

SOURCE = 'journey "分页 {tag}"\n  entry api\n  send sms "t"\n  wait 7d\n  send sms "t"\n'
SEND, WAIT = "send-sms-t", "wait-7d"  # the diagram's ids of SOURCE's first send and its wait
N = 120  # runs seeded: 108 wait (every tenth has moved on), 120 deliveries: three pages of 50 each
WAITING = [f"u{i:04d}" for i in range(N) if i % 10]


@dataclass
class StoreStack:
    """The API app on uvicorn in a thread, SQLite, no Temporal."""

    url: str
    store: Store
    server: uvicorn.Server
    thread: threading.Thread

    def api(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, headers={"Authorization": f"Bearer {ADMIN}"}, timeout=30)

    def journey(self, runs: int = N) -> str:
        """A deployed journey with ``runs`` seeded runs; its id."""
        journey_id = unique("paged")
        with self.api() as api:
            r = api.post("/v1/journeys", json={"id": journey_id, "source": SOURCE.format(tag=journey_id)})
            assert r.status_code == 201, r.text
        seed_waiting(self.store, journey_id, runs, send=SEND, wait=WAIT)
        return journey_id


@pytest.fixture(scope="module")
def store_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StoreStack]:
    settings = make_settings(tmp_path_factory.mktemp("panel-pages"))
    store = Store(settings.database_url)
    store.migrate()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    server = uvicorn.Server(uvicorn.Config(create_app(settings, store=store), log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name="panel-pages-api", daemon=True)
    thread.start()
    for _ in range(600):
        if server.started or not thread.is_alive():
            break
        threading.Event().wait(0.05)
    assert server.started, "uvicorn did not start"
    try:
        yield StoreStack(url, store, server, thread)
    finally:
        server.should_exit = True
        thread.join(30)
        store.dispose()


def _login(page: Any, url: str, path: str) -> None:
    page.goto(url + path)
    expect(page).to_have_url(re.compile(r"/console/login\?next="))
    page.get_by_label("API key").fill(ADMIN)
    page.get_by_label("API key").press("Enter")
    page.wait_for_url(re.compile(re.escape(path) + r"(\?.*)?$"))


def _open(page: Any, node_id: str) -> None:
    page.locator(f'#diagram g.node[data-node-id="{node_id}"]').click()
    expect(page.locator("#node-panel h2")).to_have_attribute("data-node-id", node_id)


# ---------------------------------------------------------------- in the browser


def test_more_waiting_users_page_by_page_until_the_last(store_stack: StoreStack, page: Any) -> None:
    journey_id = store_stack.journey()
    _login(page, store_stack.url, f"/console/journeys/{journey_id}")
    _open(page, WAIT)
    head = page.locator('#node-panel [data-list-head="waiting"]')
    users = page.locator("#node-panel ul.waiting li")
    more = page.get_by_role("button", name="More waiting users")
    expect(head).to_have_text(f"Waiting here now ({view.PANEL_LIMIT} shown)")
    expect(users).to_have_count(view.PANEL_LIMIT)
    more.click()
    expect(users).to_have_count(2 * view.PANEL_LIMIT)
    expect(head).to_have_text(f"Waiting here now ({2 * view.PANEL_LIMIT} shown)")
    expect(more).to_be_focused()  # still there: Enter asks the next page
    more.scroll_into_view_if_needed()
    shot(page, "node-panel-more-waiting", full_page=False)
    more.click()
    expect(users).to_have_count(len(WAITING))
    expect(head).to_have_text(f"Waiting here now ({len(WAITING)})")
    expect(more).to_have_count(0)  # the last page: nothing more to ask for
    # the button went: the keyboard carries on at the first user the last page added
    expect(users.nth(2 * view.PANEL_LIMIT).locator("a")).to_be_focused()
    listed = users.all_inner_texts()
    assert sorted(listed) == WAITING  # each waiting user once, none lost between pages
    expect(users.first.locator("a")).to_have_attribute("href", re.compile(r"^/console/users/u\d{4}$"))
    expect(page.get_by_role("button", name="More deliveries")).to_have_count(0)  # a wait sends nothing
    expect(page.locator('#node-panel [data-list="deliveries"]')).to_contain_text("No messages from this step.")
    assert page.console_errors == [], page.console_errors


def test_more_deliveries_newest_first_until_the_last(store_stack: StoreStack, page: Any) -> None:
    journey_id = store_stack.journey()
    _login(page, store_stack.url, f"/console/journeys/{journey_id}")
    _open(page, SEND)
    head = page.locator('#node-panel [data-list-head="deliveries"]')
    rows = page.locator("#node-panel table.deliveries tbody tr")
    more = page.get_by_role("button", name="More deliveries")
    expect(head).to_have_text(f"Deliveries ({view.PANEL_LIMIT} shown)")
    expect(page.locator('#node-panel [data-list-head="waiting"]')).to_have_text("Waiting here now (0)")
    expect(page.locator('#node-panel [data-list="waiting"]')).to_contain_text("Nobody.")
    for pages in (2, 3):
        more.click()
        expect(rows).to_have_count(min(N, pages * view.PANEL_LIMIT))
    expect(head).to_have_text(f"Deliveries ({N})")
    expect(more).to_have_count(0)
    users = page.locator("#node-panel table.deliveries tbody tr td:nth-child(2)").all_inner_texts()
    assert users == [f"u{i:04d}" for i in reversed(range(N))]  # newest first across pages, none twice
    # another step and back: the panel starts again at the first page
    _open(page, WAIT)
    _open(page, SEND)
    expect(rows).to_have_count(view.PANEL_LIMIT)
    expect(more).to_be_enabled()
    assert page.console_errors == [], page.console_errors


def test_one_page_has_no_more_button(store_stack: StoreStack, page: Any) -> None:
    journey_id = store_stack.journey(runs=7)
    _login(page, store_stack.url, f"/console/journeys/{journey_id}")
    _open(page, WAIT)
    expect(page.locator('#node-panel [data-list-head="waiting"]')).to_have_text("Waiting here now (6)")
    expect(page.locator("#node-panel button.more")).to_have_count(0)
    _open(page, SEND)
    expect(page.locator('#node-panel [data-list-head="deliveries"]')).to_have_text("Deliveries (7)")
    expect(page.locator("#node-panel button.more")).to_have_count(0)
    assert page.console_errors == [], page.console_errors


def test_kept_counts_say_how_old_they_are(store_stack: StoreStack, page: Any) -> None:
    journey_id = store_stack.journey(runs=30)
    _login(page, store_stack.url, f"/console/journeys/{journey_id}")
    root, note = page.locator("#journey"), page.locator("#counts-age")
    expect(page.locator('[data-summary="entered"]')).to_have_text("30")
    polls = int(root.get_attribute("data-polls") or 0)
    expect(root).not_to_have_attribute("data-polls", str(polls), timeout=20_000)  # another answer came
    expect(note).to_be_hidden()  # counted for each answer: nothing to say
    with pytest.MonkeyPatch.context() as mp:
        # every count is "expensive": kept, served as kept, recounted in the background
        mp.setattr(count_cache, "EXPENSIVE", 0.0)
        mp.setattr(count_cache, "EXPENSIVE_CPU", 0.0)
        expect(note).to_be_visible(timeout=20_000)
        expect(note).to_have_text(re.compile(r"^Counts as of \d+ s ago: this journey is big"))
        shot(page, "journey-counts-age")
    # cheap again: the next recount (engine.count_cache.MIN_AGE after the last) is not kept
    expect(note).to_be_hidden(timeout=30_000)
    assert page.console_errors == [], page.console_errors


def test_a_big_journey_counted_for_the_first_time_says_so(store_stack: StoreStack, page: Any) -> None:
    """A journey that grew big unwatched: the stats answer 503 "counting"
    while its first counts go on in the background, and the page says the
    numbers are being counted (not that they "could not be refreshed"),
    then shows them."""
    journey_id = store_stack.journey(runs=30)
    gate = threading.Event()
    counted = stats._journey_summary

    def slow_summary(*args: Any) -> Any:
        gate.wait(30)
        return counted(*args)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(stats, "BIG_RUNS", 30)
        mp.setattr(stats, "_journey_summary", slow_summary)
        _login(page, store_stack.url, f"/console/journeys/{journey_id}")
        state = page.locator("#live-state")
        expect(state).to_have_text(re.compile(r"^Counting this journey's numbers for the first time"), timeout=20_000)
        shot(page, "journey-counting-first-time")
        gate.set()
        expect(page.locator('[data-summary="entered"]')).to_have_text("30", timeout=20_000)
        expect(state).to_contain_text("Live")
    assert page.console_errors == [], page.console_errors


def test_visibility_pages_of_who_waits(live: LiveStack, page: Any) -> None:
    """With Temporal, who waits comes from visibility with its own page
    token in the cursor; a page size of 2 (the page's ``data-panel-limit``)
    walks five real waiting runs in three pages."""
    journey_id, users = unique("vis-paged"), sorted(unique("u") for _ in range(5))
    with httpx.Client(base_url=live.url, headers={"Authorization": f"Bearer {ADMIN}"}, timeout=30) as api:
        r = api.post("/v1/journeys", json={"id": journey_id, "source": SOURCE.format(tag=journey_id)})
        assert r.status_code == 201, r.text
        assert api.post(f"/v1/journeys/{journey_id}/runs", json={"user_ids": users}).status_code == 202
        for _ in range(300):  # each run upserts the step it waits at; visibility catches up
            rows = api.get(f"/v1/journeys/{journey_id}/stats").json()["nodes"]
            if next(r["waiting"] for r in rows if r["node_id"] == WAIT) == len(users):
                break
            page.wait_for_timeout(100)
        else:
            pytest.fail("the runs never showed as waiting in visibility")
    _login(page, live.url, f"/console/journeys/{journey_id}")
    page.locator("#journey").evaluate("(root) => { root.dataset.panelLimit = '2'; }")
    _open(page, WAIT)
    head, listed = page.locator('#node-panel [data-list-head="waiting"]'), page.locator("#node-panel ul.waiting li")
    more = page.get_by_role("button", name="More waiting users")
    expect(head).to_have_text("Waiting here now (2 shown)")
    more.click()
    expect(head).to_have_text("Waiting here now (4 shown)")
    more.click()
    expect(head).to_have_text("Waiting here now (5)")
    expect(more).to_have_count(0)
    assert sorted(listed.all_inner_texts()) == users
    assert page.console_errors == [], page.console_errors


# ---------------------------------------------------------------- over HTTP


@pytest.fixture
def http(tmp_path: Path) -> Iterator[TestClient]:
    settings = make_settings(tmp_path)
    store = Store(settings.database_url)
    store.migrate()
    with TestClient(create_app(settings, store=store), base_url="http://console.test") as client:
        deploy(client, SOURCE.format(tag="http"), "paged")
        login(client)
        yield client
    store.dispose()


def test_the_journey_page_carries_the_panel_page_size_and_a_hidden_counts_note(http: TestClient) -> None:
    r = http.get("/console/journeys/paged")
    assert r.status_code == 200, r.text
    assert f'data-panel-limit="{view.PANEL_LIMIT}"' in r.text
    assert re.search(r'<p class="small counts-age" id="counts-age"[^>]* hidden></p>', r.text)
