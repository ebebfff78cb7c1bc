"""Roles, write keys, and problem+json for every kind of bad input."""

from __future__ import annotations

import pytest

from tests.api.conftest import ADMIN, OPERATOR, VIEWER, WRITE, Stack, auth, unique

PROBLEM = "application/problem+json"
SOURCE = 'journey "{name}"\n  entry api\n\n  wait 1d\n'


def _is_problem(r, status: int) -> dict:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith(PROBLEM)
    body = r.json()
    assert body["status"] == status and body["detail"] and body["title"] and body["type"]
    assert "Traceback" not in r.text
    return body


async def test_health_needs_no_key_but_everything_else_does(stack: Stack) -> None:
    assert (await stack.http.get("/health")).json() == {"status": "ok"}
    ready = await stack.http.get("/ready")
    assert ready.status_code == 200 and ready.json() == {"status": "ready", "database": True, "temporal": True}
    for path in ("/v1/journeys", "/metrics", "/v1/templates", "/v1/pools"):
        body = _is_problem(await stack.http.get(path), 401)
        assert "API key" in body["detail"]
    r = await stack.http.get("/v1/journeys", headers={"Authorization": "Bearer nope"})
    assert _is_problem(r, 401)["detail"] == "unknown API key"
    assert (await stack.http.get("/v1/journeys", headers={"X-API-Key": VIEWER})).status_code == 200


@pytest.mark.parametrize(
    ("key", "read", "write", "admin_only"),
    [(ADMIN, 200, 201, True), (OPERATOR, 200, 201, False), (VIEWER, 200, 403, False), (WRITE, 403, 403, False)],
)
async def test_roles(stack: Stack, key: str, read: int, write: int, admin_only: bool) -> None:
    http = stack.http
    assert (await http.get("/v1/journeys", headers=auth(key))).status_code == read
    jid = unique("roles")
    r = await http.post("/v1/journeys", json={"source": SOURCE.format(name=jid), "id": jid}, headers=auth(key))
    assert r.status_code == write, r.text
    if write == 403:
        _is_problem(r, 403)
        return
    archive = await http.post(f"/v1/journeys/{jid}/archive", headers=auth(key))
    assert archive.status_code == (200 if admin_only else 403)


async def test_write_keys_only_ingest(stack: Stack) -> None:
    http = stack.http
    event = {"userId": unique("m"), "event": "viewed", "messageId": unique("msg")}
    assert (await http.post("/v1/track", json=event, auth=(WRITE, ""))).json() == {"success": True}
    event["messageId"] = unique("msg")
    assert (await http.post("/v1/track", json={**event, "writeKey": WRITE})).status_code == 200
    event["messageId"] = unique("msg")
    assert (await http.post("/v1/track", json=event, headers=auth(OPERATOR))).status_code == 200
    _is_problem(await http.post("/v1/track", json=event, headers=auth(VIEWER)), 403)
    _is_problem(await http.post("/v1/track", json=event, auth=("wrong", "")), 401)
    _is_problem(await http.post("/v1/track", json=event), 401)
    body = _is_problem(await http.get("/v1/users/lookup?kind=phone&value=1", auth=(WRITE, "")), 401)
    assert "API key" in body["detail"]
    _is_problem(await http.get("/v1/journeys", headers={"X-API-Key": WRITE}), 403)


async def test_problem_details_for_bad_input(stack: Stack) -> None:
    http, h = stack.http, auth()
    body = _is_problem(
        await http.post("/v1/journeys", content=b'{"source": ', headers={**h, "content-type": "application/json"}), 400
    )
    assert "not valid JSON" in body["detail"]
    _is_problem(await http.get("/v1/journeys/no-such-journey", headers=h), 404)
    _is_problem(await http.get("/v1/users/no-such-user", headers=h), 404)
    _is_problem(await http.get("/v1/templates/nope", headers=h), 404)
    _is_problem(await http.get("/v1/nothing-here", headers=h), 404)
    _is_problem(await http.delete("/v1/journeys", headers=h), 405)
    body = _is_problem(await http.post("/v1/pools", json={"name": "p", "stock": "lots"}, headers=h), 422)
    assert any(e["field"] == "body.stock" for e in body["errors"])
    body = _is_problem(await http.post("/v1/journeys", json={"source": 42}, headers=h), 422)
    assert body["errors"][0]["field"] == "body.source"
    body = _is_problem(await http.post("/v1/track", json={"event": "x"}, auth=(WRITE, "")), 422)
    assert "userId or anonymousId" in body["detail"]
    body = _is_problem(await http.get("/v1/journeys/x/stats", params={"version": "-1"}, headers=h), 422)


