"""``POST /v1/journeys/edit``: a diagram edit applied to the text, answered
with the new text, its diagnostics, the diagram and the undo — and every edit
the server cannot make is a 4xx that says why, never a 500. No Temporal."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio

from api.app import create_app
from api.schemas import API_SOURCE_CHARS
from engine.store import Store
from tests.api.conftest import VIEWER, auth, make_settings

SOURCE = (Path(__file__).parents[2] / "journeys" / "01_new_user_first_order.journey").read_text(encoding="utf-8")


@pytest_asyncio.fixture
async def http(tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    settings = make_settings(tmp_path, "nowhere")
    store = Store(settings.database_url)
    store.migrate()
    app = create_app(settings, store=store)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
        yield client
    store.dispose()


async def _edit(http: httpx.AsyncClient, edit: Any, source: str = SOURCE, key: str = VIEWER) -> httpx.Response:
    return await http.post("/v1/journeys/edit", json={"source": source, "edit": edit}, headers=auth(key))


async def test_an_edit_answers_text_diagnostics_diagram_and_its_undo(http: httpx.AsyncClient) -> None:
    r = await _edit(http, {"op": "replace_step", "node": "wait-1d", "step": {"kind": "wait", "seconds": 7200}})
    assert r.status_code == 200, r.text
    body = r.json()
    assert "  wait 2h\n" in body["source"] and "# 看了没买" in body["source"]  # a viewer may edit; comments stay
    checked = (await http.post("/v1/journeys/check", json={"source": body["source"]}, headers=auth(VIEWER))).json()
    assert body["ok"] is checked["ok"] is True and body["diagnostics"] == checked["errors"]  # as /check says
    assert body["svg"] == checked["svg"]
    assert body["changed_lines"] == [16, 16]
    assert 'data-node-id="wait-2h"' in body["svg"] and 'data-node-id="wait-1d"' not in body["svg"]
    steps = {s["id"]: s for s in body["outline"]["steps"]}
    assert steps["wait-2h"]["kind"] == "wait" and steps["wait-2h"]["line"] == 16
    assert steps["send-wecom-sorry_no_coupon"]["parent"] == "coupon-new_user_10"
    assert steps["send-wecom-sorry_no_coupon"]["block"] == "out_of_stock"

    undone = await _edit(http, body["inverse"], body["source"])
    assert undone.status_code == 200, undone.text
    assert undone.json()["source"] == SOURCE


async def test_an_edit_that_breaks_a_rule_answers_the_diagnostics(http: httpx.AsyncClient) -> None:
    r = await _edit(http, {"op": "insert_step", "position": {"after": "wait-1d"}, "text": "goto 没有这个标签"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["ok"] is False
    assert any(d["line"] == 17 and d["code"] == "E220" for d in body["diagnostics"]), body["diagnostics"]


async def test_the_outline_of_a_text(http: httpx.AsyncClient) -> None:
    r = await http.post("/v1/journeys/outline", json={"source": SOURCE}, headers=auth(VIEWER))
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["journey"]["name"] == "new-user first order"
    ids = [s["id"] for s in body["steps"]]
    assert ids[:3] == ["send-wecom-welcome_coupon", "coupon-new_user_10", "send-wecom-sorry_no_coupon"]
    coupon = next(s for s in body["steps"] if s["id"] == "coupon-new_user_10")
    assert coupon["blocks"] == ["out_of_stock"] and coupon["step"]["pool"] == "new_user_10"
    branching = next(s for s in body["steps"] if s["id"] == "if-visited")
    assert branching["conds"] == ["tag visited and not tag ordered"]
    assert branching["step"]["branches"][0]["steps"] == [{"id": "", "kind": "pass"}]  # the shape, not the steps
    assert body["header_lines"]["exits"] == ["exit when event unsubscribed", "exit when tag blacklisted"]
    assert body["header_conds"]["entry"] == ['channel == "wecom_group"']
    assert body["header_conds"]["exits"] == ["", "tag blacklisted"]
    bad = await http.post("/v1/journeys/outline", json={"source": 'journey "x"\n  wait\n'}, headers=auth(VIEWER))
    assert bad.status_code == 422 and bad.json()["errors"][0]["code"] == "source_has_errors"


@pytest.mark.parametrize(
    ("edit", "code", "words"),
    [
        ({"op": "delete_step", "node": "no-such-step"}, "unknown_node", "no-such-step"),
        ({"op": "delete_step", "node": "coupon-new_user_10"}, "not_empty", "force"),
        ({"op": "delete_branch", "node": "wait-event-order_paid", "block": "on_timeout"}, "not_empty", "on_timeout"),
        (
            {"op": "insert_step", "position": {"parent": "wait-1d", "block": "else"}, "text": "exit"},
            "unknown_block",
            "else",
        ),
        ({"op": "replace_step", "node": "wait-1d", "text": "wait for"}, "bad_step", "not a step"),
        (
            {"op": "replace_step", "node": "wait-1d", "step": {"kind": "send", "channels": [], "template": "x"}},
            "bad_step",
            "step",
        ),
        ({"op": "set_header", "field": "entry", "value": {"kind": "nope"}}, "bad_header", "entry"),
        ({"op": "restore_lines", "start": 2, "expect": ["something else"], "lines": []}, "stale", "changed"),
    ],
)
async def test_an_edit_the_server_cannot_make_is_a_422_naming_why(
    http: httpx.AsyncClient, edit: dict[str, Any], code: str, words: str
) -> None:
    r = await _edit(http, edit)
    assert r.status_code == 422, r.text
    body = r.json()
    assert r.headers["content-type"].startswith("application/problem+json")
    assert body["title"] == "Edit refused" and body["errors"][0]["code"] == code
    assert words in body["detail"] and words in body["errors"][0]["message"]


async def test_text_with_syntax_errors_is_refused_with_the_line(http: httpx.AsyncClient) -> None:
    r = await _edit(http, {"op": "delete_step", "node": "wait-1d"}, 'journey "x"\n  wait 1d\n  wait\n')
    assert r.status_code == 422
    assert r.json()["errors"][0]["code"] == "source_has_errors" and "line 3" in r.json()["detail"]


@pytest.mark.parametrize(
    "edit",
    [
        {"op": "frobnicate", "node": "wait-1d"},
        {"node": "wait-1d"},
        {"op": "delete_step"},
        {"op": "delete_step", "node": "wait-1d", "surprise": 1},
        {"op": "set_header", "field": "colour", "value": "red"},
        "delete wait-1d",
    ],
)
async def test_a_malformed_edit_is_a_422_naming_the_field(http: httpx.AsyncClient, edit: Any) -> None:
    r = await _edit(http, edit)
    assert r.status_code == 422, r.text
    body = r.json()
    assert body["type"].endswith("validation-error")
    assert all(e["field"].startswith("body.edit") for e in body["errors"]), body["errors"]


async def test_an_oversize_source_is_refused_before_any_parsing(http: httpx.AsyncClient) -> None:
    big = SOURCE + "#" * (API_SOURCE_CHARS - len(SOURCE) + 1)
    r = await _edit(http, {"op": "delete_step", "node": "wait-1d"}, big)
    assert r.status_code == 422, r.text
    assert r.json()["errors"][0]["field"] == "body.source"
    assert "at most" in r.json()["errors"][0]["message"]

    huge = "#" * 2_100_000  # past the body limit: refused as bytes, never read as JSON
    r = await _edit(http, {"op": "delete_step", "node": "wait-1d"}, huge)
    assert r.status_code == 413, r.text


async def test_no_key_no_edit(http: httpx.AsyncClient) -> None:
    r = await http.post("/v1/journeys/edit", json={"source": SOURCE, "edit": {"op": "delete_step", "node": "wait-1d"}})
    assert r.status_code == 401
