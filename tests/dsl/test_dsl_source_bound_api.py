"""The API's bound on journey text derives from the language's
(``dsl.limits.MAX_SOURCE_CHARS``), so a text over the language's limit is
answered by the language — E130 with its line and caret, in the same list as
every other mistake — and not by the request validator's generic 422.

(It lives with the language's tests because it holds the API to the
language's constant; it needs no Temporal.)"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
import pytest_asyncio

from api.app import create_app
from api.schemas import API_SOURCE_CHARS
from api.settings import ApiSettings
from dsl.limits import MAX_SOURCE_CHARS
from engine.store import Store

OPERATOR = "k-operator"


@pytest_asyncio.fixture
async def http(tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    settings = ApiSettings(
        api_keys={OPERATOR: "operator"},
        database_url=f"sqlite:///{tmp_path / 'bound.db'}",
        temporal_address="",
        log_level="WARNING",
        log_json=False,
    )
    store = Store(settings.database_url)
    store.migrate()
    app = create_app(settings, store=store)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(
        transport=transport, base_url="http://api", headers={"Authorization": f"Bearer {OPERATOR}"}
    ) as client:
        yield client
    store.dispose()


def _over_the_language_limit() -> str:
    source = 'journey "big"\n' + "  pass\n" * (MAX_SOURCE_CHARS // 7 + 1)
    assert MAX_SOURCE_CHARS < len(source) <= API_SOURCE_CHARS
    return source


def test_the_api_bound_is_the_languages_doubled() -> None:
    assert API_SOURCE_CHARS == 2 * MAX_SOURCE_CHARS


async def test_a_deploy_over_the_language_limit_answers_e130(http: httpx.AsyncClient) -> None:
    answer = await http.post("/v1/journeys", json={"source": _over_the_language_limit()})
    assert answer.status_code == 422
    body = answer.json()
    codes = [e["code"] for e in body["errors"]]
    assert codes == ["E130"]
    assert body["errors"][0]["line"] == 1 and body["errors"][0]["column"] == 1
    assert f"{MAX_SOURCE_CHARS:,}" in body["errors"][0]["message"]


async def test_check_over_the_language_limit_reports_e130(http: httpx.AsyncClient) -> None:
    # /check answers 200 whatever the text holds; the mistake is in the list
    answer = await http.post("/v1/journeys/check", json={"source": _over_the_language_limit()})
    assert answer.status_code == 200
    assert [e["code"] for e in answer.json()["errors"]] == ["E130"]


@pytest.mark.parametrize("path", ["/v1/journeys", "/v1/journeys/check"])
async def test_far_over_it_the_validator_refuses(http: httpx.AsyncClient, path: str) -> None:
    answer = await http.post(path, json={"source": "#" * (API_SOURCE_CHARS + 1)})
    assert answer.status_code == 422
    assert all(e.get("code") != "E130" for e in answer.json().get("errors") or [])
