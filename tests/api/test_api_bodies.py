"""Request bodies are bounded before any route sees them (``api.bodies``):
auth from headers before a compressed body is inflated, a streamed cap on the
raw bytes (Content-Length or chunked alike) and on the inflated bytes."""

from __future__ import annotations

import gzip
import json
import zlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from api.app import create_app
from api.bodies import BodyRefused, Inflater
from api.settings import ApiSettings
from engine.store.models import Event
from tests.api.conftest import ADMIN, WRITE, Stack, auth, unique

LIMIT = 2_000_000


def _bomb(inflated_mb: int) -> bytes:
    """``inflated_mb`` MB of zeros, gzipped (about a thousandth of that)."""
    z = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    block = b"\0" * 1_000_000
    return b"".join([*(z.compress(block) for _ in range(inflated_mb)), z.flush()])


def test_the_inflater_stops_at_the_limit_without_inflating_the_rest() -> None:
    bomb = _bomb(200)
    inflater = Inflater("gzip", LIMIT)
    fed = 0
    with pytest.raises(BodyRefused) as refused:
        for start in range(0, len(bomb), 16_384):
            inflater.feed(bomb[start : start + 16_384])
            fed += 1
    assert refused.value.status == 413 and refused.value.extra["limit_bytes"] == LIMIT
    assert inflater.inflated <= LIMIT + 1  # never more than the limit in memory
    assert inflater.consumed < len(bomb) // 10  # stopped long before the end of the input


def test_the_inflater_gives_back_what_was_sent() -> None:
    data = json.dumps({"event": "x" * 50_000}).encode()
    packed = gzip.compress(data) + gzip.compress(b" ")  # two members, as `cat a.gz b.gz`
    inflater = Inflater("gzip", LIMIT)
    out = b"".join(inflater.feed(packed[i : i + 100]) for i in range(0, len(packed), 100)) + inflater.finish()
    assert out == data + b" "
    truncated = Inflater("gzip", LIMIT)
    truncated.feed(packed[:50])
    with pytest.raises(BodyRefused) as refused:
        truncated.finish()
    assert refused.value.status == 400


async def _call(
    app: Any, method: str, path: str, headers: list[tuple[bytes, bytes]], chunks: list[bytes]
) -> tuple[int, dict[str, Any], int]:
    """One request straight through ASGI; the status, the JSON answer and how
    many body chunks the app asked for."""
    pending = list(chunks)
    asked = 0
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        nonlocal asked
        asked += 1
        if pending:
            chunk = pending.pop(0)
            return {"type": "http.request", "body": chunk, "more_body": bool(pending)}
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"api"), *headers],
        "client": ("127.0.0.1", 1),
        "server": ("api", 80),
    }
    await app(scope, receive, send)
    start = next(m for m in sent if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return start["status"], json.loads(body or b"null"), asked


@pytest.fixture
def bare_app(tmp_path: Path) -> Any:
    settings = ApiSettings(
        write_keys=[WRITE],
        api_keys={ADMIN: "admin"},
        database_url=f"sqlite:///{tmp_path / 'b.db'}",
        temporal_address="",
        log_level="WARNING",
        log_json=False,
    )
    return create_app(settings)


async def test_a_strangers_gzip_bomb_is_refused_before_its_body_is_read(bare_app: Any) -> None:
    bomb = _bomb(50)
    headers = [
        (b"content-type", b"application/json"),
        (b"content-encoding", b"gzip"),
        (b"transfer-encoding", b"chunked"),
    ]
    status, answer, asked = await _call(bare_app, "POST", "/v1/track", headers, [bomb])
    assert status == 401 and "header" in answer["detail"]
    assert asked == 0  # not one byte of it was read
    unknown = [*headers, (b"authorization", b"Basic " + __import__("base64").b64encode(b"nope:"))]
    status, _, asked = await _call(bare_app, "POST", "/v1/track", unknown, [bomb])
    assert status == 401 and asked == 0


async def test_content_length_over_the_limit_is_refused_unread(bare_app: Any) -> None:
    headers = [(b"content-type", b"application/json"), (b"content-length", str(LIMIT + 1).encode())]
    status, answer, asked = await _call(bare_app, "POST", "/v1/journeys", headers, [b"{}"])
    assert status == 413 and answer["limit_bytes"] == LIMIT and str(LIMIT) in answer["detail"]
    assert asked == 0
    status, _, _ = await _call(bare_app, "POST", "/v1/track", [(b"content-encoding", b"br")], [b"{}"])
    assert status == 415


async def test_a_chunked_body_is_capped_on_every_json_route(bare_app: Any) -> None:
    chunks = [b'{"source": "' + b"x" * 1_000_000] + [b"x" * 1_000_000] * 9 + [b'"}']
    headers = [(b"content-type", b"application/json"), (b"authorization", f"Bearer {ADMIN}".encode())]
    status, answer, asked = await _call(bare_app, "POST", "/v1/journeys", headers, chunks)
    assert status == 413 and answer["limit_bytes"] == LIMIT
    assert asked <= 3  # stopped reading once past the limit


async def _chunks(data: bytes, size: int = 65_536) -> AsyncIterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


def _stored(stack: Stack, event_id: str) -> bool:
    with stack.store.read() as session:
        return session.scalar(select(Event.id).where(Event.id == event_id)) is not None


async def test_a_10_mb_chunked_event_is_refused_and_not_stored(stack: Stack) -> None:
    message_id = unique("big")
    body = json.dumps(
        {"userId": unique("m"), "event": "huge", "messageId": message_id, "properties": {"blob": "x" * 10_000_000}}
    ).encode()
    r = await stack.http.post(
        "/v1/track", content=_chunks(body), auth=(WRITE, ""), headers={"content-type": "application/json"}
    )
    assert "content-length" not in r.request.headers  # it really went chunked
    assert r.status_code == 413 and r.headers["content-type"] == "application/problem+json"
    assert r.json()["limit_bytes"] == stack.settings.max_body_bytes
    assert not _stored(stack, message_id)
    small_id = unique("small")
    small = json.dumps({"userId": unique("m"), "event": "small", "messageId": small_id}).encode()
    r = await stack.http.post(
        "/v1/track", content=_chunks(small, 7), auth=(WRITE, ""), headers={"content-type": "application/json"}
    )
    assert r.status_code == 200, r.text
    assert _stored(stack, small_id)


async def test_a_keyed_gzip_bomb_is_413_and_a_keyed_gzip_event_is_stored(stack: Stack) -> None:
    r = await stack.http.post(
        "/v1/track",
        content=_bomb(50),
        auth=(WRITE, ""),
        headers={"content-type": "application/json", "content-encoding": "gzip"},
    )
    assert r.status_code == 413 and "decompressed" in r.json()["detail"]
    message_id = unique("gz")
    packed = gzip.compress(json.dumps({"userId": unique("m"), "event": "zipped", "messageId": message_id}).encode())
    r = await stack.http.post(
        "/v1/track",
        content=packed,
        headers={**auth(ADMIN), "content-encoding": "gzip", "content-type": "application/json"},
    )
    assert r.status_code == 200, r.text
    assert _stored(stack, message_id)
    # a body write key still works for plain bodies (Segment allows it)
    body_key = {"userId": unique("m"), "event": "keyed", "messageId": unique("bk"), "writeKey": WRITE}
    assert (await stack.http.post("/v1/track", json=body_key)).status_code == 200
