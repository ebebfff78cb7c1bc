"""The broadcast routes against the real app, a dev server and SQLite."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest_asyncio
from temporalio.testing import WorkflowEnvironment

from api.app import create_app
from api.settings import ApiSettings
from contracts.runs import workflow_id
from engine.broadcast_activities import BroadcastActivities
from engine.channels.config import ChannelsConfig
from engine.store import Store
from engine.templates import upsert_template
from engine.temporal import BROADCAST_QUEUE_SUFFIX, broadcast_task_queue
from runtime.worker import build_activities, build_workers
from tests.audience.harness import population

OPERATOR, VIEWER = "k-op", "k-view"
SOURCE = """journey "{name}"
  entry audience where tag vip and not tag blocked every day at 10:00
  reentry once

  send webhook "hi"
"""


def auth(key: str = OPERATOR) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@pytest_asyncio.fixture
async def http(dev_env: WorkflowEnvironment, tmp_path: Path) -> AsyncIterator[tuple[httpx.AsyncClient, Store]]:
    settings = ApiSettings(
        database_url=f"sqlite:///{tmp_path / 'journeys.db'}",
        task_queue=f"api-bc-{uuid.uuid4().hex[:8]}",
        api_keys={OPERATOR: "operator", VIEWER: "viewer"},
        channels=ChannelsConfig(mode="outbox"),
        cap_per_day=None,
        cap_per_week=None,
    )
    store = Store(settings.database_url)
    store.migrate()
    upsert_template(store, "hi", "hello")
    journey_acts = build_activities(settings, store)
    broadcast_acts = BroadcastActivities(store, settings, snapshots=journey_acts)
    app = create_app(settings, client=dev_env.client, store=store)
    worker = build_workers(dev_env.client, journey_acts.all(), broadcast_acts.all(), settings.task_queue)
    async with worker, httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api") as client:
        yield client, store
    store.dispose()


async def _deploy(client: httpx.AsyncClient, source: str, jid: str) -> None:
    r = await client.post("/v1/journeys", json={"source": source, "id": jid}, headers=auth())
    assert r.status_code in (200, 201), r.text


async def test_run_now_and_watch_progress(http: tuple[httpx.AsyncClient, Store], dev_env: WorkflowEnvironment) -> None:
    client, store = http
    expected = population(store, 60)
    jid = f"api-bc-{uuid.uuid4().hex[:6]}"
    await _deploy(client, SOURCE.format(name=jid), jid)

    assert (await client.post(f"/v1/journeys/{jid}/broadcasts", json={}, headers=auth(VIEWER))).status_code == 403
    r = await client.post(f"/v1/journeys/{jid}/broadcasts", json={"page_size": 7}, headers=auth())
    assert r.status_code == 202, r.text
    broadcast_id = r.json()["broadcast_id"]

    body: dict[str, Any] = {}
    for _ in range(300):
        r = await client.get(f"/v1/journeys/{jid}/broadcasts/{broadcast_id}", headers=auth(VIEWER))
        if r.status_code == 200:
            body = r.json()
            if body["status"] == "completed" and body["admitted"] == len(expected):
                break
        await asyncio.sleep(0.1)
    assert (body["status"], body["matched"], body["entered"], body["admitted"], body["refused"]) == (
        "completed",
        len(expected),
        len(expected),
        len(expected),
        0,
    )
    assert body["page_size"] == 7 and body["trigger"] == "api"
    # on the broadcast queue; the runs it started on the main queue
    queue = (await dev_env.client.get_workflow_handle(broadcast_id).describe()).task_queue
    assert queue.startswith("api-bc-") and queue.endswith(BROADCAST_QUEUE_SUFFIX)
    run = await dev_env.client.get_workflow_handle(workflow_id(jid, expected[0])).describe()
    assert broadcast_task_queue(run.task_queue) == queue

    listed = (await client.get(f"/v1/journeys/{jid}/broadcasts", headers=auth(VIEWER))).json()
    assert [b["broadcast_id"] for b in listed] == [broadcast_id]
    missing = await client.get(f"/v1/journeys/{jid}/broadcasts/nope", headers=auth(VIEWER))
    assert missing.status_code == 404 and missing.headers["content-type"].startswith("application/problem+json")
    assert (await client.post("/v1/journeys/nope/broadcasts", json={}, headers=auth())).status_code == 404
    bad = await client.post(f"/v1/journeys/{jid}/broadcasts", json={"page_size": 0}, headers=auth())
    assert bad.status_code == 422


async def test_only_active_audience_journeys_broadcast(http: tuple[httpx.AsyncClient, Store]) -> None:
    client, _ = http
    jid = f"api-only-{uuid.uuid4().hex[:6]}"
    await _deploy(client, f'journey "{jid}"\n  entry api\n\n  send webhook "hi"\n', jid)
    r = await client.post(f"/v1/journeys/{jid}/broadcasts", json={}, headers=auth())
    assert r.status_code == 409 and "not by audience" in r.json()["detail"]


async def test_journey_routes_keep_the_schedule_in_line(
    http: tuple[httpx.AsyncClient, Store], dev_env: WorkflowEnvironment
) -> None:
    """Deploy creates the audience schedule, pause pauses it, resume unpauses
    it, stop deletes it — through the journeys routes, not by hand."""
    from temporalio.service import RPCError

    from engine.schedules import schedule_id

    client, _ = http
    jid = f"sched-{uuid.uuid4().hex[:6]}"
    await _deploy(client, SOURCE.format(name=jid), jid)
    handle = dev_env.client.get_schedule_handle(schedule_id(jid))
    desc = await handle.describe()
    assert desc.schedule.state.paused is False
    assert desc.schedule.action.task_queue.endswith(BROADCAST_QUEUE_SUFFIX)  # type: ignore[union-attr]
    assert (await client.post(f"/v1/journeys/{jid}/pause", headers=auth())).status_code == 200
    assert (await handle.describe()).schedule.state.paused is True
    assert (await client.post(f"/v1/journeys/{jid}/resume", headers=auth())).status_code == 200
    assert (await handle.describe()).schedule.state.paused is False
    assert (await client.post(f"/v1/journeys/{jid}/stop", headers=auth())).status_code == 202
    try:
        await handle.describe()
    except RPCError:
        return
    raise AssertionError("a stopped journey's schedule still exists")


async def test_a_one_off_already_past_is_refused_at_deploy(http: tuple[httpx.AsyncClient, Store]) -> None:
    """Temporal schedules look forward: a new version whose ``once at`` has
    passed would never run, so deploy says so (and the editor's check too);
    the same text deployed again as the current version is let through."""
    from engine import catalog

    client, store = http
    jid = f"once-{uuid.uuid4().hex[:6]}"
    past = SOURCE.format(name=jid).replace("every day at 10:00", "once at 2020-01-01 10:00")
    r = await client.post("/v1/journeys", json={"source": past, "id": jid}, headers=auth())
    assert r.status_code == 422, r.text
    [error] = r.json()["errors"]
    assert (error["code"], error["line"], error["column"]) == ("E240", 2, 3)
    assert "POST /v1/journeys/<id>/broadcasts" in error["hint"]
    checked = (await client.post("/v1/journeys/check", json={"source": past}, headers=auth())).json()
    assert checked["ok"] is False and [e["code"] for e in checked["errors"]] == ["E240"]

    future = past.replace("2020-01-01", "2099-01-01")
    assert (await client.post("/v1/journeys", json={"source": future, "id": jid}, headers=auth())).status_code == 201
    # A version published when its time was still ahead (here: straight into
    # the store) is current; deploying the same text again changes nothing.
    from dsl import compile_source

    compiled = compile_source(past)
    catalog.publish(
        store, jid, name=jid, source=past, ir=compiled.model_dump(mode="json"), hash=compiled.content_hash()
    )
    again = await client.post("/v1/journeys", json={"source": past, "id": jid}, headers=auth())
    assert again.status_code == 200, again.text
    assert again.json()["created"] is False
