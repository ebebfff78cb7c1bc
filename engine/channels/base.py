"""The provider interface every channel implements.

A provider gets one rendered message addressed to one user and answers what
happened. It receives the delivery's idempotency key and must pass it on to the
vendor where the vendor supports one (header or body field), so a retried
activity never produces a second message at the vendor. Vendors without a key
but with a way to ask are :class:`Reconcilable`; the per-channel guarantees
are tabled in :mod:`engine.channels`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal, Protocol, runtime_checkable

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


@runtime_checkable
class Reconcilable(Protocol):
    """A provider whose vendor can be asked whether an earlier attempt landed.

    An attempt is *ambiguous* when the request left but no answer came back
    (timeout, connection cut, worker crash): the vendor may or may not have
    accepted it. For vendors that do not de-duplicate by key, re-sending then
    risks a second message, so the send path asks first:

    - a :class:`ProviderResult` with status ``sent`` / ``pending`` — the vendor
      has the message (with its id): record that, do not send again;
    - ``None`` — the vendor has no record and the attempt is old enough for
      that to be final: sending (again) is safe;
    - a ``failed`` result with ``retryable=True`` — the vendor could not tell
      (query failed, or the attempt is too recent for "no record" to mean
      anything): neither send nor give up; retry the whole step later.

    ``attempt_started_at`` is when the *first* attempt of the delivery began
    (any of them may have landed); naive datetimes are taken as UTC.
    """

    channel: str

    async def reconcile(self, message: OutboundMessage, attempt_started_at: datetime) -> ProviderResult | None: ...
