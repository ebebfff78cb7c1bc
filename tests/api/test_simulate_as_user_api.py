"""``POST /v1/journeys/simulate`` with ``as_user``: a viewer previews a real
user's path on a store seeded through the engine's own ingest functions;
the answer says what was copied (kinds and counts, no values), the store is
left as it was, the user's personal data is in no log line, and an unknown
user is a 404 before any simulation starts."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio

from api.app import create_app
from api.routes import simulate as route
from dsl import compile_source
from engine import catalog
from tests.api.conftest import VIEWER, auth, make_settings
from tests.simulate.as_user_world import JOURNEY, NAME, PHONE, QUIET, VIP, RealWorld, row_counts, seed


@pytest_asyncio.fixture
async def api(tmp_path: Path) -> AsyncIterator[tuple[httpx.AsyncClient, RealWorld]]:
    real = seed(tmp_path)
    settings = make_settings(tmp_path, "simulate-as-user", log_level="DEBUG").model_copy(
        update={"database_url": real.url, "cap_per_day": 2, "cap_per_week": 5}  # the service's caps
    )
    app = create_app(settings, store=real.store)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://api") as http:
        yield http, real
    real.store.dispose()


def _no_server(*args: Any) -> Any:
    raise AssertionError("a refused request must not start a simulation")


async def test_a_viewer_previews_a_real_users_path(api, caplog: pytest.LogCaptureFixture) -> None:
    http, real = api
    ir = compile_source(JOURNEY, "preview")
    catalog.publish(
        real.store, "preview", name=ir.name, source=JOURNEY, ir=ir.model_dump(mode="json"), hash=ir.content_hash()
    )
    before = row_counts(real.store)
    caplog.set_level(logging.DEBUG)
    r = await http.post("/v1/journeys/simulate", json={"journey_id": "preview", "as_user": VIP}, headers=auth(VIEWER))
    assert r.status_code == 200, r.text
    result = r.json()
    (case,) = result["cases"]
    assert [(m["template"], m["channel"], m["status"]) for m in case["messages"]] == [("vip_thanks", "sms", "sent")]
    copied = result["as_user"]
    assert (copied["user_id"], copied["identities"], copied["opted_out"]) == (
        VIP,
        ["phone", "wecom_external_userid"],
        ["wecom"],
    )
    assert (copied["tags"], copied["events"], copied["stage"]) == (1, 1, "paying")
    assert result["text"].startswith(f"a copy of user {VIP}: identities phone, wecom_external_userid")

    r = await http.post("/v1/journeys/simulate", json={"source": JOURNEY, "as_user": QUIET}, headers=auth(VIEWER))
    assert r.status_code == 200, r.text
    (case,) = r.json()["cases"]
    assert [(m["template"], m["status"]) for m in case["messages"]] == [("winback", "suppressed")]  # the server's cap
    assert r.json()["as_user"]["recent_sends"] == 2
    assert row_counts(real.store) == before  # nothing written to the real store
    # Ours at any level, anyone's from INFO up (the Temporal SDK's DEBUG lines dump
    # every run's payloads, real or simulated: a debugging switch, not a log).
    lines = [r.getMessage() for r in caplog.records if r.name.startswith("journeys") or r.levelno >= logging.INFO]
    assert any("/v1/journeys/simulate" in line for line in lines), "the capture saw the request's log lines"
    assert not [line for line in lines if PHONE in line or NAME in line or "13800000070" in line]


@pytest.mark.parametrize(
    ("extra", "status", "words"),
    [
        ({"as_user": "nobody"}, 404, "user 'nobody' not found"),
        ({"as_user": VIP, "user": {"id": "u1"}}, 422, "without user or cases"),
        ({"as_user": VIP, "cases": [{"name": "x"}]}, 422, "without user or cases"),
        ({"as_user": "has space"}, 422, "as_user"),
        ({"as_user": VIP, "source": "journey x\n"}, 422, "the journey has"),
    ],
    ids=lambda v: str(v)[:30],
)
async def test_refused_before_a_server_starts(api, monkeypatch: pytest.MonkeyPatch, extra, status, words) -> None:
    http, _ = api
    monkeypatch.setattr(route, "_run", _no_server)
    r = await http.post("/v1/journeys/simulate", json={"source": JOURNEY, **extra}, headers=auth(VIEWER))
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    assert words in r.text
