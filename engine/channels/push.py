"""App push channel: a generic JSON push gateway.

App push in China goes through a vendor aggregator (极光 JPush, 个推, the
phone makers' channels), usually behind the app team's own push service. This
client speaks one small, explicit shape that such a service (or an adapter in
front of a vendor) implements::

    POST <base_url>/push/send
    Authorization: Bearer <api_key>
    Idempotency-Key: <delivery idempotency key>
    Content-Type: application/json

    {"request_id": <idempotency key>, "app_user_id": <address>,
     "title": <subject or "">, "body": <body>, "template": <template name>,
     "data": <message data: deep links, badge, …>}

    → 2xx {"message_id": "..."}

The gateway must treat a repeated ``request_id``/``Idempotency-Key`` as the
same push. Outcome: 2xx → sent (``message_id``, else the key); 5xx,
408/425/429, timeouts → retryable; other 4xx (unknown user, bad token) → not.
"""

from __future__ import annotations

import httpx

from engine.channels._common import (
    HttpClientHolder,
    http_status_result,
    missing_address,
    sent,
    transport_error_result,
)
from engine.channels.base import OutboundMessage, ProviderResult
from engine.channels.config import PushConfig


class PushGatewayProvider:
    channel = "push"

    def __init__(self, config: PushConfig, *, client: httpx.AsyncClient | None = None) -> None:
        if not config.configured:
            raise ValueError("push needs base_url and api_key")
        self.config = config
        self._holder = HttpClientHolder(client, timeout_s=config.timeout_s)

    async def send(self, message: OutboundMessage) -> ProviderResult:
        if not message.address:
            return missing_address(message)
        assert self.config.base_url is not None and self.config.api_key is not None
        body = {
            "request_id": message.idempotency_key,
            "app_user_id": message.address,
            "title": message.subject or "",
            "body": message.body,
            "template": message.template,
            "data": message.data,
        }
        headers = {
            "Authorization": f"Bearer {self.config.api_key.get_secret_value()}",
            "Idempotency-Key": message.idempotency_key,
        }
        url = self.config.base_url.rstrip("/") + "/push/send"
        try:
            response = await self._holder.http.post(url, json=body, headers=headers, timeout=self._holder.timeout)
        except httpx.HTTPError as exc:
            return transport_error_result(exc, what="push gateway")
        bad = http_status_result(response, what="push gateway")
        if bad is not None:
            return bad
        try:
            payload = response.json()
        except ValueError:
            payload = None
        message_id = payload.get("message_id") if isinstance(payload, dict) else None
        return sent(str(message_id) if message_id else message.idempotency_key)

    async def aclose(self) -> None:
        await self._holder.aclose()
