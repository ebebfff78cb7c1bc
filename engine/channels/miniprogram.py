"""Mini program (小程序) channel: subscribe messages (订阅消息).

``POST /cgi-bin/message/subscribe/send?access_token=`` with
``{touser: openid, template_id, page?, miniprogram_state, lang, data: {key: {value}}}``
→ ``{errcode: 0, msgid?}``.

A subscribe message needs a subscription the user granted in the mini program
(one per grant for one-time templates); without it WeChat answers 43101, which
is final for this delivery.

Guarantee: at-least-once. The API has no dedupe field and WeChat offers no
way to ask what was delivered, so an ambiguous attempt (timeout, crash before
the answer) cannot be reconciled: the retry sends again. If the first did
arrive, the user gets the message twice and a second one-time grant is spent;
if no grant is left, the retry answers 43101 and the delivery is recorded
failed although the user has it. (The alternative — never retrying an
ambiguous attempt — would lose messages that did not arrive; a journey that
prefers that can use a different channel for the step.)

Data keys read: ``data["params"]`` (template fields such as ``thing1``,
``time2``; default ``{"content": body}``), ``data["template_id"]``,
``data["page"]``.
"""

from __future__ import annotations

from typing import Any, ClassVar

from engine.channels.base import OutboundMessage
from engine.channels.config import MiniProgramConfig
from engine.channels.wechat import WeChatTemplateProvider


class MiniProgramProvider(WeChatTemplateProvider):
    channel: ClassVar[str] = "miniprogram"
    endpoint: ClassVar[str] = "cgi-bin/message/subscribe/send"
    config: MiniProgramConfig

    def fields(self, message: OutboundMessage) -> dict[str, Any]:
        extra: dict[str, Any] = {"miniprogram_state": self.config.miniprogram_state, "lang": self.config.lang}
        if message.data.get("page"):
            extra["page"] = message.data["page"]
        return extra

    def message_id(self, payload: dict[str, Any], message: OutboundMessage) -> str | None:
        # no msgid in some answers: the delivery's own key still names it
        msgid = payload.get("msgid")
        return str(msgid) if msgid is not None else message.idempotency_key
