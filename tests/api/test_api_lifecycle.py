"""The lifecycle through the API: every legal move answers 200/202 with the
status it left, every illegal one 409 problem JSON naming where the journey
is and where it may go (and changes nothing)."""

from __future__ import annotations

from typing import Any

from tests.api.conftest import Stack, auth, unique

SOURCE = 'journey "{name}"\n  entry api\n\n  wait 1d\n'
MOVES = {"active": "resume", "paused": "pause", "stopped": "stop", "archived": "archive"}


async def _deploy(stack: Stack, *, draft: bool = False) -> str:
    jid = unique("life")
    body: dict[str, Any] = {"source": SOURCE.format(name=jid), "id": jid, "draft": draft}
    r = await stack.http.post("/v1/journeys", json=body, headers=auth())
    assert r.status_code == 201, r.text
    return jid


async def _status(stack: Stack, jid: str) -> str:
    return (await stack.http.get(f"/v1/journeys/{jid}", headers=auth())).json()["status"]


async def _move(stack: Stack, jid: str, to: str) -> Any:
    return await stack.http.post(f"/v1/journeys/{jid}/{MOVES[to]}", headers=auth())


async def _legal(stack: Stack, jid: str, to: str, previous: str) -> None:
    r = await _move(stack, jid, to)
    assert r.status_code in (200, 202), r.text
    body = r.json()
    assert body["status"] == to
    if "previous_status" in body:
        assert body["previous_status"] == previous
    assert await _status(stack, jid) == to


async def _illegal(stack: Stack, jid: str, to: str, current: str, allowed: list[str]) -> None:
    r = await _move(stack, jid, to)
    assert r.status_code == 409, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    body = r.json()
    assert body["type"].endswith("/illegal-transition")
    assert (body["current_status"], body["requested"], body["allowed"]) == (current, to, allowed)
    assert f"is {current}" in body["detail"] and f"cannot become {to}" in body["detail"]
    assert await _status(stack, jid) == current


async def test_a_draft_admits_nobody_and_only_activates(stack: Stack) -> None:
    jid = await _deploy(stack, draft=True)
    assert await _status(stack, jid) == "draft"
    for to in ("paused", "stopped"):
        await _illegal(stack, jid, to, "draft", ["active"])
    r = await stack.http.post(f"/v1/journeys/{jid}/archive", headers=auth())
    assert r.status_code == 409 and r.json()["current_status"] == "draft"
    r = await stack.http.post(f"/v1/journeys/{jid}/runs", json={"user_id": unique("u")}, headers=auth())
    assert r.status_code == 409 and "draft" in r.json()["detail"]
    # redeploying a draft keeps it a draft
    again = {"source": SOURCE.format(name=jid) + "  wait 2d\n", "id": jid}
    assert (await stack.http.post("/v1/journeys", json=again, headers=auth())).json()["journey"]["status"] == "draft"
    await _legal(stack, jid, "active", "draft")


async def test_active_and_paused_go_back_and_forth_then_stop_for_good(stack: Stack) -> None:
    jid = await _deploy(stack)
    await _legal(stack, jid, "paused", "active")
    await _legal(stack, jid, "paused", "paused")  # a repeat changes nothing
    await _legal(stack, jid, "active", "paused")
    await _legal(stack, jid, "active", "active")
    await _legal(stack, jid, "paused", "active")
    await _legal(stack, jid, "stopped", "paused")
    await _legal(stack, jid, "stopped", "stopped")  # another sweep for stragglers
    for to in ("active", "paused"):
        await _illegal(stack, jid, to, "stopped", ["archived"])
    await _legal(stack, jid, "archived", "stopped")
    assert (await _move(stack, jid, "archived")).json()["note"] == "already archived"
    for to in ("active", "paused", "stopped"):
        await _illegal(stack, jid, to, "archived", [])
    r = await stack.http.post("/v1/journeys", json={"source": SOURCE.format(name=jid), "id": jid}, headers=auth())
    assert r.status_code == 409 and "archived" in r.json()["detail"]


async def test_archiving_an_idle_active_journey_stops_it_on_the_way(stack: Stack) -> None:
    jid = await _deploy(stack)
    await _legal(stack, jid, "archived", "active")


async def test_an_unknown_journey_is_404_for_every_move(stack: Stack) -> None:
    for to in MOVES:
        r = await _move(stack, "no-such-journey", to)
        assert r.status_code == 404, r.text
