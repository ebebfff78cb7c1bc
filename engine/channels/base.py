"""The provider interface every channel implements.

A provider gets one rendered message addressed to one user and answers what
happened. It receives the delivery's idempotency key and must pass it on to the
vendor where the vendor supports one (header or body field), so a retried
activity never produces a second message at the vendor.
"""

from __future__ import annotations

from typing import Any, Literal, Protocol

from pydantic import BaseModel, Field

# Which identity kind addresses a user on each channel; a user without it is not
# reachable there. ``webhook`` needs no address (the endpoint is configured).
ADDRESS_KIND: dict[str, str | None] = {
    "wecom": "wecom_external_userid",
    "wecom_group": "wecom_group_chat_id",
    "official_account": "openid",
    "miniprogram": "miniprogram_openid",
    "push": "app_user_id",
    "sms": "phone",
    "email": "email",
    "webhook": None,
}


class OutboundMessage(BaseModel):
    idempotency_key: str
    user_id: str
    channel: str
    address: str | None  # value of ADDRESS_KIND[channel] for the user
    template: str
    subject: str | None = None
    body: str
    data: dict[str, Any] = Field(default_factory=dict)  # structured extras (coupon, links, template params)


class ProviderResult(BaseModel):
    # sent: accepted by the vendor; pending: accepted as a task that completes
    # later (e.g. WeCom add_msg_template awaiting staff confirmation); failed.
    status: Literal["sent", "pending", "failed"]
    provider_message_id: str | None = None
    error: str | None = None
    retryable: bool = False


class ChannelProvider(Protocol):
    channel: str

    async def send(self, message: OutboundMessage) -> ProviderResult: ...
