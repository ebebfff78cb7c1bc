"""Deploy → ingest → runs → timeline and stats, end to end on a real server."""

from __future__ import annotations

import httpx
import pytest

from tests.api.conftest import WRITE, Stack, auth, eventually, unique

WELCOME = """\
journey "{name}"
  entry event {event} where source == "poster"
  reentry once
  goal event order_paid within 3d

  send wecom "{template}"
  wait for event order_paid up to 1d:
    on event:
      tag add ordered
    on timeout:
      exit
"""

NURTURE = """\
journey "{name}"
  entry api
  reentry always

  wait 7d
  send webhook "{template}"
"""


async def _template(http: httpx.AsyncClient, name: str, body: str = "欢迎 {{ user.id }}") -> None:
    r = await http.put(f"/v1/templates/{name}", json={"body": body}, headers=auth())
    assert r.status_code in (200, 201), r.text


async def _deploy(http: httpx.AsyncClient, source: str, journey_id: str) -> dict:
    r = await http.post("/v1/journeys", json={"source": source, "id": journey_id}, headers=auth())
    assert r.status_code == 201, r.text
    return r.json()


def _segment(payload: dict) -> dict:
    return {"auth": (WRITE, ""), "json": payload}


async def _runs(http: httpx.AsyncClient, user_id: str) -> list[dict]:
    r = await http.get(f"/v1/users/{user_id}/runs", headers=auth())
    return r.json() if r.status_code == 200 else []


async def test_event_journey_end_to_end(stack: Stack) -> None:
    http = stack.http
    jid, event, template = unique("welcome"), unique("contact_added").replace("-", "_"), unique("welcome_tpl")
    member, other = unique("m"), unique("m")
    await _template(http, template)
    deployed = await _deploy(http, WELCOME.format(name=jid, event=event, template=template), jid)
    assert deployed["version"] == 1 and deployed["journey"]["entry"] == "event"

    # identify: identifiers from traits, the rest become attributes
    r = await http.post(
        "/v1/identify",
        **_segment(
            {
                "userId": member,
                "traits": {"wecom_external_userid": f"wx-{member}", "phone": "+86 138-0000-1234", "city": "杭州"},
            }
        ),
    )
    assert r.status_code == 200 and r.json() == {"success": True}
    r = await http.get("/v1/users/lookup", params={"kind": "member_id", "value": member}, headers=auth())
    assert r.status_code == 200
    uid = r.json()["user_id"]
    profile = (await http.get(f"/v1/users/{uid}", headers=auth())).json()
    assert profile["identities"]["phone"] == ["13800001234"]
    assert profile["attributes"]["city"] == "杭州"

    # the event that matches the entry's where starts a run; one that does not, doesn't
    track = {"userId": member, "event": event, "properties": {"source": "poster"}, "messageId": unique("msg")}
    assert (await http.post("/v1/track", **_segment(track))).status_code == 200
    r = await http.post(
        "/v1/track",
        **_segment({"userId": other, "event": event, "properties": {"source": "elevator"}, "messageId": unique("msg")}),
    )
    assert r.status_code == 200

    async def delivered() -> list[dict]:
        items = (await http.get(f"/v1/users/{uid}/timeline", headers=auth())).json()
        return [i for i in items if i["kind"] == "delivery" and i["detail"]["status"] == "sent"]

    sent = await eventually(delivered)
    assert sent and sent[0]["journey_id"] == jid and "wecom" in sent[0]["summary"]

    # the same message again is stored once and starts nothing new
    assert (await http.post("/v1/track", **_segment(track))).status_code == 200

    async def waiting_one() -> dict | None:
        stats = (await http.get(f"/v1/journeys/{jid}/stats", headers=auth())).json()
        nodes = {n["node_id"]: n for n in stats["nodes"]}
        wait = next(n for n in nodes.values() if n["node_id"].startswith("wait"))
        return stats if wait["waiting"] == 1 else None

    stats = await eventually(waiting_one)
    assert stats, "the run should be waiting for order_paid"
    send_node = next(n for n in stats["nodes"] if n["node_id"].startswith("send"))
    assert send_node["entered"] == 1 and send_node["sent"] == 1
    assert stats["summary"]["entered"] == 1 and stats["summary"]["active"] == 1

    # order_paid reaches the running run: tag, goal, completed
    r = await http.post(
        "/v1/track",
        **_segment({"userId": member, "event": "order_paid", "properties": {"amount": 99}, "messageId": unique("msg")}),
    )
    assert r.status_code == 200

    async def ended() -> list[dict]:
        return [run for run in await _runs(http, uid) if run["journey_id"] == jid and run["ended_at"]]

    runs = await eventually(ended)
    assert len(runs) == 1 and runs[0]["outcome"] in ("completed", "converted")
    assert runs[0]["converted_at"] is not None
    profile = (await http.get(f"/v1/users/{uid}", headers=auth())).json()
    assert any(t["tag"] == "ordered" and t["source"].startswith("journey") for t in profile["tags"])
    stats = (await http.get(f"/v1/journeys/{jid}/stats", headers=auth())).json()
    assert stats["goal"] == {"event": "order_paid", "converted": 1, "conversion_rate": 1.0}
    # only the matching user ever entered
    assert stats["summary"]["entered"] == 1
    other_uid = (
        await http.get("/v1/users/lookup", params={"kind": "member_id", "value": other}, headers=auth())
    ).json()["user_id"]
    assert await _runs(http, other_uid) == []

    metrics = (await http.get("/metrics", headers=auth())).text
    assert 'journeys_events_ingested_total{outcome="duplicate",type="track"} 1.0' in metrics
    assert "journeys_deliveries{" in metrics and 'channel="wecom",status="sent"' in metrics
    assert f'journeys_runs_started_total{{journey="{jid}",trigger="event"}} 1.0' in metrics
    assert 'journeys_http_requests_total{method="GET",route="/v1/journeys/{journey_id}/stats",status="200"}' in metrics
    assert 'journeys_events_delivered_total{outcome="delivered"}' in metrics

    svg = await http.get(f"/v1/journeys/{jid}/graph.svg", params={"counts": "true"}, headers=auth())
    assert svg.status_code == 200 and svg.headers["content-type"].startswith("image/svg+xml")
    assert svg.text.lstrip().startswith("<svg") or "<svg" in svg.text[:200]
    mmd = await http.get(f"/v1/journeys/{jid}/graph.mmd", headers=auth())
    assert mmd.status_code == 200 and "flowchart" in mmd.text


