"""The simulation API's step bound: a journey looping every minute for
months is stopped with a 422 that names the case, its most visited step and
how far the clock got, long before the wall bound; a simulation that ends
over the bound is refused all the same (the count is taken again at the
end), and the slot is given back either way."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
import pytest_asyncio

from api.app import create_app
from api.routes import simulate as route
from engine.store import Store
from tests.api.conftest import VIEWER, auth, make_settings

LOOP = """\
journey "fast loop"
  entry api
  label tick
  wait 1m
  goto tick
"""
SHORT = """\
journey "short"
  entry api
  send sms "a"
  wait 1h
  send sms "b"
"""


@pytest_asyncio.fixture
async def http(tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    settings = make_settings(tmp_path, "simulate-steps", log_level="WARNING")
    store = Store(settings.database_url)
    store.migrate()
    app = create_app(settings, store=store)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app, raise_app_exceptions=False), base_url="http://api"
    ) as client:
        yield client
    store.dispose()


async def test_a_fast_loop_is_stopped_with_where_it_loops(http, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(route, "MAX_STEPS", 150)  # the real bound takes ~30 s of looping to reach
    body = {"source": LOOP, "for": "180d", "cases": [{"name": "ticker"}, {"name": "other"}]}
    r = await http.post("/v1/journeys/simulate", json=body, headers=auth(VIEWER))
    assert r.status_code == 422, r.text
    problem = r.json()
    assert problem["type"].endswith("simulation-too-many-steps") and problem["max_steps"] == 150
    detail = problem["detail"]
    assert re.search(r"took over 150 steps by \+\S+ of 180d \(case '(ticker|other)': \d+, \d+ of them at ", detail)
    assert re.search(r"at (tick|wait-1m|goto-tick)\)", detail) and "wait longer in the loop" in detail
    assert route.SLOTS.busy == 0


async def test_ending_over_the_bound_is_refused_too(http, monkeypatch: pytest.MonkeyPatch) -> None:
    body = {"source": SHORT, "user": {"identities": {"phone": "13800000001"}}, "world": {"cap_per_day": None}}
    r = await http.post("/v1/journeys/simulate", json=body, headers=auth(VIEWER))
    assert r.status_code == 200, r.text
    steps = sum(len(c["timeline"]) for c in r.json()["cases"])
    monkeypatch.setattr(route, "MAX_STEPS", 2)
    r = await http.post("/v1/journeys/simulate", json=body, headers=auth(VIEWER))
    assert r.status_code == 422, r.text
    assert "took over 2 steps" in r.json()["detail"] and steps > 2
    assert route.SLOTS.busy == 0
