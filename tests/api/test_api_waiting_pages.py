"""Who waits at a node, from Temporal visibility a page at a time
(``engine.visibility.waiting_page``) and through the node panel's cursor:
every waiting user once, never more than the page's size."""

from __future__ import annotations

from api.deps import COOKIE_NAME
from engine.visibility import waiting_counts, waiting_page
from tests.api.conftest import ADMIN, Stack, auth, eventually, unique

SOURCE = """journey "{name}"
  entry api
  wait 7d
  send webhook "never"
"""
USERS = 5


async def test_waiting_users_a_page_at_a_time(stack: Stack) -> None:
    http, jid = stack.http, unique("paged-wait")
    r = await http.post("/v1/journeys", json={"source": SOURCE.format(name=jid), "id": jid}, headers=auth())
    assert r.status_code == 201, r.text
    members = [{"kind": "member_id", "value": unique("m")} for _ in range(USERS)]
    r = await http.post(f"/v1/journeys/{jid}/runs", json={"identities": members}, headers=auth())
    assert r.status_code == 202, r.text
    users = [run["user_id"] for run in r.json()["runs"]]

    async def all_waiting() -> bool:
        return (await waiting_counts(stack.client, jid, ["wait-7d"])).get("wait-7d") == USERS

    assert await eventually(all_waiting)
    seen, token, sizes = [], None, []
    while True:
        page, token = await waiting_page(stack.client, jid, "wait-7d", 2, token=token)
        sizes.append(len(page))
        seen += page
        if token is None:
            break
    assert max(sizes) <= 2 and sorted(seen) == sorted(users)

    panel, cursor = [], None
    http.cookies.set(COOKIE_NAME, ADMIN)  # the panel is a page read: the cookie signs it in
    for _ in range(USERS + 1):
        params = {"limit": 2, **({"waiting_cursor": cursor} if cursor else {})}
        body = (await http.get(f"/console/journeys/{jid}/nodes/wait-7d", params=params)).json()
        assert body["waiting_source"] == "temporal" and len(body["waiting"]) <= 2
        panel += body["waiting"]
        cursor = body["waiting_next"]
        if cursor is None:
            break
    http.cookies.clear()
    assert sorted(panel) == sorted(users)
