"""A big journey's kept counts are shared by the API processes through the
store (``engine.shelf``): a second process (or one just restarted) answers
its first stats call from the shelf, says how old the numbers are, and
recounts once they are due. Every count is made "expensive" here; the
processes are two apps, each with its own ``CountCache``."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from api.app import create_app
from contracts.activities import StepRecord
from engine import count_cache, node_numbers, runs, stats
from engine.count_cache import CountCache
from engine.events import ingest_event
from engine.store import Store
from tests.api.conftest import auth, make_settings, unique

SOURCE = """journey "{name}"
  entry api
  send webhook "hello"
"""
T0 = datetime(2026, 11, 1, 10, 0, tzinfo=UTC)


def entering(store: Store, jid: str) -> Callable[[str], None]:
    def enter(user: str) -> None:
        uid = ingest_event(
            store, event_id=f"seen-{user}", name="seen", identifiers={"member_id": user}, occurred_at=T0
        ).user_id
        run_key = f"journey:{jid}:{uid}:1"
        at = T0 + timedelta(hours=1)
        store.transact(
            lambda s: runs.begin(
                s,
                store,
                run_key=run_key,
                journey_id=jid,
                version=1,
                user_id=uid,
                mode="always",
                cooldown_seconds=None,
                now=at,
            )
        )
        step = StepRecord(
            run_key=run_key,
            seq=1,
            journey_id=jid,
            version=1,
            user_id=uid,
            node_id="s1",
            kind="send",
            outcome="passed",
            at=at,
        )
        runs.record_steps(store, [step])

    return enter


def process(monkeypatch: pytest.MonkeyPatch) -> None:
    """A new API process: nothing kept in its memory."""
    fresh = CountCache()
    monkeypatch.setattr(stats, "COUNTS", fresh)
    monkeypatch.setattr(node_numbers, "COUNTS", fresh)


async def test_a_second_api_process_answers_from_the_shelf(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    settings = make_settings(tmp_path, "nowhere")
    store = Store(settings.database_url)
    store.migrate()
    jid = unique("kept")
    enter = entering(store, jid)
    for user in ("u1", "u2", "u3"):
        enter(user)
    monkeypatch.setattr(count_cache, "EXPENSIVE_CPU", 0.0)
    monkeypatch.setattr(count_cache, "EXPENSIVE", 0.0)
    monkeypatch.setattr(count_cache, "MIN_AGE", 3600.0)
    monkeypatch.setattr(count_cache, "SPACING", 0.0)

    async def get(app: Any) -> dict[str, Any]:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api") as http:
            r = await http.get(f"/v1/journeys/{jid}/stats", headers=auth())
        assert r.status_code == 200, r.text
        return r.json()

    first = create_app(settings, store=store)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=first), base_url="http://api") as http:
        r = await http.post("/v1/journeys", json={"source": SOURCE.format(name=jid), "id": jid}, headers=auth())
        assert r.status_code == 201, r.text
    process(monkeypatch)
    assert (await get(first))["counts_age_seconds"] is None  # expensive once: still counted afresh
    kept = await get(first)
    assert kept["summary"]["entered"] == 3 and kept["counts_age_seconds"] is not None

    enter("u4")  # the store moves on; kept counts lag behind it
    process(monkeypatch)
    second = create_app(settings, store=store)
    served = await get(second)
    assert served["summary"] == kept["summary"] and served["nodes"] == kept["nodes"]
    assert served["counts_age_seconds"] is not None  # the operator sees they are not live

    monkeypatch.setattr(count_cache, "MIN_AGE", 0.0)  # due: served once more, recounted behind it
    for _ in range(200):
        recounted = await get(second)
        if recounted["summary"]["entered"] == 4:
            break
    assert recounted["summary"]["entered"] == 4
    assert {n["node_id"]: n["entered"] for n in recounted["nodes"]}["s1"] == 4
    assert {n["node_id"]: n["entered"] for n in served["nodes"]}["s1"] == 3
    store.dispose()


async def test_a_small_journey_writes_nothing_to_the_shelf(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from sqlalchemy import func, select

    from engine.store.models import KeptCount

    settings = make_settings(tmp_path, "nowhere")
    store = Store(settings.database_url)
    store.migrate()
    jid = unique("small")
    entering(store, jid)("u1")
    monkeypatch.setattr(count_cache, "EXPENSIVE_CPU", float("inf"))  # cheap however loaded the machine
    process(monkeypatch)
    app = create_app(settings, store=store)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api") as http:
        r = await http.post("/v1/journeys", json={"source": SOURCE.format(name=jid), "id": jid}, headers=auth())
        assert r.status_code == 201, r.text
        for _ in range(3):
            body = (await http.get(f"/v1/journeys/{jid}/stats", headers=auth())).json()
            assert body["summary"]["entered"] == 1 and body["counts_age_seconds"] is None
    with store.read() as s:
        assert s.execute(select(func.count()).select_from(KeptCount)).scalar_one() == 0
    store.dispose()
