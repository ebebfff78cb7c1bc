"""The node panel lists who waits at a node and its deliveries a bounded page
at a time, with cursors: a node 100k runs wait at is never listed whole. No
Temporal here, so who waits comes from the store."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from api.console import view
from engine import run_pages
from engine.store import Store
from tests.api.many_runs import seed_waiting
from tests.console.conftest import make_settings
from tests.console.test_console_pages import deploy, login

SOURCE = """journey "paged"
  entry api
  send sms "t"
  wait 7d
  send sms "t"
"""
N = 450  # more than two of the largest panel pages
PANEL = "/console/journeys/paged/nodes/"


@pytest.fixture
def http(tmp_path: Path) -> Iterator[TestClient]:
    settings = make_settings(tmp_path)
    store = Store(settings.database_url)
    store.migrate()
    with TestClient(create_app(settings, store=store), base_url="http://console.test") as client:
        deploy(client, SOURCE, "paged")
        seed_waiting(store, "paged", N)
        login(client)
        yield client
    store.dispose()


def walk(http: TestClient, node: str, key: str, cursor_name: str, limit: int) -> list[list[str]]:
    pages, cursor = [], None
    while True:
        params = {"limit": limit, **({cursor_name: cursor} if cursor else {})}
        r = http.get(PANEL + node, params=params)
        assert r.status_code == 200, r.text
        body = r.json()
        pages.append([row if isinstance(row, str) else row["user_id"] for row in body[key]])
        cursor = body[key + "_next"]
        if cursor is None:
            return pages


def test_who_waits_a_page_at_a_time(http: TestClient) -> None:
    pages = walk(http, "wait-x", "waiting", "waiting_cursor", view.PANEL_MAX)
    assert [len(p) for p in pages] == [200, 200, 5]  # every tenth run has moved on
    users = [u for p in pages for u in p]
    assert sorted(users) == sorted(f"u{i:04d}" for i in range(N) if i % 10)  # none twice, none lost
    first = http.get(PANEL + "wait-x").json()
    assert first["waiting_source"] == "store" and len(first["waiting"]) == view.PANEL_LIMIT


def test_deliveries_a_page_at_a_time(http: TestClient) -> None:
    pages = walk(http, "send-x", "deliveries", "deliveries_cursor", 100)
    assert [len(p) for p in pages] == [100, 100, 100, 100, 50]
    assert [u for p in pages for u in p] == [f"u{i:04d}" for i in reversed(range(N))]  # newest first


@pytest.mark.parametrize(
    "query",
    [
        {"limit": view.PANEL_MAX + 1},  # the whole list cannot be asked for
        {"limit": 100_000},
        {"limit": 0},
        {"waiting_cursor": "not-a-cursor"},
        {"deliveries_cursor": "not-a-cursor"},
        {"deliveries_cursor": run_pages.encode_cursor({"at": "yesterday", "id": "x"})},
        {"waiting_cursor": run_pages.encode_cursor({"u": "u1"})},
    ],
)
def test_bad_page_values_are_422(http: TestClient, query: dict[str, object]) -> None:
    assert http.get(PANEL + "wait-x", params=query).status_code == 422
