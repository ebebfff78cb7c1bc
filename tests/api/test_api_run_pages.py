"""``GET /v1/journeys/{id}/runs``: a journey's runs a bounded page at a time
with a cursor, so a journey with 100k runs waiting is never answered whole.
No Temporal needed: the runs come from the store."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
import pytest_asyncio

from api.app import create_app
from engine import run_pages
from engine.store import Store
from tests.api.conftest import auth, make_settings
from tests.api.many_runs import seed_waiting

SOURCE = """journey "paged"
  entry api
  send sms "t"
  wait 7d
  send sms "t"
"""
N = 1200  # more than two of the largest pages


@pytest_asyncio.fixture
async def http(tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    settings = make_settings(tmp_path, "nowhere")
    store = Store(settings.database_url)
    store.migrate()
    app = create_app(settings, store=store)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api") as client:
        r = await client.post("/v1/journeys", json={"source": SOURCE, "id": "paged"}, headers=auth())
        assert r.status_code == 201, r.text
        seed_waiting(store, "paged", N)
        yield client
    store.dispose()


async def pages(http: httpx.AsyncClient, **params: object) -> list[list[str]]:
    out, cursor = [], None
    while True:
        query = {**params, **({"cursor": cursor} if cursor else {})}
        r = await http.get("/v1/journeys/paged/runs", params=query, headers=auth())
        assert r.status_code == 200, r.text
        body = r.json()
        out.append([run["user_id"] for run in body["runs"]])
        cursor = body["next_cursor"]
        if cursor is None:
            return out


async def test_every_run_once_a_bounded_page_at_a_time(http: httpx.AsyncClient) -> None:
    found = await pages(http, limit=run_pages.MAX_PAGE)
    assert [len(p) for p in found] == [500, 500, 200]
    users = [u for p in found for u in p]
    assert users == [f"u{i:04d}" for i in reversed(range(N))]  # by user, descending: none twice, none lost
    first = (await http.get("/v1/journeys/paged/runs", headers=auth())).json()
    assert len(first["runs"]) == 50 and first["next_cursor"]  # the default page is small


async def test_runs_that_reached_a_node_and_open_ones(http: httpx.AsyncClient) -> None:
    at_wait = [u for p in await pages(http, node="wait-x", limit=400) for u in p]
    assert len(at_wait) == N
    nowhere = (await http.get("/v1/journeys/paged/runs", params={"node": "nowhere"}, headers=auth())).json()
    assert nowhere == {"journey_id": "paged", "runs": [], "next_cursor": None}
    assert len([u for p in await pages(http, open="true", limit=500) for u in p]) == N


@pytest.mark.parametrize(
    "query",
    [
        {"limit": 501},  # the whole list cannot be asked for
        {"limit": 100_000},
        {"limit": 0},
        {"limit": "all"},
        {"cursor": "abc"},
        {"cursor": "0"},
        {"cursor": "1" * 30},
        {"version": 0},
        {"cursor": run_pages.encode_cursor({"u": 1, "r": "x"})},  # a cursor no page gave
    ],
)
async def test_bad_page_values_are_422(http: httpx.AsyncClient, query: dict[str, object]) -> None:
    r = await http.get("/v1/journeys/paged/runs", params=query, headers=auth())
    assert r.status_code == 422, r.text


async def test_unknown_journey_is_404(http: httpx.AsyncClient) -> None:
    assert (await http.get("/v1/journeys/nope/runs", headers=auth())).status_code == 404
