from __future__ import annotations

import hashlib
import hmac
import json
import socket
import time

import pytest

from engine.channels.config import WebhookConfig
from engine.channels.webhook import WebhookProvider, sign, verify_signature

from .vendors import WEBHOOK_SECRET, Canned, VendorState


def provider(base_url: str, path: str = "/hook", **kw: object) -> WebhookProvider:
    return WebhookProvider(WebhookConfig(url=f"{base_url}{path}", secret=WEBHOOK_SECRET, timeout_s=2, **kw))


async def test_posts_signed_json_with_idempotency_key(vendor: VendorState, base_url: str, make_message) -> None:
    msg = make_message("webhook", None, data={"coupon": "C-1"})
    result = await provider(base_url).send(msg)

    assert result.status == "sent" and result.provider_message_id == "hook-1"
    (req,) = vendor.calls("/hook")
    assert req.headers["content-type"] == "application/json"
    assert req.headers["idempotency-key"] == msg.idempotency_key
    assert req.json() == msg.model_dump(mode="json")
    ts = req.headers["x-journeys-timestamp"]
    assert abs(int(ts) - time.time()) < 5
    # Independently computed: HMAC-SHA256 over "<timestamp>." + raw body.
    expected = hmac.new(WEBHOOK_SECRET.encode(), ts.encode() + b"." + req.body, hashlib.sha256).hexdigest()
    assert req.headers["x-journeys-signature"] == f"sha256={expected}"
    assert verify_signature(WEBHOOK_SECRET, req.body, req.headers["x-journeys-signature"], ts)


async def test_retry_carries_same_key_so_receiver_dedupes(vendor: VendorState, base_url: str, make_message) -> None:
    p = provider(base_url)
    msg = make_message("webhook", None)
    first = await p.send(msg)
    second = await p.send(msg)
    assert first.provider_message_id == second.provider_message_id
    assert len(vendor.calls("/hook")) == 2 and len(vendor.webhook_seen) == 1


async def test_extra_headers_cannot_override_signature(vendor: VendorState, base_url: str, make_message) -> None:
    p = provider(base_url, headers={"X-Tenant": "shop-1", "X-Journeys-Signature": "forged"})
    assert (await p.send(make_message("webhook", None))).status == "sent"
    (req,) = vendor.calls("/hook")
    assert req.headers["x-tenant"] == "shop-1"
    assert req.headers["x-journeys-signature"].startswith("sha256=")


@pytest.mark.parametrize("status", [500, 502, 503, 429, 408])
async def test_server_errors_and_throttling_are_retryable(
    vendor: VendorState, base_url: str, make_message, status: int
) -> None:
    vendor.script("/hook", Canned(status, {"error": "later"}))
    result = await provider(base_url).send(make_message("webhook", None))
    assert result.status == "failed" and result.retryable
    assert str(status) in (result.error or "")


async def test_client_errors_are_final(vendor: VendorState, base_url: str, make_message) -> None:
    result = await provider(base_url, "/hook/reject").send(make_message("webhook", None))
    assert result.status == "failed" and not result.retryable
    assert "422" in (result.error or "")


async def test_wrong_secret_is_refused_by_receiver(vendor: VendorState, base_url: str, make_message) -> None:
    p = WebhookProvider(WebhookConfig(url=f"{base_url}/hook", secret="not-the-secret"))
    result = await p.send(make_message("webhook", None))
    assert result.status == "failed" and not result.retryable and "401" in (result.error or "")


async def test_timeout_is_retryable(vendor: VendorState, base_url: str, make_message) -> None:
    vendor.script("/hook", Canned(200, {"id": "late"}, delay_s=1.5))
    p = WebhookProvider(WebhookConfig(url=f"{base_url}/hook", secret=WEBHOOK_SECRET, timeout_s=0.3))
    result = await p.send(make_message("webhook", None))
    assert result.status == "failed" and result.retryable and "timed out" in (result.error or "")


async def test_connection_refused_is_retryable(make_message) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    p = WebhookProvider(WebhookConfig(url=f"http://127.0.0.1:{port}/hook", secret=WEBHOOK_SECRET))
    result = await p.send(make_message("webhook", None))
    assert result.status == "failed" and result.retryable


def test_verify_signature_rejects_tampering_replay_and_garbage() -> None:
    body = json.dumps({"a": 1}).encode()
    now = 1_700_000_000
    ts = str(now)
    good = sign(WEBHOOK_SECRET, ts, body)
    assert verify_signature(WEBHOOK_SECRET, body, good, ts, now=now)
    assert verify_signature(WEBHOOK_SECRET.encode(), body, good, ts, now=now + 299)
    assert not verify_signature(WEBHOOK_SECRET, body + b" ", good, ts, now=now)  # body altered
    assert not verify_signature("other", body, good, ts, now=now)  # wrong key
    assert not verify_signature(WEBHOOK_SECRET, body, good, ts, now=now + 301)  # replayed later
    assert not verify_signature(WEBHOOK_SECRET, body, good, ts, now=now - 301)  # from the future
    # Moving the timestamp to look fresh breaks the signature: it is signed.
    assert not verify_signature(WEBHOOK_SECRET, body, good, str(now + 600), now=now + 600)
    assert not verify_signature(WEBHOOK_SECRET, body, None, ts, now=now)
    assert not verify_signature(WEBHOOK_SECRET, body, good, None, now=now)
    assert not verify_signature(WEBHOOK_SECRET, body, good, "yesterday", now=now)
    assert not verify_signature(WEBHOOK_SECRET, body, good.replace("sha256=", "sha1="), ts, now=now)


def test_unconfigured_webhook_refuses_to_build() -> None:
    with pytest.raises(ValueError):
        WebhookProvider(WebhookConfig(url="http://x"))
