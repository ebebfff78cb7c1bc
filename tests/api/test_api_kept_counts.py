"""A big journey's kept counts are shared by the API processes through the
store (``engine.shelf``): a second process (or one just restarted) answers
its first stats call from the shelf, says how old the numbers are, and
recounts once they are due. Every count is made "expensive" here; the
processes are two apps, each with its own ``CountCache``."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from api.app import create_app
from api.settings import ApiSettings
from engine import count_cache, node_numbers, stats
from engine.count_cache import CountCache
from engine.store import Store
from tests.api.conftest import auth, make_settings, unique
from tests.api.many_runs import seed_waiting

SOURCE = """journey "{name}"
  entry api
  send webhook "hello"
"""


def process(monkeypatch: pytest.MonkeyPatch) -> None:
    """A new API process: nothing kept in its memory."""
    fresh = CountCache()
    monkeypatch.setattr(stats, "COUNTS", fresh)
    monkeypatch.setattr(node_numbers, "COUNTS", fresh)


@dataclass
class Api:
    settings: ApiSettings
    store: Store

    def app(self) -> Any:
        """One API process's app over the shared store."""
        return create_app(self.settings, store=self.store)

    async def deploy(self, app: Any, *journeys: str) -> None:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api") as http:
            for jid in journeys:
                r = await http.post("/v1/journeys", json={"source": SOURCE.format(name=jid), "id": jid}, headers=auth())
                assert r.status_code == 201, r.text


@pytest.fixture
def api(tmp_path: Path) -> Iterator[Api]:
    settings = make_settings(tmp_path, "nowhere")
    store = Store(settings.database_url)
    store.migrate()
    yield Api(settings, store)
    store.dispose()


async def test_a_second_api_process_answers_from_the_shelf(api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    store = api.store
    jid = unique("kept")
    seed_waiting(store, jid, 3)
    monkeypatch.setattr(count_cache, "EXPENSIVE_CPU", 0.0)
    monkeypatch.setattr(count_cache, "EXPENSIVE", 0.0)
    monkeypatch.setattr(count_cache, "MIN_AGE", 3600.0)
    monkeypatch.setattr(count_cache, "SPACING", 0.0)

    async def get(app: Any) -> dict[str, Any]:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api") as http:
            r = await http.get(f"/v1/journeys/{jid}/stats", headers=auth())
        assert r.status_code == 200, r.text
        return r.json()

    first = api.app()
    await api.deploy(first, jid)
    process(monkeypatch)
    assert (await get(first))["counts_age_seconds"] is None  # expensive once: still counted afresh
    kept = await get(first)
    assert kept["summary"]["entered"] == 3 and kept["counts_age_seconds"] is not None

    seed_waiting(store, jid, 1, first=3)  # the store moves on; kept counts lag behind it
    process(monkeypatch)
    second = api.app()
    served = await get(second)
    assert served["summary"] == kept["summary"] and served["nodes"] == kept["nodes"]
    assert served["counts_age_seconds"] is not None  # the operator sees they are not live

    monkeypatch.setattr(count_cache, "MIN_AGE", 0.0)  # due: served once more, recounted behind it

    def entered(answer: dict[str, Any]) -> tuple[int, int]:  # the summary's and the node's: kept apart
        return answer["summary"]["entered"], {n["node_id"]: n["entered"] for n in answer["nodes"]}["send-x"]

    for _ in range(500):
        recounted = await get(second)
        if entered(recounted) == (4, 4):
            break
        await asyncio.sleep(0.01)
    assert entered(recounted) == (4, 4) and entered(served) == (3, 3)


async def test_a_small_journey_writes_nothing_to_the_shelf(api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    from sqlalchemy import func, select

    from engine.store.models import KeptCount

    store, jid = api.store, unique("small")
    seed_waiting(store, jid, 1)
    monkeypatch.setattr(count_cache, "EXPENSIVE_CPU", float("inf"))  # cheap however loaded the machine
    process(monkeypatch)
    app = api.app()
    await api.deploy(app, jid)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api") as http:
        for _ in range(3):
            body = (await http.get(f"/v1/journeys/{jid}/stats", headers=auth())).json()
            assert body["summary"]["entered"] == 1 and body["counts_age_seconds"] is None
    with store.read() as s:
        assert s.execute(select(func.count()).select_from(KeptCount)).scalar_one() == 0
    store.dispose()


async def test_a_big_journeys_first_counts_answer_503_until_counted(api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    """A journey that grew big unwatched: its first stats call does not hold
    for the seconds counting takes. It answers 503 with ``Retry-After`` (the
    console says so and polls again) while every first count goes on in the
    background, then the kept numbers, with their age. A small journey's
    slow count is still waited for."""
    import threading

    store = api.store
    big, small = unique("big"), unique("small")
    seed_waiting(store, big, 3)
    seed_waiting(store, small, 1)
    monkeypatch.setattr(stats, "BIG_RUNS", 3)
    process(monkeypatch)
    gate = threading.Event()
    slow_summary = stats._journey_summary

    def summary(*args: Any) -> Any:
        gate.wait(10)
        time.sleep(count_cache.EXPENSIVE_CPU)
        return slow_summary(*args)

    monkeypatch.setattr(stats, "_journey_summary", summary)
    app = api.app()
    await api.deploy(app, big, small)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api") as http:
        first = await http.get(f"/v1/journeys/{big}/stats", headers=auth())
        assert first.status_code == 503, first.text
        assert first.headers["Retry-After"] == "2"
        body = first.json()
        assert body["type"].endswith("/counting") and "counted for the first time" in body["detail"]
        assert (await http.get(f"/v1/journeys/{big}/stats", headers=auth())).status_code == 503  # still counting
        threading.Timer(0.5, gate.set).start()
        waited = await http.get(f"/v1/journeys/{small}/stats", headers=auth())  # small: held until counted
        assert waited.status_code == 200 and waited.json()["summary"]["entered"] == 1
        for _ in range(300):
            done = await http.get(f"/v1/journeys/{big}/stats", headers=auth())
            if done.status_code == 200:
                break
            await asyncio.sleep(0.02)
    assert done.status_code == 200, done.text
    assert done.json()["summary"]["entered"] == 3
