"""Mini program (小程序) channel: subscribe messages (订阅消息).

``POST /cgi-bin/message/subscribe/send?access_token=`` with
``{touser: openid, template_id, page?, miniprogram_state, lang, data: {key: {value}}}``
→ ``{errcode: 0, msgid?}``.

A subscribe message needs a subscription the user granted in the mini program
(one per grant for one-time templates); without it WeChat answers 43101, which
is final for this delivery. The API has no dedupe field, so a retry after a
timeout may deliver twice (and spend a second grant).

Data keys read: ``data["params"]`` (template fields such as ``thing1``,
``time2``; default ``{"content": body}``), ``data["template_id"]``,
``data["page"]``.
"""

from __future__ import annotations

from typing import Any

from engine.channels._common import ChannelError, missing_address, sent, template_params
from engine.channels.base import OutboundMessage, ProviderResult
from engine.channels.config import MiniProgramConfig
from engine.channels.wechat import WeChatClient, resolve_template_id, template_data


class MiniProgramProvider:
    channel = "miniprogram"

    def __init__(self, config: MiniProgramConfig, client: WeChatClient) -> None:
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
            "miniprogram_state": self.config.miniprogram_state,
            "lang": self.config.lang,
            "data": template_data(template_params(message)),
        }
        if message.data.get("page"):
            body["page"] = message.data["page"]
        try:
            payload = await self.client.call("cgi-bin/message/subscribe/send", body)
        except ChannelError as exc:
            return exc.result()
        msgid = payload.get("msgid")
        return sent(str(msgid) if msgid is not None else message.idempotency_key)

    async def aclose(self) -> None:
        await self.client.aclose()
