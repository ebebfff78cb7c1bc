"""A user's lists a page at a time (issue 15: a store at a million users):
the runs by ``engine.queries.user_runs_page``, paged as the timeline is, on
SQLite and PostgreSQL; the API's runs and timeline routes and the console
user page with their ``until`` links and bounded ``limit``s (4xx, never a 500)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from pathlib import Path

import httpx
import pytest
import pytest_asyncio
from sqlalchemy import insert

from api.app import create_app
from api.console.auth import COOKIE_NAME
from api.console.user_pages import RUNS_PAGE
from engine import queries
from engine.events import link_identities
from engine.store import Store
from engine.store.models import Event, Run
from tests.api.conftest import ADMIN, auth, make_settings
from tests.engine.engine_support import NOW


def seed_runs(store: Store, uid: str, n: int, *, same_instant_every: int = 7) -> None:
    """``n`` runs a minute apart, but every ``same_instant_every``-th pair
    entered at one instant (a page must not split them)."""

    def at(i: int) -> datetime:
        return NOW - timedelta(minutes=i - (1 if i % same_instant_every == 1 else 0))

    rows = [
        {
            "run_key": f"journey:j{i % 3}:{uid}:r{i}",
            "journey_id": f"j{i % 3}",
            "version": 1,
            "user_id": uid,
            "admitted": True,
            "entered_at": at(i),
        }
        for i in range(n)
    ]
    store.transact(lambda s: s.execute(insert(Run), rows))


def walk(store: Store, uid: str, limit: int) -> list[list[str]]:
    pages, until = [], None
    while True:
        runs, until = queries.user_runs_page(store, uid, limit=limit, until=until)
        pages.append([r.run_key for r in runs])
        if until is None:
            return pages


def test_a_users_runs_a_page_at_a_time_none_lost_none_twice_newest_first(store: Store) -> None:
    uid = link_identities(store, [("phone", "13800000077")])
    seed_runs(store, uid, 95)
    pages = walk(store, uid, 10)
    keys = [k for page in pages for k in page]
    assert sorted(keys) == sorted(f"journey:j{i % 3}:{uid}:r{i}" for i in range(95))
    assert len(keys) == len(set(keys))
    assert all(0 < len(p) <= 10 for p in pages) and len(pages) >= 10
    entered = {r.run_key: r.entered_at for r in queries.user_runs_page(store, uid, limit=200)[0]}
    assert [entered[k] for k in keys] == sorted(entered.values(), reverse=True)
    assert queries.user_runs(store, uid, limit=5) == queries.user_runs_page(store, uid, limit=5)[0]


def test_more_runs_at_one_instant_than_a_page_come_whole_on_their_own_page(store: Store) -> None:
    uid = link_identities(store, [("phone", "13800000078")])
    seed_runs(store, uid, 12, same_instant_every=10**9)  # a minute apart
    rows = [
        {
            "run_key": f"journey:b:{uid}:r{i}",
            "journey_id": "b",
            "version": 1,
            "user_id": uid,
            "admitted": True,
            "entered_at": NOW + timedelta(hours=1),
        }
        for i in range(5)
    ]
    store.transact(lambda s: s.execute(insert(Run), rows))
    first, older = queries.user_runs_page(store, uid, limit=3)
    assert sorted(r.run_key for r in first) == sorted(row["run_key"] for row in rows)
    assert older is not None
    assert len([k for page in walk(store, uid, 3) for k in page]) == 17


@pytest_asyncio.fixture
async def http(tmp_path: Path) -> AsyncIterator[tuple[httpx.AsyncClient, Store, str]]:
    settings = make_settings(tmp_path, "nowhere", log_level="WARNING")
    store = Store(settings.database_url)
    store.migrate()
    uid = link_identities(store, [("phone", "13800000079")])
    seed_runs(store, uid, RUNS_PAGE + 20, same_instant_every=10**9)
    events = [
        {
            "id": f"e{i}",
            "user_id": uid,
            "name": "viewed",
            "properties": {},
            "occurred_at": NOW - timedelta(minutes=i),
            "received_at": NOW - timedelta(minutes=i),
            "dispatched_at": NOW,
        }
        for i in range(450)
    ]
    store.transact(lambda s: s.execute(insert(Event), events))
    app = create_app(settings, store=store)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api") as client:
        yield client, store, uid
    store.dispose()


async def follow(client: httpx.AsyncClient, url: str) -> list[list[dict[str, object]]]:
    pages = []
    while url:
        r = await client.get(url, headers=auth())
        assert r.status_code == 200, r.text
        pages.append(r.json())
        link = r.headers.get("Link", "")
        url = link.split(";")[0].strip("<>").removeprefix("http://api") if 'rel="next"' in link else ""
    return pages


async def test_the_api_pages_a_users_runs_and_timeline_by_their_links(
    http: tuple[httpx.AsyncClient, Store, str],
) -> None:
    client, _, uid = http
    runs = await follow(client, f"/v1/users/{uid}/runs?limit=25")
    keys = [r["run_key"] for page in runs for r in page]
    assert len(keys) == len(set(keys)) == RUNS_PAGE + 20 and len(runs) >= 3
    timeline = await follow(client, f"/v1/users/{uid}/timeline?limit=200")
    ids = [i["detail"]["event_id"] for page in timeline for i in page if i["kind"] == "event"]
    assert len(ids) == len(set(ids)) == 450 and len(timeline) == 3


@pytest.mark.parametrize(
    "query",
    [
        "runs?limit=0",
        "runs?limit=1001",
        "runs?limit=x",
        "runs?until=2026-12-01T10:00:00",
        "runs?until=yesterday",
        "timeline?limit=0",
        "timeline?limit=2001",
        "timeline?until=2026-12-01T10:00:00",
    ],
)
async def test_bad_page_parameters_are_a_422_not_a_500(http: tuple[httpx.AsyncClient, Store, str], query: str) -> None:
    client, _, uid = http
    r = await client.get(f"/v1/users/{uid}/{query}", headers=auth())
    assert r.status_code == 422, r.text


async def test_the_console_user_page_shows_a_page_of_runs_with_an_older_link(
    http: tuple[httpx.AsyncClient, Store, str],
) -> None:
    client, _, uid = http
    client.cookies.set(COOKIE_NAME, ADMIN)
    r = await client.get(f"/console/users/{uid}")
    assert r.status_code == 200, r.text
    assert r.text.count('<tr><td><a href="/console/journeys/j') == RUNS_PAGE
    assert 'id="runs-older"' in r.text and 'id="timeline-older"' in r.text
    older = r.text.split('id="runs-older" href="')[1].split('"')[0].replace("&amp;", "&")
    r = await client.get(older)
    assert r.status_code == 200, r.text
    assert r.text.count('<tr><td><a href="/console/journeys/j') == 20
    assert 'id="runs-older"' not in r.text and "← Newest" in r.text
    r = await client.get(f"/console/users/{uid}?runs_until=soon")
    assert r.status_code == 422
