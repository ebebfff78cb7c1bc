"""Login CSRF: another site's form cannot sign a browser in (or out); the
console's own form and clients without Origin/Referer (curl) can."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from api.settings import ApiSettings

FORM = {"content-type": "application/x-www-form-urlencoded"}
BODY = "key=k-view&next=%2Fconsole%2Fjourneys"


@pytest.fixture
def client(tmp_path: Path) -> TestClient:
    settings = ApiSettings(
        api_keys={"k-view": "viewer"},
        database_url=f"sqlite:///{tmp_path / 'l.db'}",
        temporal_address="",
        log_level="WARNING",
        log_json=False,
    )
    with TestClient(create_app(settings), base_url="http://console.example:8000") as c:
        yield c


@pytest.mark.parametrize(
    "headers",
    [
        {"Origin": "https://evil.example"},
        {"Origin": "http://console.example:9999"},  # same host, another port: another origin
        {"Origin": "null"},
        {"Referer": "https://evil.example/page"},
    ],
)
def test_a_cross_site_login_is_refused_and_sets_no_cookie(client: TestClient, headers: dict[str, str]) -> None:
    r = client.post("/console/login", content=BODY, headers={**FORM, **headers}, follow_redirects=False)
    assert r.status_code == 403
    assert "another site" in r.text and r.headers["content-type"].startswith("text/html")
    assert "set-cookie" not in r.headers
    logout = client.post("/console/logout", headers=headers, follow_redirects=False)
    assert logout.status_code == 403


@pytest.mark.parametrize(
    "headers",
    [
        {"Origin": "http://console.example:8000"},
        {"Referer": "http://console.example:8000/console/login?next=/docs"},
        {},  # curl: neither header
    ],
)
def test_the_consoles_own_form_and_curl_sign_in(client: TestClient, headers: dict[str, str]) -> None:
    r = client.post("/console/login", content=BODY, headers={**FORM, **headers}, follow_redirects=False)
    assert r.status_code == 303 and "journeys_key=" in r.headers["set-cookie"]
