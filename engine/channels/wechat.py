"""The WeChat (微信) server API client shared by the official account and the
mini program channels.

Tokens come from ``GET /cgi-bin/token?grant_type=client_credential&appid=&secret=``
(or, with ``token_endpoint="stable_token"``, ``POST /cgi-bin/stable_token``
``{grant_type, appid, secret, force_refresh: false}``), both answering
``{access_token, expires_in}``. The classic endpoint invalidates the previous
token on every fetch, which is why the cache matters even more here than for
WeCom, and why several worker processes should use ``stable_token``.

Errcodes: 40001 / 40014 / 42001 / 41001 on a call → token rejected, refetch
and retry once; -1 busy, 45009 daily quota, 45011 minute quota → retryable;
others (43004 user not subscribed, 43101 user refused subscribe messages,
40003 bad openid, 40037 bad template id, 47003 bad template data, …) → not.
"""

from __future__ import annotations

from typing import Any, ClassVar

import httpx

from engine.channels._common import ChannelError, failed, missing_address, sent, template_params
from engine.channels._tencent import TencentApiClient
from engine.channels.base import OutboundMessage, ProviderResult
from engine.channels.config import WeChatAppConfig


class WeChatClient(TencentApiClient):
    vendor = "wechat"
    token_errcodes = frozenset({40001, 40014, 42001, 41001})
    retryable_errcodes = frozenset({-1, 45009, 45011})

    def __init__(self, config: WeChatAppConfig, *, client: httpx.AsyncClient | None = None) -> None:
        if not config.configured:
            raise ValueError("wechat needs app_id and app_secret")
        super().__init__(config.base_url, client=client, timeout_s=config.timeout_s)
        self.config = config

    async def _fetch_token(self) -> tuple[str, float]:
        assert self.config.app_id is not None and self.config.app_secret is not None
        secret = self.config.app_secret.get_secret_value()
        if self.config.token_endpoint == "stable_token":
            body = {
                "grant_type": "client_credential",
                "appid": self.config.app_id,
                "secret": secret,
                "force_refresh": False,
            }
            payload = await self.request("POST", "cgi-bin/stable_token", json=body)
        else:
            params = {"grant_type": "client_credential", "appid": self.config.app_id, "secret": secret}
            payload = await self.request("GET", "cgi-bin/token", params=params)
        self.check(payload, "token", token_endpoint=True)
        return str(payload["access_token"]), float(payload.get("expires_in", 7200))


def resolve_template_id(config: WeChatAppConfig, message: OutboundMessage) -> str | ProviderResult:
    """The WeChat template id for ``message``, or the failure to record.

    Template ids are per app and assigned by WeChat, so journeys name
    templates and the config maps the name; ``data["template_id"]`` overrides.
    """
    template_id = message.data.get("template_id") or config.templates.get(message.template)
    if not template_id:
        return failed(
            f"{message.channel}: no WeChat template_id for template {message.template!r} "
            f"(map it in channels.{message.channel}.templates)",
            retryable=False,
        )
    return str(template_id)


def template_data(params: dict[str, str]) -> dict[str, dict[str, str]]:
    """WeChat's ``{"key": {"value": "..."}}`` shape."""
    return {key: {"value": value} for key, value in params.items()}


class WeChatTemplateProvider:
    """What the official account's template messages and the mini program's
    subscribe messages share: an openid address, a template id mapped from the
    journey's template name, ``data`` in WeChat's shape, one POST. Subclasses
    name the endpoint and add their own fields and message id."""

    channel: ClassVar[str]
    endpoint: ClassVar[str]

    def __init__(self, config: WeChatAppConfig, client: WeChatClient) -> None:
        self.config = config
        self.client = client

    def fields(self, message: OutboundMessage) -> dict[str, Any]:
        """The endpoint's own body fields besides touser, template_id and data."""
        raise NotImplementedError

    def message_id(self, payload: dict[str, Any], message: OutboundMessage) -> str | None:
        raise NotImplementedError

    async def send(self, message: OutboundMessage) -> ProviderResult:
        if not message.address:
            return missing_address(message)
        template_id = resolve_template_id(self.config, message)
        if isinstance(template_id, ProviderResult):
            return template_id
        body: dict[str, Any] = {
            "touser": message.address,
            "template_id": template_id,
            **self.fields(message),
            "data": template_data(template_params(message)),
        }
        try:
            payload = await self.client.call(self.endpoint, body)
        except ChannelError as exc:
            return exc.result()
        return sent(self.message_id(payload, message))

    async def aclose(self) -> None:
        await self.client.aclose()
