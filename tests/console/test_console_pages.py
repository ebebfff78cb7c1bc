"""The console's routes without a browser: sign-in, redirects, the cookie
rule for /v1, the check endpoint, and pages rendered with Chinese text.

No Temporal here (the app runs without a client): pages must still render,
with "waiting" numbers left to the live page.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from api.console import view
from api.deps import CONSOLE_HEADER, COOKIE_NAME
from api.settings import ApiSettings
from engine import catalog, identity
from engine.store import Store
from engine.store.models import Delivery, StepRecord
from tests.console.conftest import ADMIN, VIEWER, WRITE, make_settings

CHINESE = """\
journey "双十一召回"
  description "沉默用户短信召回，带优惠券"
  entry api
  reentry once

  send sms "召回文案"
  wait 1d
  send wecom "跟进"
"""


@pytest.fixture
def app_store(tmp_path: Path) -> Iterator[tuple[TestClient, Store, ApiSettings]]:
    settings = make_settings(tmp_path)
    store = Store(settings.database_url)
    store.migrate()
    app = create_app(settings, store=store)
    with TestClient(app, base_url="http://console.test") as client:
        yield client, store, settings
    store.dispose()


@pytest.fixture
def http(app_store: tuple[TestClient, Store, ApiSettings]) -> TestClient:
    return app_store[0]


def login(http: TestClient, key: str = ADMIN) -> None:
    r = http.post("/console/login", data={"key": key, "next": "/console/journeys"}, follow_redirects=False)
    assert r.status_code == 303, r.text


def deploy(http: TestClient, source: str = CHINESE, journey_id: str = "double-11") -> dict:
    r = http.post(
        "/v1/journeys", json={"source": source, "id": journey_id}, headers={"Authorization": f"Bearer {ADMIN}"}
    )
    assert r.status_code == 201, r.text
    return r.json()


# ---------------------------------------------------------------- sign-in


@pytest.mark.parametrize("path", ["/console/journeys", "/console/editor", "/console/users?q=x", "/console/journeys/a"])
def test_pages_redirect_to_login_without_a_key(http: TestClient, path: str) -> None:
    r = http.get(path, follow_redirects=False)
    assert r.status_code == 303
    assert r.headers["location"].startswith("/console/login?next=%2Fconsole%2F")


def test_login_sets_an_httponly_strict_cookie_and_goes_back(http: TestClient) -> None:
    r = http.post("/console/login", data={"key": ADMIN, "next": "/console/editor"}, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/console/editor"
    cookie = r.headers["set-cookie"]
    assert cookie.startswith(f"{COOKIE_NAME}=")
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/" in cookie
    assert http.get("/console/editor").status_code == 200


@pytest.mark.parametrize(
    ("key", "message"),
    [("", "Enter your API key"), ("nope", "not an API key"), (WRITE, "write key")],
)
def test_login_refuses_unknown_and_write_keys(http: TestClient, key: str, message: str) -> None:
    r = http.post("/console/login", data={"key": key}, follow_redirects=False)
    assert r.status_code == 401
    assert message in r.text
    assert "set-cookie" not in r.headers
    assert http.get("/console/journeys", follow_redirects=False).status_code == 303


@pytest.mark.parametrize("target", ["https://evil.example/", "//evil.example", "/v1/journeys", "/console\\@evil"])
def test_login_never_redirects_outside_the_console(http: TestClient, target: str) -> None:
    r = http.post("/console/login", data={"key": ADMIN, "next": target}, follow_redirects=False)
    assert r.headers["location"] == "/console/journeys"


def test_logout_clears_the_cookie(http: TestClient) -> None:
    login(http)
    r = http.post("/console/logout", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/console/login"
    assert f'{COOKIE_NAME}=""' in r.headers["set-cookie"] or "Max-Age=0" in r.headers["set-cookie"]
    http.cookies.clear()
    assert http.get("/console/journeys", follow_redirects=False).status_code == 303


# ---------------------------------------------------------------- the cookie and /v1


def test_v1_accepts_the_cookie_only_with_the_console_header(http: TestClient) -> None:
    login(http)
    assert http.get("/v1/journeys").status_code == 401  # a cross-site request cannot add the header
    assert http.get("/v1/journeys", headers={CONSOLE_HEADER: "1"}).status_code == 200


def test_the_cookie_carries_the_keys_role(http: TestClient) -> None:
    login(http, VIEWER)
    r = http.post("/v1/journeys", json={"source": CHINESE}, headers={CONSOLE_HEADER: "1"})
    assert r.status_code == 403
    assert http.get("/v1/journeys", headers={CONSOLE_HEADER: "1"}).status_code == 200


def test_an_explicit_key_header_wins_over_the_cookie(http: TestClient) -> None:
    login(http, ADMIN)
    r = http.post(
        "/v1/journeys", json={"source": CHINESE}, headers={CONSOLE_HEADER: "1", "Authorization": f"Bearer {VIEWER}"}
    )
    assert r.status_code == 403


# ---------------------------------------------------------------- check


def test_check_reports_errors_at_their_line_with_hints(http: TestClient) -> None:
    source = CHINESE.replace("  wait 1d", "  wiat 1d")
    r = http.post("/v1/journeys/check", json={"source": source}, headers={"Authorization": f"Bearer {VIEWER}"})
    assert r.status_code == 200
    body = r.json()
    assert body["ok"] is False and body["svg"] is None
    assert body["errors"] == [
        {
            "code": "E107",
            "severity": "error",
            "message": "unknown statement 'wiat'",
            "line": 7,
            "column": 3,
            "hint": "did you mean 'wait'?",
        }
    ]


def test_check_of_good_text_draws_the_diagram_and_lists_templates(http: TestClient) -> None:
    r = http.post("/v1/journeys/check", json={"source": CHINESE}, headers={"Authorization": f"Bearer {VIEWER}"})
    body = r.json()
    assert body["ok"] is True and body["errors"] == []
    assert body["svg"].startswith("<svg") and "双十一召回" in body["svg"]
    assert body["templates"] == ["召回文案", "跟进"]
    assert body["name"] == "双十一召回" and body["suggested_id"]


def test_check_semantic_errors_still_draw(http: TestClient) -> None:
    source = CHINESE + "  goto nowhere\n"
    body = http.post("/v1/journeys/check", json={"source": source}, headers={"Authorization": f"Bearer {ADMIN}"}).json()
    assert body["ok"] is False and body["svg"]
    assert [(e["code"], e["line"]) for e in body["errors"]] == [("E220", 9)]


def test_check_empty_text_and_auth(http: TestClient) -> None:
    assert http.post("/v1/journeys/check", json={"source": ""}).status_code == 401
    body = http.post("/v1/journeys/check", json={"source": "  \n"}, headers={"Authorization": f"Bearer {ADMIN}"}).json()
    assert body["ok"] is False and body["errors"][0]["line"] == 1


def test_check_never_deploys(app_store: tuple[TestClient, Store, ApiSettings]) -> None:
    http, store, _ = app_store
    http.post("/v1/journeys/check", json={"source": CHINESE}, headers={"Authorization": f"Bearer {ADMIN}"})
    assert http.get("/v1/journeys", headers={"Authorization": f"Bearer {ADMIN}"}).json() == []


# ---------------------------------------------------------------- pages


def test_journeys_list_in_chinese_with_actions_for_operators(http: TestClient) -> None:
    deploy(http)
    login(http)
    r = http.get("/console/journeys")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/html; charset=utf-8")
    assert "双十一召回" in r.text
    assert 'data-journey-id="double-11"' in r.text
    for action in ("pause", "stop"):
        assert f'data-action="{action}"' in r.text


def _actions(page: str, journey_id: str) -> list[str]:
    row = re.search(rf'<tr[^>]*data-journey-id="{journey_id}".*?</tr>', page, re.S)
    assert row is not None
    return re.findall(r'data-action="(\w+)">(\w+)<', row.group(0))


def test_the_buttons_are_the_moves_the_lifecycle_allows(app_store: tuple[TestClient, Store, ApiSettings]) -> None:
    http, store, _ = app_store
    r = http.post(
        "/v1/journeys",
        json={"source": CHINESE, "id": "draft-one", "draft": True},
        headers={"Authorization": f"Bearer {ADMIN}"},
    )
    assert r.status_code == 201 and r.json()["journey"]["status"] == "draft"
    deploy(http)
    login(http)
    page = http.get("/console/journeys").text
    assert _actions(page, "draft-one") == [("resume", "Activate")]
    assert _actions(page, "double-11") == [("pause", "Pause"), ("stop", "Stop")]
    catalog.set_status(store, "double-11", "paused")
    assert _actions(http.get("/console/journeys").text, "double-11") == [("resume", "Resume"), ("stop", "Stop")]
    catalog.set_status(store, "double-11", "stopped")
    assert _actions(http.get("/console/journeys").text, "double-11") == []
    journey_page = http.get("/console/journeys/draft-one").text
    assert 'data-action="resume">Activate<' in journey_page and 'data-action="stop"' not in journey_page


def test_viewers_get_no_action_buttons(http: TestClient) -> None:
    deploy(http)
    login(http, VIEWER)
    r = http.get("/console/journeys")
    assert "双十一召回" in r.text and "data-action=" not in r.text and "view only" in r.text
    assert 'data-readonly="true"' in http.get("/console/editor").text


def test_journey_page_has_a_count_element_per_node_and_key(http: TestClient) -> None:
    deploy(http)
    deploy(http, CHINESE.replace("wait 1d", "wait 2d"))
    login(http)
    r = http.get("/console/journeys/double-11")
    assert r.status_code == 200
    nodes = set(re.findall(r'<g class="node[^"]*" data-node-id="([^"]+)"', r.text))
    assert {"__entry__", "__end__"} <= nodes and len(nodes) == 5
    for node in nodes:
        for key in ("entered", "waiting", "sent", "suppressed"):
            assert f'data-node-id="{node}" data-key="{key}"' in r.text
    assert "沉默用户短信召回" in r.text
    assert 'id="diff-form"' in r.text and ">v2</option>" in r.text


def test_unknown_journey_and_user_are_404_pages(http: TestClient) -> None:
    login(http)
    assert http.get("/console/journeys/nope").status_code == 404
    assert http.get("/console/users/nope").status_code == 404
    assert http.get("/console/editor?journey=nope").status_code == 404


def test_editor_loads_the_current_source(http: TestClient) -> None:
    deploy(http)
    login(http)
    r = http.get("/console/editor?journey=double-11")
    assert r.status_code == 200
    assert 'send sms "召回文案"' in r.text.replace("&#34;", '"')
    assert 'data-journey-id="double-11"' in r.text


def test_user_search_and_page(app_store: tuple[TestClient, Store, ApiSettings]) -> None:
    http, store, _ = app_store
    deploy(http)
    now = datetime.now(UTC)

    def seed(s):
        uid = identity.identify(s, {"phone": "13800001111", "openid": "o-abc"}, now=now)
        identity.set_attributes(s, uid, {"城市": "杭州"}, now=now)
        s.add(
            StepRecord(
                run_key="double-11:u:r",
                seq=1,
                journey_id="double-11",
                version=1,
                user_id=uid,
                node_id="send-召回文案",
                kind="send",
                outcome="suppressed",
                at=now,
                detail={},
            )
        )
        s.add(
            Delivery(
                idempotency_key="k1",
                run_key="double-11:u:r",
                journey_id="double-11",
                version=1,
                node_id="send-召回文案",
                user_id=uid,
                channel="sms",
                template="召回文案",
                status="suppressed",
                reason="opted out of sms",
                at=now,
            )
        )
        return uid

    uid = store.transact(seed)
    login(http)
    r = http.get("/console/users", params={"q": "+86 138-0000-1111"}, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == f"/console/users/{uid}"
    r = http.get("/console/users", params={"q": "o-abc"}, follow_redirects=False)
    assert r.headers["location"] == f"/console/users/{uid}"
    page = http.get(f"/console/users/{uid}").text
    assert "杭州" in page and "13800001111" in page
    assert "suppressed because: opted out of sms" in page
    assert "sms · 召回文案: suppressed" in page
    missing = http.get("/console/users", params={"q": "13900000000"})
    assert missing.status_code == 200 and "Nobody has the identifier" in missing.text
    found = http.get("/console/find-users", params={"q": "o-abc"}).json()
    assert found == [{"user_id": uid, "kind": "openid", "value": "o-abc"}]


def test_node_panel_lists_deliveries(app_store: tuple[TestClient, Store, ApiSettings]) -> None:
    http, store, _ = app_store
    deploy(http)
    now = datetime.now(UTC)
    store.transact(
        lambda s: s.add(
            Delivery(
                idempotency_key="k2",
                run_key="r",
                journey_id="double-11",
                version=1,
                node_id="send-x",
                user_id="u1",
                channel="sms",
                template="召回文案",
                status="sent",
                at=now,
            )
        )
    )
    assert http.get("/console/journeys/double-11/nodes/send-x").status_code == 401
    login(http)
    body = http.get("/console/journeys/double-11/nodes/send-x").json()
    assert body["waiting_source"] == "store" and body["waiting"] == []
    assert [(d["user_id"], d["status"], d["template"]) for d in body["deliveries"]] == [("u1", "sent", "召回文案")]


def test_one_versions_page_and_panel(app_store: tuple[TestClient, Store, ApiSettings]) -> None:
    http, store, _ = app_store
    deploy(http)
    deploy(http, CHINESE.replace("wait 1d", "wait 2d"))
    now = datetime.now(UTC)
    for n, version in enumerate((1, 2, 2)):
        key = f"k{n}"
        store.transact(
            lambda s, key=key, version=version: s.add(
                Delivery(
                    idempotency_key=key,
                    run_key=key,
                    journey_id="double-11",
                    version=version,
                    node_id="send-x",
                    user_id=f"u{version}",
                    channel="sms",
                    template="召回文案",
                    status="sent",
                    at=now,
                )
            )
        )
    login(http)
    page = http.get("/console/journeys/double-11?version=1")
    assert page.status_code == 200
    assert 'data-version="1"' in page.text and '<option value="1" selected>v1</option>' in page.text
    assert "1d" in page.text and "2d" not in page.text  # drawn as version 1 was
    assert 'data-version=""' in http.get("/console/journeys/double-11").text
    assert http.get("/console/journeys/double-11?version=7").status_code == 404

    def users(query: str) -> list[str]:
        return [d["user_id"] for d in http.get(f"/console/journeys/double-11/nodes/send-x{query}").json()["deliveries"]]

    assert sorted(users("")) == ["u1", "u2", "u2"]
    assert users("?version=1") == ["u1"] and users("?version=2") == ["u2", "u2"]


def test_timeline_pages(app_store: tuple[TestClient, Store, ApiSettings]) -> None:
    """Older entries are a page away, in the console (300 a page) and in the
    API (``Link: <…?until=…>; rel="next"``), and no entry is lost between pages."""
    from datetime import timedelta

    from contracts.activities import StepRecord as Step
    from engine import runs

    http, store, _ = app_store
    uid = store.transact(lambda s: identity.ensure_user(s, "long-time-member"))
    start = datetime(2026, 1, 1, tzinfo=UTC)
    steps = [
        Step(
            run_key="r",
            seq=i,
            journey_id="j",
            version=1,
            user_id=uid,
            node_id=f"n{i}",
            kind="tag",
            outcome="passed",
            at=start + timedelta(minutes=i),
        )
        for i in range(105)
    ]
    runs.record_steps(store, steps)
    login(http)
    first = http.get(f"/console/users/{uid}")
    assert first.text.count('<li class="tl ') == view.TIMELINE_PAGE == 100
    assert "2026-01-01 01:44:00" in first.text and "2026-01-01 00:04:00" not in first.text  # newest 100
    older = re.search(r'id="timeline-older" href="([^"]+)"', first.text)
    assert older is not None
    second = http.get(older.group(1).replace("&amp;", "&"))
    assert second.status_code == 200 and second.text.count('<li class="tl ') == 5
    assert "2026-01-01 00:04:00" in second.text and "2026-01-01 00:05:00" not in second.text
    assert "timeline-older" not in second.text and "← Newest" in second.text

    api = {"Authorization": f"Bearer {ADMIN}"}
    seen: list[str] = []
    url: str | None = f"/v1/users/{uid}/timeline?limit=40"
    while url:
        r = http.get(url, headers=api)
        assert r.status_code == 200, r.text
        seen = [i["node_id"] for i in r.json()] + seen
        link = r.headers.get("link")
        url = re.match(r"<([^>]+)>; rel=\"next\"", link).group(1) if link else None
    assert seen == [f"n{i}" for i in range(105)]


def test_static_files_and_no_traversal(http: TestClient) -> None:
    r = http.get("/console/static/console.css")
    assert r.status_code == 200 and "Noto Sans CJK SC" in r.text
    assert http.get("/console/static/editor.js").headers["content-type"].startswith("text/javascript")
    assert http.get("/console/static/..%2Fpages.py").status_code == 404
    assert http.get("/console/static/nope.js").status_code == 404
