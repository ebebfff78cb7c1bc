"""The audience preview before a broadcast: ``engine.audience``'s read-only
count, sample and explanation against the evaluator over every user's full
snapshot (the reference a broadcast is tested against), and ``POST
/v1/journeys/audience/preview`` over them, for text and a deployed journey,
with its refusals. On SQLite, and on PostgreSQL with
``JOURNEYS_TEST_PG_URL`` (``scripts/with-postgres``)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
import pytest_asyncio
from sqlalchemy.orm import Session

from api.app import create_app
from api.routes import audience as route
from dsl import compile_source
from dsl.ir import AudienceEntry, Cond
from engine import catalog, identity
from engine.activities import JourneyActivities
from engine.audience import count_audience, explain, full_snapshot_fn, sample_audience
from engine.events import ingest_event, link_identities
from engine.settings import Settings
from engine.store import Store
from engine.tags import add_tags
from tests.api.conftest import VIEWER, auth, make_settings
from tests.audience.support import brute_force
from tests.engine.conftest import BACKENDS, _pg_store

POOL = 40
SOURCE = """\
journey "winback"
  entry audience where {where} every day at 10:00
  send sms "hi"
"""
EXACT = "tag vip and not tag blocked and stage in [silent, churned]"
UNSURE = "tag vip and user.score >= 10"  # scores stored as strings "1e3" and "!" are ones SQL cannot decide


@pytest.fixture(params=BACKENDS)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    if request.param == "postgresql":
        yield from _pg_store()
        return
    s = Store(f"sqlite:///{tmp_path / 'journeys.db'}")
    s.migrate()
    yield s
    s.dispose()


def _pool(store: Store, now: datetime) -> None:
    """p00…p39: vip on even numbers, blocked on multiples of five, last seen
    1, 10 or 40 days ago (active, silent, churned), a numeric score (p08's
    is the string "1e3", which Python reads as 1000; p14's "!", a string
    sorting before "10"; p12's the digits "12", which SQL decides), and
    p38 merged into p36."""
    for i in range(POOL):
        uid = f"p{i:02d}"
        score: object = {8: "1e3", 12: "12", 14: "!"}.get(i, i)

        def work(s: Session, uid: str = uid, i: int = i, score: object = score) -> None:
            identity.ensure_user(s, uid, now=now - timedelta(days=60))
            identity.set_attributes(s, uid, {"score": score, "city": "上海"}, now=now - timedelta(days=60))
            tags = (["vip"] if i % 2 == 0 else []) + (["blocked"] if i % 5 == 0 else [])
            if tags:
                add_tags(s, uid, tags, source="crm", now=now - timedelta(days=60))

        store.transact(work)
        ingest_event(
            store,
            event_id=f"{uid}-open",
            name="app_open",
            user_id=uid,
            occurred_at=now - timedelta(days=(1, 10, 40)[i % 3]),
            now=now,
        )
    link_identities(store, {"phone": "13900000036"}, user_id="p36")
    link_identities(store, {"phone": "13900000036"}, user_id="p38")  # merged into p36: never selected


def _where(text: str) -> Cond:
    entry = compile_source(SOURCE.format(where=text), "w").entry
    assert isinstance(entry, AudienceEntry)
    return entry.where


@pytest.mark.parametrize("where", [EXACT, UNSURE, "not tag vip or stage is active", "tag nobody"])
def test_count_and_sample_agree_with_every_users_snapshot(store: Store, where: str) -> None:
    now = datetime.now(UTC)
    _pool(store, now)
    cond = _where(where)
    expected = brute_force(store, cond, now)
    snapshot = full_snapshot_fn(JourneyActivities(store, {}, Settings()), cond, now)
    counted = count_audience(store, cond, now=now, snapshot=snapshot)
    assert (counted.count, counted.at_most, counted.exact) == (len(expected), len(expected), True)
    assert counted.checked == (2 if where == UNSURE else 0)  # only p08's and p14's string scores went to Python
    assert sample_audience(store, cond, now=now, size=5, snapshot=snapshot) == expected[:5]
    assert sample_audience(store, cond, now=now, size=POOL, snapshot=snapshot) == expected  # p38 never


def test_the_sample_stops_at_its_scan_bound(store: Store) -> None:
    now = datetime.now(UTC)
    _pool(store, now)
    cond = _where(UNSURE)
    expected = brute_force(store, cond, now)
    assert expected[:4] == ["p08", "p10", "p12", "p16"] and "p14" not in expected
    snapshot = full_snapshot_fn(JourneyActivities(store, {}, Settings()), cond, now)
    # seven candidates scanned (p08 p10 p12 p14 p16 p18 p20): p14 was one and did not match
    assert sample_audience(store, cond, now=now, size=POOL, snapshot=snapshot, max_scan=7) == expected[:6]


def test_over_the_checks_bound_the_count_is_a_range(store: Store) -> None:
    now = datetime.now(UTC)
    _pool(store, now)
    cond = _where(UNSURE)
    expected = brute_force(store, cond, now)
    assert "p08" in expected and "p14" not in expected  # float("1e3") >= 10; "!" < "10"
    counted = count_audience(store, cond, now=now, max_checks=1)
    assert (counted.count, counted.at_most, counted.exact, counted.checked) == (
        len(expected) - 1,
        len(expected) + 1,
        False,
        0,
    )


def test_explain_names_each_part_and_whether_it_holds(store: Store) -> None:
    now = datetime.now(UTC)
    _pool(store, now)
    cond = _where(EXACT)
    snapshot = full_snapshot_fn(JourneyActivities(store, {}, Settings()), cond, now)
    assert [holds for _, holds in explain(cond, snapshot("p04"))] == [True, False, True]  # vip, silent
    assert [holds for _, holds in explain(cond, snapshot("p30"))] == [True, True, False]  # blocked, active


@pytest_asyncio.fixture
async def api(store: Store, tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(make_settings(tmp_path, "audience-preview", log_level="WARNING"), store=store)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://api") as http:
        yield http


async def test_the_preview_route(api: httpx.AsyncClient, store: Store) -> None:
    now = datetime.now(UTC)
    _pool(store, now)
    expected = brute_force(store, _where(EXACT), now)
    body = {"source": SOURCE.format(where=EXACT), "sample_size": 3}
    r = await api.post("/v1/journeys/audience/preview", json=body, headers=auth(VIEWER))
    assert r.status_code == 200, r.text
    out = r.json()
    assert (out["count"], out["exact"], out["at_most"]) == (len(expected), True, len(expected))
    assert [m["user_id"] for m in out["sample"]] == expected[:3]
    first = out["sample"][0]
    assert first["tags"] == ["vip"] and first["stage"] in ("silent", "churned")
    assert first["why"] == [
        {"condition": "tag vip", "holds": True},
        {"condition": "tag blocked", "holds": False},
        {"condition": "stage in [silent, churned]", "holds": True},
    ]
    assert out["where"] == "vip and not blocked and stage in [silent, churned]"
    assert out["schedule"] == "every day at 10:00" and isinstance(out["took_ms"], int)

    source = SOURCE.format(where=UNSURE)
    ir = compile_source(source, "winback")
    catalog.publish(
        store, "winback", name=ir.name, source=source, ir=ir.model_dump(mode="json"), hash=ir.content_hash()
    )
    r = await api.post("/v1/journeys/audience/preview", json={"journey_id": "winback"}, headers=auth(VIEWER))
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["count"] == len(brute_force(store, _where(UNSURE), now)) and out["checked"] == 2
    assert out["sample"][0]["user_id"] == "p08"
    assert out["sample"][0]["attributes"] == {"score": "1e3"}  # the compared attribute only, not the city
    assert len(out["sample"]) == min(route.DEFAULT_SAMPLE, out["count"])


@pytest.mark.parametrize(
    ("body", "status", "words"),
    [
        ({"source": 'journey "x"\n  entry api\n  send sms "hi"\n'}, 422, "not by audience"),
        ({"source": "journey x\n"}, 422, "the journey has"),
        ({"journey_id": "nope"}, 404, "journey 'nope' not found"),
        ({"source": SOURCE.format(where=EXACT), "journey_id": "x"}, 422, "one of them"),
        ({"source": SOURCE.format(where=EXACT), "version": 2}, 422, "version goes with journey_id"),
        ({"source": SOURCE.format(where=EXACT), "sample_size": route.MAX_SAMPLE + 1}, 422, "sample_size"),
        ({"source": "x" * (route.API_SOURCE_CHARS + 1)}, 422, "source"),
    ],
    ids=lambda v: str(v)[:30],
)
async def test_refusals(api: httpx.AsyncClient, body: dict, status: int, words: str) -> None:
    r = await api.post("/v1/journeys/audience/preview", json=body, headers=auth(VIEWER))
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/problem+json") and words in r.text


async def test_busy_and_unauthenticated(api: httpx.AsyncClient) -> None:
    body = {"source": SOURCE.format(where=EXACT)}
    assert (await api.post("/v1/journeys/audience/preview", json=body)).status_code == 401
    for _ in range(route.MAX_PREVIEWS):
        assert route.PREVIEWS.take()
    try:
        r = await api.post("/v1/journeys/audience/preview", json=body, headers=auth(VIEWER))
        assert r.status_code == 503 and r.headers["retry-after"] == route.RETRY_AFTER
    finally:
        for _ in range(route.MAX_PREVIEWS):
            route.PREVIEWS.give()
    assert route.PREVIEWS.busy == 0
