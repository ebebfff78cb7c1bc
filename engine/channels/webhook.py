"""Webhook channel: the message as JSON, POSTed to a configured URL, signed.

Request::

    POST <url>
    Content-Type: application/json
    Idempotency-Key: <delivery idempotency key>
    X-Journeys-Timestamp: <unix seconds>
    X-Journeys-Signature: sha256=<hex HMAC-SHA256(secret, "<timestamp>." + raw body)>

    {"idempotency_key": ..., "user_id": ..., "channel": "webhook", "address": null,
     "template": ..., "subject": ..., "body": ..., "data": {...}}

The timestamp is inside the signed bytes so a captured request cannot be
replayed later with a fresh timestamp; receivers check both with
:func:`verify_signature` and dedupe on ``Idempotency-Key`` (a retry after a
timeout re-sends the same key with a new timestamp).

Outcome: 2xx → sent (``provider_message_id`` is the response's JSON ``id`` if
any, else the idempotency key); 5xx, 408/425/429, timeouts and connection
errors → failed, retryable; any other 4xx → failed, not retryable.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time

import httpx

from engine.channels._common import HttpClientHolder, http_status_result, sent, transport_error_result
from engine.channels.base import OutboundMessage, ProviderResult
from engine.channels.config import WebhookConfig

SIGNATURE_HEADER = "X-Journeys-Signature"
TIMESTAMP_HEADER = "X-Journeys-Timestamp"
IDEMPOTENCY_HEADER = "Idempotency-Key"
DEFAULT_TOLERANCE_S = 300


def _as_bytes(secret: str | bytes) -> bytes:
    return secret.encode() if isinstance(secret, str) else secret


def sign(secret: str | bytes, timestamp: str, body: bytes) -> str:
    """The ``X-Journeys-Signature`` value for ``body`` sent at ``timestamp``."""
    mac = hmac.new(_as_bytes(secret), timestamp.encode() + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def verify_signature(
    secret: str | bytes,
    body: bytes,
    signature: str | None,
    timestamp: str | None,
    *,
    tolerance_s: int = DEFAULT_TOLERANCE_S,
    now: float | None = None,
) -> bool:
    """For receivers: is this request from us, unaltered and recent?

    Pass the raw request body (before any JSON parsing) and the two header
    values. False when a header is missing, the timestamp is not an integer or
    is more than ``tolerance_s`` away from ``now``, or the HMAC differs
    (compared in constant time).
    """
    if not signature or not timestamp:
        return False
    try:
        ts = int(timestamp)
    except ValueError:
        return False
    current = time.time() if now is None else now
    if abs(current - ts) > tolerance_s:
        return False
    return hmac.compare_digest(sign(secret, timestamp, body), signature)


class WebhookProvider:
    channel = "webhook"

    def __init__(self, config: WebhookConfig, *, client: httpx.AsyncClient | None = None) -> None:
        if not config.configured:
            raise ValueError("webhook needs url and secret")
        self.config = config
        self._holder = HttpClientHolder(client, timeout_s=config.timeout_s)

    async def send(self, message: OutboundMessage) -> ProviderResult:
        assert self.config.url is not None and self.config.secret is not None
        body = json.dumps(message.model_dump(mode="json"), ensure_ascii=False, separators=(",", ":")).encode()
        timestamp = str(int(time.time()))
        headers = {
            **self.config.headers,
            "Content-Type": "application/json",
            IDEMPOTENCY_HEADER: message.idempotency_key,
            TIMESTAMP_HEADER: timestamp,
            SIGNATURE_HEADER: sign(self.config.secret.get_secret_value(), timestamp, body),
        }
        try:
            response = await self._holder.http.post(
                self.config.url, content=body, headers=headers, timeout=self._holder.timeout
            )
        except httpx.HTTPError as exc:
            return transport_error_result(exc, what="webhook")
        bad = http_status_result(response, what="webhook")
        if bad is not None:
            return bad
        return sent(_response_id(response) or message.idempotency_key)

    async def aclose(self) -> None:
        await self._holder.aclose()


def _response_id(response: httpx.Response) -> str | None:
    try:
        payload = response.json()
    except ValueError:
        return None
    if isinstance(payload, dict) and payload.get("id") is not None:
        return str(payload["id"])
    return None


__all__ = ["WebhookProvider", "sign", "verify_signature"]