async def test_paused_journey_drops_entries_and_resume_does_not_replay(stack: Stack) -> None:
    http = stack.http
    jid, event, template = unique("paused"), unique("scan").replace("-", "_"), unique("tpl")
    await _template(http, template)
    await _deploy(http, WELCOME.format(name=jid, event=event, template=template), jid)
    r = await http.post(f"/v1/journeys/{jid}/pause", headers=auth())
    assert r.status_code == 200 and r.json()["status"] == "paused"
    member = unique("m")
    await http.post("/v1/identify", **_segment({"userId": member, "traits": {"wecom_external_userid": f"wx-{member}"}}))
    body = {"userId": member, "event": event, "properties": {"source": "poster"}, "messageId": unique("msg")}
    assert (await http.post("/v1/track", **_segment(body))).status_code == 200
    uid = (await http.get("/v1/users/lookup", params={"kind": "member_id", "value": member}, headers=auth())).json()[
        "user_id"
    ]
    assert (await http.post(f"/v1/journeys/{jid}/resume", headers=auth())).json()["status"] == "active"
    # nothing was queued: still no run, until a new event arrives
    assert await _runs(http, uid) == []
    assert (await http.post(f"/v1/journeys/{jid}/runs", json={"user_id": uid}, headers=auth())).status_code == 409
    body["messageId"] = unique("msg")
    assert (await http.post("/v1/track", **_segment(body))).status_code == 200
    assert await eventually(lambda: _runs(http, uid))


