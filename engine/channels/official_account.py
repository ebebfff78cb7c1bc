"""Official account (公众号) channel: template messages.

``POST /cgi-bin/message/template/send?access_token=`` with
``{touser: openid, template_id, url?, miniprogram?: {appid, pagepath},
client_msg_id, data: {key: {value}}}`` → ``{errcode: 0, msgid}``.

``client_msg_id`` is WeChat's dedupe key ("same openid + client_msg_id is sent
once"); it gets the delivery's idempotency key (hashed to 32 characters when
longer), so a retried send does not reach the user twice.

Data keys read: ``data["params"]`` (template fields; default ``{"content":
body}``), ``data["template_id"]``, ``data["url"]``, ``data["miniprogram"]``.
"""

from __future__ import annotations

from typing import Any

from engine.channels._common import ChannelError, missing_address, sent, short_key, template_params
from engine.channels.base import OutboundMessage, ProviderResult
from engine.channels.config import OfficialAccountConfig
from engine.channels.wechat import WeChatClient, resolve_template_id, template_data


class OfficialAccountProvider:
    channel = "official_account"

    def __init__(self, config: OfficialAccountConfig, client: WeChatClient) -> None:
        self.config = config
        self.client = client

    async def send(self, message: OutboundMessage) -> ProviderResult:
        if not message.address:
            return missing_address(message)
        template_id = resolve_template_id(self.config, message)
        if isinstance(template_id, ProviderResult):
            return template_id
        body: dict[str, Any] = {
            "touser": message.address,
            "template_id": template_id,
            "client_msg_id": short_key(message.idempotency_key),
            "data": template_data(template_params(message)),
        }
        for key in ("url", "miniprogram"):
            if message.data.get(key):
                body[key] = message.data[key]
        try:
            payload = await self.client.call("cgi-bin/message/template/send", body)
        except ChannelError as exc:
            return exc.result()
        return sent(str(payload["msgid"]) if payload.get("msgid") is not None else None)

    async def aclose(self) -> None:
        await self.client.aclose()
