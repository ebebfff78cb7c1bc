"""A stop that Temporal refuses (issue 13: back-to-back stops answered 500
and left a stopped journey with no cancel job): the journey is stopped, the
job is queued with Temporal's answer and started once Temporal takes it,
and stopping a stopped journey again starts a new job. Never a 500."""

from __future__ import annotations

from temporalio.service import RPCError, RPCStatusCode

from engine import stopping
from tests.api.conftest import Stack, auth, eventually, unique
from tests.api.test_api_flow import NURTURE, _deploy, _runs, _template


async def test_a_refused_stop_is_queued_then_runs_and_a_stopped_journey_can_be_stopped_again(
    stack: Stack, monkeypatch
) -> None:
    http = stack.http
    jid, template = unique("queued"), unique("t")
    await _template(http, template)
    await _deploy(http, NURTURE.format(name=jid, template=template), jid)
    users = [unique("u") for _ in range(2)]
    assert (await http.post(f"/v1/journeys/{jid}/runs", json={"user_ids": users}, headers=auth())).status_code == 202

    async def both_waiting() -> bool:
        stats = (await http.get(f"/v1/journeys/{jid}/stats", headers=auth())).json()
        return next(x for x in stats["nodes"] if x["node_id"].startswith("wait"))["waiting"] == 2

    assert await eventually(both_waiting)

    real = stack.client.workflow_service.start_batch_operation
    refusals = {"left": 2}

    async def flaky(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        if refusals["left"]:
            refusals["left"] -= 1
            raise RPCError("Temporal is not answering", RPCStatusCode.UNAVAILABLE, b"")
        return await real(*args, **kwargs)

    monkeypatch.setattr(stack.client.workflow_service, "start_batch_operation", flaky)
    monkeypatch.setattr(stopping, "QUEUE_FIRST_WAIT", 0.05)
    r = await http.post(f"/v1/journeys/{jid}/stop", headers=auth())
    assert r.status_code == 202, r.text
    job = r.json()
    assert (job["status"], job["method"], job["state"]) == ("stopped", "queued", "queued")
    assert "UNAVAILABLE" in job["error"]
    info = (await http.get(f"/v1/journeys/{jid}", headers=auth())).json()
    assert info["status"] == "stopped"  # no new entries meanwhile

    for user in users:

        async def cancelled(user: str = user) -> list[dict]:
            return [x for x in await _runs(http, user) if x["outcome"] == "cancelled"]

        assert await eventually(cancelled)
    assert refusals["left"] == 0

    async def started() -> dict | None:
        progress = (await http.get(f"/v1/journeys/{jid}/stop", headers=auth())).json()
        return progress if progress["job_id"] == job["job_id"] and progress["method"] == "batch" else None

    assert await eventually(started)

    again = await http.post(f"/v1/journeys/{jid}/stop", headers=auth())
    assert again.status_code == 202, again.text
    assert again.json()["job_id"] != job["job_id"]

    async def finished() -> bool:
        # the dev server runs one batch job at a time: leave none running for other tests
        progress = (await http.get(f"/v1/journeys/{jid}/stop", headers=auth())).json()
        return progress["state"] in ("completed", "failed")

    assert await eventually(finished)
