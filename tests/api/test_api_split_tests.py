"""The split-test API on the real stack (dev server, worker, SQLite): a
test's state while it runs, an operator's override before the window ends
(the held runs take the operator's variant), and clear 4xx bodies."""

from __future__ import annotations

from sqlalchemy import select

from engine.store.models import Delivery, StepRecord
from tests.api.conftest import VIEWER, Stack, auth, eventually, unique

SOURCE = """\
journey "{name}"
  entry api
  reentry always
  goal event order_paid within 1d
  split test 50% for 8s by goal:
    50% A: send webhook "{tpl}"
    50% B: send webhook "{tpl}"
"""


async def test_a_running_test_shows_and_an_override_decides_for_the_held_runs(stack: Stack) -> None:
    http = stack.http
    jid, tpl = unique("splittest"), unique("tpl")
    assert (await http.put(f"/v1/templates/{tpl}", json={"body": "hi"}, headers=auth())).status_code in (200, 201)
    r = await http.post("/v1/journeys", json={"source": SOURCE.format(name=jid, tpl=tpl), "id": jid}, headers=auth())
    assert r.status_code == 201, r.text
    users = [unique("u") for _ in range(12)]
    assert (await http.post(f"/v1/journeys/{jid}/runs", json={"user_ids": users}, headers=auth())).status_code == 202

    async def started() -> dict | None:
        tests = (await http.get(f"/v1/journeys/{jid}/split-tests", headers=auth(VIEWER))).json()
        return tests[0] if tests and tests[0]["started_at"] else None

    test = await eventually(started)
    assert test is not None and test["node_id"] == "split-A-B" and test["winner"] is None
    assert test["otherwise"] == "A" and test["metric"] == "goal" and test["ends_at"] > test["started_at"]
    assert set(test["numbers"]["variants"]) == {"A", "B"}
    assert test["leader"] == "A" and "too few runs in the test" in test["so_far"]  # 12 runs: nobody can win yet

    async def all_at_the_split() -> bool:  # each run is in the test or held, before the override
        with stack.store.read() as s:
            rows = s.scalars(select(StepRecord.user_id).where(StepRecord.journey_id == jid, StepRecord.kind == "split"))
            return len(set(rows)) == len(users)

    assert await eventually(all_at_the_split)
    r = await http.put(f"/v1/journeys/{jid}/split-tests/split-A-B/winner", json={"variant": "B"}, headers=auth())
    assert r.status_code == 200, r.text
    assert (r.json()["winner"], r.json()["decided_by"]) == ("B", "operator")

    def variants() -> dict[str, str | None]:
        with stack.store.read() as s:
            rows = s.execute(select(Delivery.user_id, Delivery.variant).where(Delivery.journey_id == jid)).all()
        return {u: v for u, v in rows}

    async def all_sent() -> dict | None:
        got = variants()
        return got if len(got) == len(users) else None

    sent = await eventually(all_sent)
    assert sent is not None
    with stack.store.read() as s:
        held = set(
            s.scalars(select(StepRecord.user_id).where(StepRecord.journey_id == jid, StepRecord.outcome == "held"))
        )
    assert held, "12 runs at 50%: some were held"
    assert {sent[u] for u in held} == {"B"}  # every held run took the operator's B
    stats = (await http.get(f"/v1/journeys/{jid}/stats", headers=auth(VIEWER))).json()
    [shown] = stats["split_tests"]
    assert (shown["node_id"], shown["winner"], shown["decided_by"]) == ("split-A-B", "B", "operator")


async def test_bad_overrides_are_clear_4xx(stack: Stack) -> None:
    http = stack.http
    jid, tpl = unique("splitbad"), unique("tpl")
    await http.put(f"/v1/templates/{tpl}", json={"body": "hi"}, headers=auth())
    r = await http.post("/v1/journeys", json={"source": SOURCE.format(name=jid, tpl=tpl), "id": jid}, headers=auth())
    assert r.status_code == 201, r.text
    path = f"/v1/journeys/{jid}/split-tests/split-A-B/winner"
    assert (await http.put(path, json={"variant": "B"}, headers=auth(VIEWER))).status_code == 403
    r = await http.put(path, json={"variant": "C"}, headers=auth())
    assert r.status_code == 422 and "not a variant" in r.text
    r = await http.put(f"/v1/journeys/{jid}/split-tests/nope/winner", json={"variant": "A"}, headers=auth())
    assert r.status_code == 404 and "not a split test" in r.text
    r = await http.put(path, json={"variant": "A", "extra": 1}, headers=auth())
    assert r.status_code == 422
    assert (await http.get("/v1/journeys/none/split-tests", headers=auth())).status_code == 404
