"""Official account (公众号) channel: template messages.

``POST /cgi-bin/message/template/send?access_token=`` with
``{touser: openid, template_id, url?, miniprogram?: {appid, pagepath},
client_msg_id, data: {key: {value}}}`` → ``{errcode: 0, msgid}``.

``client_msg_id`` is WeChat's dedupe key ("for the same openid +
client_msg_id only one message is sent; valid for 10 minutes, not guaranteed
after"); it gets the delivery's idempotency key (hashed to 32 characters when
longer), so a retried send within 10 minutes of the first attempt does not
reach the user twice. A retry later than that (long Temporal backoff, a
worker down for longer) is at-least-once: template messages cannot be
queried (the ``TEMPLATESENDJOBFINISH`` event is pushed to the account's
callback, not asked for), so there is nothing to reconcile against.

Data keys read: ``data["params"]`` (template fields; default ``{"content":
body}``), ``data["template_id"]``, ``data["url"]``, ``data["miniprogram"]``.
"""

from __future__ import annotations

from typing import Any, ClassVar

from engine.channels._common import short_key
from engine.channels.base import OutboundMessage
from engine.channels.wechat import WeChatTemplateProvider


class OfficialAccountProvider(WeChatTemplateProvider):
    channel: ClassVar[str] = "official_account"
    endpoint: ClassVar[str] = "cgi-bin/message/template/send"

    def fields(self, message: OutboundMessage) -> dict[str, Any]:
        extra: dict[str, Any] = {"client_msg_id": short_key(message.idempotency_key)}
        for key in ("url", "miniprogram"):
            if message.data.get(key):
                extra[key] = message.data[key]
        return extra

    def message_id(self, payload: dict[str, Any], message: OutboundMessage) -> str | None:
        return str(payload["msgid"]) if payload.get("msgid") is not None else None