async def test_journey_language_errors_have_line_and_column(stack: Stack) -> None:
    source = 'journey "broken"\n  entry api\n\n  send carrier_pigeon "hello"\n  wait for ever\n'
    r = await stack.http.post("/v1/journeys", json={"source": source}, headers=auth())
    body = _is_problem(r, 422)
    assert body["type"].endswith("journey-invalid")
    assert len(body["errors"]) >= 1
    for err in body["errors"]:
        assert set(err) >= {"code", "severity", "message", "line", "column", "hint"}
        assert err["line"] >= 4 and err["column"] >= 1 and err["code"].startswith("E")
    assert "line 4" in body["detail"] or "line 5" in body["detail"]


async def test_deploy_warnings_and_reference_check(stack: Stack) -> None:
    jid = unique("refs")
    source = f'journey "{jid}"\n  entry api\n\n  send webhook "{unique("missing")}"\n'
    r = await stack.http.post("/v1/journeys", json={"source": source, "check_references": True}, headers=auth())
    body = _is_problem(r, 422)
    assert any("template" in e["message"] for e in body["errors"])
    r = await stack.http.post("/v1/journeys", json={"source": source}, headers=auth())
    assert r.status_code == 201 and r.json()["journey"]["id"] == jid


async def test_templates_pools_users(stack: Stack) -> None:
    http, h = stack.http, auth()
    name = unique("tpl")
    r = await http.post(
        "/v1/templates", json={"name": name, "body": "Hi {{ user.city }}, {{ coupon.code }}"}, headers=h
    )
    assert r.status_code == 201 and r.json()["version"] == 1
    _is_problem(await http.post("/v1/templates", json={"name": name, "body": "x"}, headers=h), 409)
    _is_problem(await http.put(f"/v1/templates/{name}", json={"body": "{% if %}"}, headers=h), 422)
    r = await http.put(f"/v1/templates/{name}", json={"body": "您好 {{ user.city }} {{ coupon.code }}"}, headers=h)
    assert r.status_code == 200 and r.json()["version"] == 2
    assert any(t["name"] == name for t in (await http.get("/v1/templates", headers=h)).json())

    member = unique("m")
    await http.post("/v1/identify", json={"userId": member, "traits": {"city": "上海"}}, auth=(WRITE, ""))
    uid = (await http.get("/v1/users/lookup", params={"kind": "member_id", "value": member}, headers=h)).json()[
        "user_id"
    ]
    r = await http.post(
        f"/v1/templates/{name}/preview", params={"user_id": uid}, json={"coupon": {"code": "JC1"}}, headers=h
    )
    assert r.status_code == 200 and r.json()["body"] == "您好 上海 JC1"
    body = _is_problem(await http.post(f"/v1/templates/{name}/preview", params={"user_id": uid}, headers=h), 422)
    assert "coupon" in body["detail"]

    pool = unique("pool")
    r = await http.post("/v1/pools", json={"name": pool, "stock": 10, "value": {"amount": 20}}, headers=h)
    assert r.status_code == 201 and r.json()["stock"] == 10
    assert (await http.post(f"/v1/pools/{pool}/stock", json={"amount": 5}, headers=h)).json()["stock"] == 15
    assert (await http.put(f"/v1/pools/{pool}", json={"stock": 3}, headers=h)).json()["stock"] == 3
    _is_problem(await http.post(f"/v1/pools/{unique('none')}/stock", json={"amount": 5}, headers=h), 404)

    r = await http.post(f"/v1/users/{uid}/tags", json={"tags": ["vip", "grade3"]}, headers=auth(OPERATOR))
    assert r.status_code == 200 and set(r.json()["changed"]) == {"vip", "grade3"}
    r = await http.delete(f"/v1/users/{uid}/tags/vip", headers=h)
    assert r.json()["changed"] == ["vip"] and "vip" not in r.json()["tags"]
    _is_problem(await http.post(f"/v1/users/{uid}/tags", json={"tags": ["x"]}, headers=auth(VIEWER)), 403)
    r = await http.post(f"/v1/users/{uid}/opt-out/sms", headers=h)
    assert r.status_code == 200 and r.json()["opted_out"] is True
    profile = (await http.get(f"/v1/users/{uid}", headers=h)).json()
    assert profile["consents"][0]["channel"] == "sms" and profile["tags"][0]["source"] in ("api", "derived")
    assert (await http.post(f"/v1/users/{uid}/opt-in/sms", headers=h)).json()["opted_out"] is False
    _is_problem(await http.post(f"/v1/users/{uid}/opt-out/pigeon", headers=h), 422)


