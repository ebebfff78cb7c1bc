"""POST /v1/journeys/{id}/deliveries/replay: operators and admins, clear 4xx bodies,
counts of what it marked (the replay itself: tests/engine/test_replays.py,
tests/integration/test_vendor_outage.py, tests/console/test_console_replay.py)."""

from __future__ import annotations

from tests.api.conftest import OPERATOR, VIEWER, Stack, auth, unique

SOURCE = 'journey "{name}"\n  entry api\n  send webhook "hook"\n'


async def _journey(stack: Stack) -> str:
    jid = unique("replay")
    r = await stack.http.post("/v1/journeys", json={"source": SOURCE.format(name=jid), "id": jid}, headers=auth())
    assert r.status_code == 201, r.text
    return jid


async def test_operators_replay_viewers_do_not_and_bad_input_is_a_clear_4xx(stack: Stack) -> None:
    jid = await _journey(stack)
    path = f"/v1/journeys/{jid}/deliveries/replay"
    r = await stack.http.post(path, json={}, headers=auth(VIEWER))
    assert r.status_code == 403 and "operator" in r.text
    r = await stack.http.post(path, json={}, headers=auth(OPERATOR))
    assert r.status_code == 200, r.text
    r = await stack.http.post("/v1/journeys/nope/deliveries/replay", json={}, headers=auth())
    assert r.status_code == 404 and "nope" in r.text
    for body in ({"limit": 0}, {"limit": 1001}, {"version": 0}, {"node": "x"}, {"node_id": "x" * 129}):
        r = await stack.http.post(path, json=body, headers=auth())
        assert r.status_code == 422, (body, r.text)
        assert "Traceback" not in r.text
    r = await stack.http.post(path, json={"node_id": "send-webhook-hook"}, headers=auth())
    assert r.status_code == 200, r.text
    assert r.json() == {"requested": 0, "capped": 0, "not_replayable": 0, "more": False}
