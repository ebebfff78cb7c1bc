from __future__ import annotations

import pytest

from engine.channels.config import PushConfig
from engine.channels.push import PushGatewayProvider

from .vendors import PUSH_API_KEY, Canned, VendorState

PUSH = "/push/push/send"


def provider(base_url: str, api_key: str = PUSH_API_KEY) -> PushGatewayProvider:
    return PushGatewayProvider(PushConfig(base_url=f"{base_url}/push", api_key=api_key, timeout_s=2))


async def test_push_request_shape_and_dedupe(vendor: VendorState, base_url: str, make_message) -> None:
    vendor.push_users.add("app-u-1")
    msg = make_message("push", "app-u-1", data={"deeplink": "shop://coupon/1"})
    p = provider(base_url)
    first = await p.send(msg)
    again = await p.send(msg)
    assert first.status == again.status == "sent"
    assert first.provider_message_id == again.provider_message_id and len(vendor.push_seen) == 1
    req = vendor.calls(PUSH)[0]
    assert req.headers["authorization"] == f"Bearer {PUSH_API_KEY}"
    assert req.headers["idempotency-key"] == msg.idempotency_key
    assert req.json() == {
        "request_id": msg.idempotency_key,
        "app_user_id": "app-u-1",
        "title": msg.subject,
        "body": msg.body,
        "template": "welcome",
        "data": {"deeplink": "shop://coupon/1"},
    }


async def test_unknown_user_is_final(vendor: VendorState, base_url: str, make_message) -> None:
    result = await provider(base_url).send(make_message("push", "ghost"))
    assert result.status == "failed" and not result.retryable and "404" in (result.error or "")


async def test_bad_key_is_final(vendor: VendorState, base_url: str, make_message) -> None:
    vendor.push_users.add("app-u-1")
    result = await provider(base_url, api_key="wrong").send(make_message("push", "app-u-1"))
    assert result.status == "failed" and not result.retryable and "401" in (result.error or "")


@pytest.mark.parametrize("status", [500, 503, 429])
async def test_gateway_trouble_is_retryable(vendor: VendorState, base_url: str, make_message, status: int) -> None:
    vendor.script(PUSH, Canned(status, {"error": "busy"}))
    result = await provider(base_url).send(make_message("push", "app-u-1"))
    assert result.status == "failed" and result.retryable
