"""Searches typed into the console reach the access log URL-encoded
(``%40``, ``+``, ``%20``); what is logged is masked all the same."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from api.logs import MaskFilter, mask_text
from api.settings import ApiSettings


@pytest.mark.parametrize(
    ("text", "masked"),
    [
        ("q=alice%40example.com", "q=a***@example.com"),
        ("q=138+0000+1234", "q=138+****+1234"),
        ("q=138%200000%201234", "q=138 **** 1234"),
        ("q=138-0000-1234&page=2", "q=138-****-1234&page=2"),
        ("q=%2B86%20138-0000-1234", "q=+86 138-****-1234"),
        ("tel 138 0000 1234", "tel 138 **** 1234"),
        ("50% off, order 20261123", "50% off, order 20261123"),
    ],
)
def test_encoded_and_spaced_identifiers_are_masked(text: str, masked: str) -> None:
    assert mask_text(text) == masked
    assert mask_text(masked) == masked


def test_the_access_line_of_a_console_search_is_masked(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    settings = ApiSettings(
        api_keys={"k-view": "viewer"},
        database_url=f"sqlite:///{tmp_path / 'm.db'}",
        temporal_address="",
        log_level="INFO",
        log_json=False,
    )
    with TestClient(create_app(settings)) as client, caplog.at_level(logging.INFO, "journeys.api.access"):
        client.get("/console/users?q=alice%40example.com", headers={"X-API-Key": "k-view"})
        client.get("/console/users?q=138+0000+1234", headers={"X-API-Key": "k-view"})
    lines = []
    for record in caplog.records:
        if record.name == "journeys.api.access":
            MaskFilter().filter(record)
            lines.append(record.getMessage())
    # each search, and the sign-in page it was sent to (the search in ``next``)
    assert len(lines) == 4, lines
    assert not [line for line in lines if "alice" in line or "0000" in line], lines
    assert "a***@example.com" in lines[0] and "138 **** 1234" in lines[2]


def test_uvicorns_own_access_line_is_formatted_and_masked() -> None:
    """``uvicorn 'api.app:create_app' --factory`` (the production line) logs
    each request through uvicorn's AccessFormatter, which needs the record's
    args: masked in place, not collapsed (that printed a traceback a request)."""
    from uvicorn.logging import AccessFormatter

    record = logging.LogRecord(
        "uvicorn.access",
        logging.INFO,
        __file__,
        1,
        '%s - "%s %s HTTP/%s" %d',
        ("127.0.0.1:5000", "GET", "/console/users?q=138+0000+1234&phone=13800001234", "1.1", 200),
        None,
    )
    assert MaskFilter().filter(record)
    line = AccessFormatter("%(message)s", use_colors=False).format(record)
    assert "GET /console/users?q=138+****+1234&phone=138***234 HTTP/1.1" in line and "0000" not in line, line
