"""The API description and its Swagger UI need a key like every route but
health: an API key of any role or a signed-in console cookie; write keys and
strangers get nothing but a 401 (or, in a browser, the sign-in page)."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from api.settings import ApiSettings


@pytest.fixture
def client(tmp_path: Path) -> TestClient:
    settings = ApiSettings(
        api_keys={"k-view": "viewer"},
        write_keys=["wk-site"],
        database_url=f"sqlite:///{tmp_path / 'docs.db'}",
        log_level="WARNING",
        log_json=False,
    )
    with TestClient(create_app(settings)) as c:
        yield c


def test_openapi_needs_an_api_key(client: TestClient) -> None:
    assert client.get("/openapi.json").status_code == 401
    assert client.get("/openapi.json", headers={"Authorization": "Bearer wk-site"}).status_code == 401
    assert client.get("/openapi.json", headers={"Authorization": "Bearer nope"}).status_code == 401
    answer = client.get("/openapi.json", headers={"X-API-Key": "k-view"})
    assert answer.status_code == 200
    paths = answer.json()["paths"]
    assert "/v1/track" in paths and "/v1/journeys" in paths
    assert "/openapi.json" not in paths and "/docs" not in paths
    assert answer.headers["content-type"].startswith("application/json")


def test_docs_send_a_stranger_to_sign_in_and_back(client: TestClient) -> None:
    first = client.get("/docs", follow_redirects=False)
    assert first.status_code == 303
    assert first.headers["location"] == "/console/login?next=/docs"
    signed_in = client.post(
        "/console/login",
        content="key=k-view&next=%2Fdocs",
        headers={"content-type": "application/x-www-form-urlencoded"},
        follow_redirects=False,
    )
    assert signed_in.status_code == 303 and signed_in.headers["location"] == "/docs"
    page = client.get("/docs")
    assert page.status_code == 200 and "swagger-ui" in page.text and "/openapi.json" in page.text
    assert client.get("/openapi.json").status_code == 200  # what the page fetches, with the cookie
    assert client.get("/redoc").status_code == 404


def test_health_stays_open(client: TestClient) -> None:
    assert client.get("/health").status_code == 200


def test_every_error_is_documented_as_a_problem_document(client: TestClient) -> None:
    schema = client.get("/openapi.json", headers={"X-API-Key": "k-view"}).json()
    assert "HTTPValidationError" not in schema["components"]["schemas"]
    operations = [op for item in schema["paths"].values() for op in item.values()]
    assert len(operations) >= 30
    for operation in operations:
        errors = {code: r for code, r in operation["responses"].items() if code[0] in "45"}
        assert {"400", "401", "413", "422", "503"} <= set(errors), operation["operationId"]
        for response in errors.values():
            assert list(response["content"]) == ["application/problem+json"], operation["operationId"]
            assert response["content"]["application/problem+json"]["schema"] == {
                "$ref": "#/components/schemas/ProblemOut"
            }