async def test_api_entry_start_cancel_and_stop_in_bulk(stack: Stack) -> None:
    http = stack.http
    jid, template = unique("nurture"), unique("nudge")
    await _template(http, template)
    await _deploy(http, NURTURE.format(name=jid, template=template), jid)
    users = [unique("u") for _ in range(3)]
    r = await http.post(f"/v1/journeys/{jid}/runs", json={"user_ids": users}, headers=auth())
    assert r.status_code == 202, r.text
    started = r.json()["runs"]
    assert {s["user_id"] for s in started} == set(users)
    assert all(s["workflow_id"] == f"journey:{jid}:{s['user_id']}" for s in started)
    # starting again while running reuses the running workflow
    again = (await http.post(f"/v1/journeys/{jid}/runs", json={"user_id": users[0]}, headers=auth())).json()["runs"][0]
    assert again["run_id"] == started[0]["run_id"] and again["started"] is False

    async def waiting(n: int):
        async def check():
            stats = (await http.get(f"/v1/journeys/{jid}/stats", headers=auth())).json()
            wait = next(x for x in stats["nodes"] if x["node_id"].startswith("wait"))
            return wait["waiting"] == n

        return await eventually(check)

    assert await waiting(3)

    r = await http.delete(f"/v1/journeys/{jid}/runs/{users[0]}", headers=auth())
    assert r.status_code == 202, r.text

    async def cancelled(user: str):
        return [x for x in await _runs(http, user) if x["outcome"] == "cancelled"]

    assert await eventually(lambda: cancelled(users[0]))
    assert await waiting(2)

    r = await http.post(f"/v1/journeys/{jid}/stop", headers=auth())
    assert r.status_code == 202, r.text
    job = r.json()
    assert job["status"] == "stopped" and job["job_id"].startswith(f"stop-{jid}-") and job["method"] == "batch"

    async def done():
        progress = (await http.get(f"/v1/journeys/{jid}/stop", headers=auth())).json()
        return progress if progress["state"] == "completed" else None

    progress = await eventually(done)
    assert progress and progress["job_id"] == job["job_id"] and progress["completed"] == 2
    for user in users[1:]:
        assert await eventually(lambda user=user: cancelled(user))
    r = await http.post(f"/v1/journeys/{jid}/runs", json={"user_id": users[0]}, headers=auth())
    assert r.status_code == 409
    # archive once nothing is open
    assert await eventually(lambda: _archived(http, jid))


async def _archived(http: httpx.AsyncClient, jid: str) -> bool:
    r = await http.post(f"/v1/journeys/{jid}/archive", headers=auth())
    return r.status_code == 200


async def test_redeploy_versions_and_diff(stack: Stack) -> None:
    http = stack.http
    jid, template = unique("versions"), unique("t")
    source = NURTURE.format(name=jid, template=template)
    await _deploy(http, source, jid)
    same = await http.post("/v1/journeys", json={"source": source + "\n# a comment\n", "id": jid}, headers=auth())
    assert same.status_code == 200 and same.json()["created"] is False and same.json()["version"] == 1
    changed = source.replace("wait 7d", "wait 3d")
    r = await http.post("/v1/journeys", json={"source": changed, "id": jid}, headers=auth())
    assert r.status_code == 201 and r.json()["version"] == 2
    detail = (await http.get(f"/v1/journeys/{jid}", headers=auth())).json()
    assert [v["version"] for v in detail["versions"]] == [1, 2] and detail["current_version"] == 2
    assert "wait 3d" in detail["source"]
    diff = (await http.get(f"/v1/journeys/{jid}/diff", params={"from": 1, "to": 2}, headers=auth())).json()
    assert "-  wait 7d" in diff["diff"] and "+  wait 3d" in diff["diff"]
    listed = (await http.get("/v1/journeys", headers=auth())).json()
    assert any(j["id"] == jid and j["current_version"] == 2 for j in listed)
    assert (await http.get(f"/v1/journeys/{jid}/diff", params={"from": 9}, headers=auth())).status_code == 404


AB = """\
journey "{name}"
  entry api
  reentry always
  goal event {goal} within 1d

  split:
    50% A: send webhook "{template}"
    50% B: send webhook "{template}"
  wait for event {goal} up to 1d:
    on event:
      pass
    on timeout:
      exit
"""


