"""Invalid Unicode never reaches the store: a lone surrogate anywhere in a
JSON body (spelt ``\\ud83d`` or as raw bytes) is a 400 naming its path, and
nothing of the request is kept. Plus a property-based fuzz of the ingest
bodies: whatever arrives, the answer is a success or a 4xx, never a 5xx."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.api.conftest import WRITE, Stack, auth, unique

JSON = {"content-type": "application/json"}


def _raw(body: Any) -> str:
    """The body as JSON text with ``<LONE>`` spelt as a lone surrogate escape."""
    return json.dumps(body).replace("<LONE>", "\\ud83d")


async def _lookup(stack: Stack, member_id: str) -> int:
    r = await stack.http.get("/v1/users/lookup", params={"kind": "member_id", "value": member_id}, headers=auth())
    return r.status_code


async def test_a_lone_surrogate_in_a_trait_is_refused_with_its_path(stack: Stack) -> None:
    member = unique("m")
    raw = _raw({"userId": member, "traits": {"name": "<LONE>", "plan": "gold"}})
    r = await stack.http.post("/v1/identify", content=raw, auth=(WRITE, ""), headers=JSON)
    assert r.status_code == 400, r.text
    assert r.headers["content-type"] == "application/problem+json"
    problem = r.json()
    assert "body.traits.name" in problem["detail"] and problem["errors"][0]["field"] == "body.traits.name"
    assert await _lookup(stack, member) == 404  # nothing stored


async def test_surrogates_in_keys_nested_values_raw_bytes_and_batches(stack: Stack) -> None:
    member = unique("m")
    cases: list[tuple[str, str | bytes, str]] = [
        (
            "/v1/track",
            _raw({"userId": member, "event": "e", "properties": {"items": ["ok", "<LONE>x"]}}),
            "body.properties.items.1",
        ),
        ("/v1/track", _raw({"userId": member, "event": "e", "properties": {"<LONE>": 1}}), "body.properties.\\ud83d"),
        (
            "/v1/track",
            _raw({"userId": member, "event": "e", "properties": {"p": "<LONE>"}})
            .replace("\\ud83d", "\udc00")
            .encode("utf-8", "surrogatepass"),
            "body.properties.p",
        ),
        (
            "/v1/batch",
            _raw(
                {
                    "batch": [
                        {"type": "identify", "userId": member, "traits": {"a": 1}},
                        {"type": "track", "userId": member, "event": "<LONE>"},
                    ]
                }
            ),
            "body.batch.1.event",
        ),
    ]
    for path, raw, field in cases:
        r = await stack.http.post(path, content=raw, auth=(WRITE, ""), headers=JSON)
        assert r.status_code == 400, (path, r.text)
        assert r.json()["errors"][0]["field"] == field, r.json()
    assert await _lookup(stack, member) == 404  # the batch's good first message was not kept either


async def test_a_surrogate_pair_is_an_emoji_and_welcome(stack: Stack) -> None:
    member = unique("m")
    # a pair spelt as two escapes, and a backslash-u that is only text
    pair = json.dumps({"userId": member, "traits": {"mood": "<PAIR>", "note": "a \\ud83d b"}})
    raw = pair.replace("<PAIR>", "\\ud83d\\ude00")
    r = await stack.http.post("/v1/identify", content=raw, auth=(WRITE, ""), headers=JSON)
    assert r.status_code == 200, r.text
    r = await stack.http.get("/v1/users/lookup", params={"kind": "member_id", "value": member}, headers=auth())
    user = await stack.http.get(f"/v1/users/{r.json()['user_id']}", headers=auth())
    assert user.status_code == 200 and "\U0001f600" in user.text


# ------------------------------------------------------------------ fuzz

_text = st.text(alphabet=st.characters(codec=None), max_size=12)  # surrogates included
_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | _text,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_text, inner, max_size=4),
    max_leaves=12,
)
_message = st.fixed_dictionaries(
    {},
    optional={
        "type": st.sampled_from(["track", "identify", "page", "alias", "group", "screen", "nope"]),
        "userId": _text | st.integers(),
        "anonymousId": _text,
        "event": _text,
        "previousId": _text,
        "messageId": _text,
        "properties": _json,
        "traits": _json,
        "context": _json,
        "timestamp": _text | st.integers(),
    },
)


def _encode(value: Any) -> bytes:
    return json.dumps(value, ensure_ascii=True).encode()


_body = st.one_of(
    _message.map(_encode),
    st.builds(lambda batch: _encode({"batch": batch}), st.lists(_message, max_size=3)),
    _json.map(_encode),
    st.binary(max_size=200),
)


async def test_fuzzed_ingest_bodies_are_answered_success_or_4xx(stack: Stack) -> None:
    loop = asyncio.get_running_loop()
    seen: list[tuple[int, bytes]] = []

    def post(path: str, body: bytes) -> httpx.Response:
        call = stack.http.post(path, content=body, auth=(WRITE, ""), headers=JSON)
        return asyncio.run_coroutine_threadsafe(call, loop).result(timeout=60)

    @given(path=st.sampled_from(["/v1/track", "/v1/identify", "/v1/batch", "/v1/page", "/v1/alias"]), body=_body)
    @settings(max_examples=150, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    def fuzz(path: str, body: bytes) -> None:
        r = post(path, body)
        seen.append((r.status_code, body))
        assert r.status_code == 200 or 400 <= r.status_code < 500, (path, body, r.status_code, r.text[:300])
        if r.status_code >= 400:
            assert r.headers["content-type"] == "application/problem+json"

    await asyncio.to_thread(fuzz)
    assert any(code == 400 for code, _ in seen)  # the fuzz did reach the refusals


async def test_a_row_stored_before_the_refusal_is_a_409_until_repaired(stack: Stack) -> None:
    from engine.repair import repair_unicode
    from engine.store.models import User

    user_id = unique("u")
    with stack.store.session() as session:
        session.add(User(id=user_id, attributes={"name": "a\ud83d"}))
    broken = await stack.http.get(f"/v1/users/{user_id}", headers=auth())
    assert broken.status_code == 409, broken.text
    assert "repair-unicode" in broken.json()["detail"]
    assert repair_unicode(stack.store).rows.get("users.attributes", 0) >= 1
    fixed = await stack.http.get(f"/v1/users/{user_id}", headers=auth())
    assert fixed.status_code == 200 and "a\ufffd" in fixed.json()["attributes"].values()