async def test_batch_is_validated_whole_and_ids_link(stack: Stack) -> None:
    http = stack.http
    anon, member, later = unique("anon"), unique("m"), unique("anon")
    bad = {
        "batch": [
            {"type": "track", "anonymousId": anon, "event": "viewed", "messageId": unique("msg")},
            {"type": "track", "event": "no-user"},
        ]
    }
    body = _is_problem(await http.post("/v1/batch", json=bad, auth=(WRITE, "")), 422)
    assert any(e["field"].startswith("body.batch.1") for e in body["errors"])
    r = await http.get("/v1/users/lookup", params={"kind": "anonymous_id", "value": anon}, headers=auth())
    assert r.status_code == 404, "nothing of a refused batch is stored"

    good = {
        "batch": [
            {"type": "track", "anonymousId": anon, "event": "viewed", "messageId": unique("msg")},
            {"type": "page", "anonymousId": anon, "name": "home", "messageId": unique("msg")},
            {"type": "identify", "userId": member, "anonymousId": anon, "traits": {"email": "A@Example.com"}},
            {"type": "alias", "userId": member, "previousId": later},
            {"type": "group", "userId": member, "groupId": "g1"},
        ],
        "context": {"library": {"name": "curl"}},
    }
    assert (await http.post("/v1/batch", json=good, auth=(WRITE, ""))).json() == {"success": True}
    ids = {}
    for kind, value in (("anonymous_id", anon), ("member_id", member), ("email", "a@example.com")):
        r = await http.get("/v1/users/lookup", params={"kind": kind, "value": value}, headers=auth())
        assert r.status_code == 200, (kind, r.text)
        ids[kind] = r.json()["user_id"]
    assert len(set(ids.values())) == 1
    # alias: the new previousId had never been seen as an anonymous id, so it is
    # taken as another id of the same kind as userId
    r = await http.get("/v1/users/lookup", params={"kind": "member_id", "value": later}, headers=auth())
    assert r.status_code == 200 and r.json()["user_id"] == ids["member_id"]


async def test_oversized_and_gzip_bodies(stack: Stack) -> None:
    import gzip
    import json

    http = stack.http
    big = b"{" + b" " * (stack.settings.max_body_bytes + 1) + b"}"
    _is_problem(
        await http.post("/v1/track", content=big, auth=(WRITE, ""), headers={"content-type": "application/json"}), 413
    )
    payload = gzip.compress(json.dumps({"userId": unique("m"), "event": "zipped", "messageId": unique("msg")}).encode())
    r = await http.post(
        "/v1/track",
        content=payload,
        auth=(WRITE, ""),
        headers={"content-type": "application/json", "content-encoding": "gzip"},
    )
    assert r.status_code == 200, r.text
    _is_problem(
        await http.post("/v1/track", content=b"not gzip", auth=(WRITE, ""), headers={"content-encoding": "gzip"}),
        400,
    )


async def test_without_temporal_the_api_says_so(tmp_path) -> None:
    import httpx

    from api.app import create_app
    from engine.store import Store
    from engine.store.models import Event
    from tests.api.conftest import make_settings

    settings = make_settings(tmp_path, "nowhere")
    store = Store(settings.database_url)
    store.migrate()
    app = create_app(settings, store=store)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api") as http:
        ready = await http.get("/ready")
        assert ready.status_code == 503 and ready.json() == {"status": "not ready", "database": True, "temporal": False}
        # an event is stored all the same (202) and the sweep delivers it once Temporal answers
        tracked = await http.post(
            "/v1/track", json={"userId": "u", "event": "e", "messageId": "off-1"}, auth=(WRITE, "")
        )
        assert (tracked.status_code, tracked.json()) == (202, {"success": True})
        with store.read() as s:
            stored = s.get(Event, "off-1")
        assert stored is not None and stored.dispatched_at is None
        jid = unique("offline")
        r = await http.post("/v1/journeys", json={"source": SOURCE.format(name=jid), "id": jid}, headers=auth())
        assert r.status_code == 201
        stats = (await http.get(f"/v1/journeys/{jid}/stats", headers=auth())).json()
        assert stats["warnings"] and all(n["waiting"] is None for n in stats["nodes"])
    store.dispose()


async def test_temporal_refusing_a_start_is_a_503_problem_not_a_500(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    from temporalio.service import RPCError, RPCStatusCode

    from api.routes import runs as runs_route

    async def refused(*args: object, **kwargs: object) -> None:
        raise RPCError("no capacity", RPCStatusCode.RESOURCE_EXHAUSTED, b"")

    jid = unique("refused")
    r = await stack.http.post("/v1/journeys", json={"source": SOURCE.format(name=jid), "id": jid}, headers=auth())
    assert r.status_code == 201, r.text
    monkeypatch.setattr(runs_route, "start_run", refused)
    r = await stack.http.post(f"/v1/journeys/{jid}/runs", json={"user_id": unique("u")}, headers=auth())
    body = _is_problem(r, 503)
    assert "RESOURCE_EXHAUSTED" in body["detail"] and body["type"].endswith("/temporal-unavailable")