async def test_variant_stats_significance_and_time_series(stack: Stack) -> None:
    from datetime import UTC, datetime, timedelta

    http = stack.http
    jid, template, goal = unique("ab"), unique("tpl"), unique("bought").replace("-", "_")
    await _template(http, template)
    await _deploy(http, AB.format(name=jid, template=template, goal=goal), jid)
    before = datetime.now(UTC) - timedelta(minutes=5)
    members = [unique("m") for _ in range(8)]
    r = await http.post(
        f"/v1/journeys/{jid}/runs",
        json={"identities": [{"kind": "member_id", "value": m} for m in members]},
        headers=auth(),
    )
    assert r.status_code == 202 and len(r.json()["runs"]) == 8

    async def all_waiting():
        stats = (await http.get(f"/v1/journeys/{jid}/stats", headers=auth())).json()
        # every run has passed the split (its variant recorded) and waits for the goal
        split_done = all(v["variant"] for v in stats["variants"])
        return stats if split_done and sum(v["entered"] for v in stats["variants"]) == 8 else None

    assert await eventually(all_waiting)
    for m in members[:3]:
        body = {"userId": m, "event": goal, "messageId": unique("msg")}
        assert (await http.post("/v1/track", **_segment(body))).status_code == 200

    async def converted():
        stats = (await http.get(f"/v1/journeys/{jid}/stats", headers=auth())).json()
        return stats if stats["summary"]["converted"] == 3 else None

    stats = await eventually(converted)
    assert stats
    variants = {v["variant"]: v for v in stats["variants"]}
    assert set(variants) <= {"A", "B"} and sum(v["converted"] for v in variants.values()) == 3
    for v in variants.values():
        expected = v["converted"] / v["entered"] if v["entered"] else 0.0
        assert v["conversion_rate"] == pytest.approx(expected, abs=1e-5)
        if len(variants) == 2:
            assert [t["against"] for t in v["tests"]] == ["rest"]
            p = v["tests"][0]["p_value"]
            assert p is None or 0.0 <= p <= 1.0
    assert stats["goal"]["converted"] == 3 and stats["goal"]["event"] == goal

    params = {"since": before.isoformat(), "bucket": "1h", "start": before.isoformat(), "readouts": "3h,6h,12h"}
    stats = (await http.get(f"/v1/journeys/{jid}/stats", params=params, headers=auth())).json()
    assert len(stats["series"]) == 1
    bucket = stats["series"][0]
    assert (bucket["entered"], bucket["sent"], bucket["converted"]) == (8, 8, 3)
    assert [r["offset"] for r in stats["readouts"]] == ["3h", "6h", "12h"]
    assert all(
        (r["entered"], r["sent"], r["converted"]) == (8, 8, 3) and r["complete"] is False for r in stats["readouts"]
    )
    bad = await http.get(
        f"/v1/journeys/{jid}/stats", params={"since": before.isoformat(), "bucket": "1s"}, headers=auth()
    )
    assert bad.status_code == 200 and len(bad.json()["series"]) > 1
    too_many = await http.get(
        f"/v1/journeys/{jid}/stats",
        params={"since": (before - timedelta(days=30)).isoformat(), "bucket": "1m"},
        headers=auth(),
    )
    assert too_many.status_code == 422


async def test_stop_falls_back_to_cancelling_one_by_one(stack: Stack, monkeypatch) -> None:
    from temporalio.service import RPCError, RPCStatusCode

    http = stack.http
    jid, template = unique("fallback"), unique("t")
    await _template(http, template)
    await _deploy(http, NURTURE.format(name=jid, template=template), jid)
    users = [unique("u") for _ in range(2)]
    assert (await http.post(f"/v1/journeys/{jid}/runs", json={"user_ids": users}, headers=auth())).status_code == 202

    async def both_waiting():
        stats = (await http.get(f"/v1/journeys/{jid}/stats", headers=auth())).json()
        return next(x for x in stats["nodes"] if x["node_id"].startswith("wait"))["waiting"] == 2

    assert await eventually(both_waiting)

    async def unavailable(*args, **kwargs):
        raise RPCError("batch operations disabled", RPCStatusCode.UNIMPLEMENTED, b"")

    monkeypatch.setattr(stack.client.workflow_service, "start_batch_operation", unavailable)
    job = (await http.post(f"/v1/journeys/{jid}/stop", headers=auth())).json()
    assert job["method"] == "iterate"

    async def done():
        progress = (await http.get(f"/v1/journeys/{jid}/stop", headers=auth())).json()
        return progress if progress["state"] == "completed" else None

    progress = await eventually(done)
    assert progress and progress["total"] == 2 and progress["completed"] == 2 and progress["failed"] == 0
    for user in users:

        async def cancelled(user=user):
            return [x for x in await _runs(http, user) if x["outcome"] == "cancelled"]

        assert await eventually(cancelled)
