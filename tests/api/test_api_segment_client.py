"""Ingest driven by the real ``segment-analytics-python`` client against a
real uvicorn server: events land once, identities link, journeys start."""

from __future__ import annotations

import asyncio

import pytest
from segment.analytics.client import Client as SegmentClient
from segment.analytics.request import APIError

from tests.api.conftest import WRITE, LiveServer, Stack, auth, eventually, make_settings, unique


def _client(url: str, *, gzip: bool = False, errors: list | None = None) -> SegmentClient:
    return SegmentClient(
        write_key=WRITE,
        host=url,
        sync_mode=True,
        gzip=gzip,
        max_retries=1,
        on_error=lambda exc, batch: (errors if errors is not None else []).append(exc),
    )


async def test_segment_client_events_land_once_and_start_runs(stack: Stack, tmp_path) -> None:
    http = stack.http
    jid, event = unique("seg"), unique("seg_evt").replace("-", "_")
    source = f'journey "{jid}"\n  entry event {event}\n  reentry always\n\n  tag add seen_{event}\n'
    r = await http.post("/v1/journeys", json={"source": source, "id": jid}, headers=auth())
    assert r.status_code == 201, r.text

    settings = make_settings(tmp_path, stack.settings.task_queue, temporal_address=stack.temporal_address)
    from api.app import create_app

    app = create_app(settings, store=stack.store)  # same store, its own Temporal client
    member = unique("m")
    errors: list = []
    with LiveServer(app) as url:
        seg = _client(url, errors=errors)
        await asyncio.to_thread(seg.identify, member, {"phone": "13911112222", "nickname": "小王"})
        await asyncio.to_thread(seg.track, member, event, {"via": "segment"}, None, None, None, None, "seg-msg-1")
        lookup = await http.get("/v1/users/lookup", params={"kind": "phone", "value": "139-1111-2222"}, headers=auth())
        assert lookup.status_code == 200, lookup.text
        uid = lookup.json()["user_id"]

        async def runs(n: int):
            async def check():
                items = (await http.get(f"/v1/users/{uid}/runs", headers=auth())).json()
                done = [x for x in items if x["journey_id"] == jid and x["ended_at"]]
                return done if len(done) == n else None

            return await eventually(check)

        assert await runs(1)
        # the same messageId again (a client retry): stored once, no second run
        await asyncio.to_thread(seg.track, member, event, {"via": "segment"}, None, None, None, None, "seg-msg-1")
        # gzip bodies work too; a new message id enters again (reentry always)
        gz = _client(url, gzip=True, errors=errors)
        await asyncio.to_thread(gz.track, member, event, {"via": "gzip"}, None, None, None, None, "seg-msg-2")
        done = await runs(2)
        assert done, "exactly two runs: the duplicate must not enter"
        await asyncio.sleep(0.5)
        items = (await http.get(f"/v1/users/{uid}/runs", headers=auth())).json()
        assert len([x for x in items if x["journey_id"] == jid]) == 2
        profile = (await http.get(f"/v1/users/{uid}", headers=auth())).json()
        assert profile["identities"]["member_id"] == [member]
        assert profile["attributes"]["nickname"] == "小王"
        assert any(t["tag"] == f"seen_{event}" for t in profile["tags"])
        # a wrong write key is refused (in sync mode the client raises it)
        bad = SegmentClient(write_key="nope", host=url, sync_mode=True, max_retries=0)
        with pytest.raises(APIError) as refused:
            await asyncio.to_thread(bad.track, unique("m"), event, {}, None, None, None, None, "seg-msg-bad")
        assert refused.value.status == 401
    assert errors == []
