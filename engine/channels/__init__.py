"""Channel providers: how a rendered message reaches a user on one channel.

:func:`build_providers` turns a :class:`ChannelsConfig` into one provider per
channel of the journey language (``ADDRESS_KIND``'s keys):

============== ============================== ======================================
channel        provider                       vendor API
============== ============================== ======================================
webhook        ``WebhookProvider``            HMAC-signed JSON POST
email          ``EmailProvider``              SMTP (``smtplib``)
wecom          ``WeComContactProvider``       WeCom ``add_msg_template`` single → pending
wecom_group    ``WeComGroupProvider``         WeCom ``add_msg_template`` group → pending
sms            ``AliyunSmsProvider``          Aliyun ``SendSms``
push           ``PushGatewayProvider``        generic JSON push gateway
official_account ``OfficialAccountProvider``  WeChat ``message/template/send``
miniprogram    ``MiniProgramProvider``        WeChat ``message/subscribe/send``
============== ============================== ======================================

plus ``wecom_app`` (WeCom ``message/send`` to staff) when configured.
Providers that can answer ``pending`` also implement
:class:`PollableProvider` (``poll_result``); the ones whose vendor can be
asked whether an earlier attempt landed implement :class:`Reconcilable`
(``reconcile``), which the send path calls through
:func:`engine.reconcile.send_once` before re-sending an attempt whose answer
was lost.

What reaches the user, per channel
----------------------------------

The ledger makes the engine's side exactly-once (one reservation per
idempotency key). The open question is an *ambiguous* attempt — the request
left, the answer never came (timeout, connection cut, worker crash) — and
whether re-sending it can reach the user twice:

================ =================== ==================================================
channel          guarantee           why
================ =================== ==================================================
sms              exactly-once [1]_   ``SendSms`` has no dedupe key, but carries our key
                                     as ``OutId``; ``reconcile`` looks it up with
                                     ``QuerySendDetails`` (phone + Beijing-time date)
                                     and re-sends only when Aliyun has no record.
wecom,           exactly-once [1]_   ``add_msg_template`` has no key and an ambiguous
wecom_group      [2]_                attempt has no ``msgid``; ``reconcile`` finds the
                                     task in ``get_groupmsg_list_v2`` by text,
                                     attachment kinds and time window, and confirms it
                                     by its recipient (``get_groupmsg_send_result``).
official_account exactly-once        WeChat drops a repeated ``client_msg_id`` (our
                 within 10 min       key) for the same openid — for 10 minutes after
                                     the first; a retry later than that may deliver
                                     twice (at-least-once). No query API.
miniprogram      at-least-once       ``subscribe/send`` has no key and no query API. A
                                     retry after a delivered-but-unanswered attempt
                                     sends a second message and spends a second
                                     one-time grant; with none left WeChat answers
                                     43101 and the delivery is recorded *failed*
                                     although the user has the first one.
push             exactly-once by     ``request_id`` / ``Idempotency-Key`` = our key;
                 gateway contract    the gateway must dedupe on it (module doc).
webhook          exactly-once if     ``Idempotency-Key`` header = our key on every
                 receiver dedupes    attempt; a receiver that ignores it sees
                                     at-least-once.
email            at-least-once,      SMTP has no key; every attempt carries the same
                 collapsible         ``Message-ID`` (from the key), which mail stores
                                     and clients use to collapse duplicates.
wecom_app        exactly-once        ``enable_duplicate_check``: WeCom drops the same
                 within interval     content to the same member within
                                     ``duplicate_check_interval_s`` (content, not key).
outbox (demo)    exactly-once        records each key once, across restarts.
================ =================== ==================================================

.. [1] When the vendor can be asked. While it cannot — the query fails, or
   the attempt is younger than ``reconcile_settle_s`` (a request the client
   gave up on may still be processed) — nothing is sent and the step is
   retried; if that lasts past the channel's ``send_retry_deadline`` the delivery is recorded
   failed: at-most-once rather than twice.
.. [2] Except between two deliveries of the very same text to the same
   recipient in the window, which WeCom's lists cannot tell apart
   (:mod:`engine.channels.wecom_lookup`): then one task may be counted for
   both — one message where two were due, never two where one was.

Usage::

    providers = build_providers(settings.channels)              # production
    providers = build_providers(ChannelsConfig.demo(Path("var/outbox.jsonl")))  # demo, offline
    outbox = Outbox()                                            # tests: inspect what was "sent"
    providers = build_providers(ChannelsConfig(mode="outbox"), outbox=outbox)
    ...
    await aclose_providers(providers)                            # on worker shutdown

A live channel without credentials gets an :class:`UnconfiguredProvider`
that fails every send (not retryable) with the setting to fill in.
"""

from __future__ import annotations

import httpx

from engine.channels._common import ChannelError, PollableProvider
from engine.channels.base import ADDRESS_KIND, ChannelProvider, OutboundMessage, ProviderResult, Reconcilable
from engine.channels.config import (
    ChannelsConfig,
    EmailConfig,
    MiniProgramConfig,
    OfficialAccountConfig,
    OutboxConfig,
    PushConfig,
    SmsConfig,
    WebhookConfig,
    WeComAppConfig,
    WeComConfig,
)
from engine.channels.miniprogram import MiniProgramProvider
from engine.channels.official_account import OfficialAccountProvider
from engine.channels.outbox import Outbox, OutboxProvider, UnconfiguredProvider
from engine.channels.push import PushGatewayProvider
from engine.channels.sms import AliyunSmsProvider
from engine.channels.smtp import EmailProvider
from engine.channels.webhook import WebhookProvider, verify_signature
from engine.channels.wechat import WeChatClient
from engine.channels.wecom import WeComAppProvider, WeComClient, WeComContactProvider, WeComGroupProvider

CHANNELS: tuple[str, ...] = tuple(ADDRESS_KIND)


def build_providers(
    config: ChannelsConfig,
    *,
    client: httpx.AsyncClient | None = None,
    outbox: Outbox | None = None,
) -> dict[str, ChannelProvider]:
    """One provider per channel, as configured.

    ``client`` shares one HTTP connection pool between the HTTP providers
    (otherwise each makes its own); ``outbox`` injects the outbox to record
    into (otherwise one is made from ``config.outbox`` when needed; reach it
    as ``providers[ch].outbox``). WeCom channels with the same credentials
    share one API client, so one access token serves both.
    """
    unknown = set(config.outbox_channels) - set(CHANNELS)
    if unknown:
        raise ValueError(f"outbox_channels names unknown channels: {sorted(unknown)}")
    if outbox is None and (config.mode == "outbox" or config.outbox_channels):
        outbox = Outbox(config.outbox.path)

    wecom_clients: dict[tuple[str, str, str], WeComClient] = {}

    def wecom_client(base_url: str, corp_id: str, corp_secret: str, timeout_s: float) -> WeComClient:
        key = (base_url, corp_id, corp_secret)
        if key not in wecom_clients:
            wecom_clients[key] = WeComClient(base_url, corp_id, corp_secret, client=client, timeout_s=timeout_s)
        return wecom_clients[key]

    def wecom_from(cfg: WeComConfig) -> WeComClient:
        assert cfg.corp_id is not None and cfg.corp_secret is not None
        return wecom_client(cfg.base_url, cfg.corp_id, cfg.corp_secret.get_secret_value(), cfg.timeout_s)

    def live(channel: str) -> ChannelProvider:
        match channel:
            case "webhook" if config.webhook.configured:
                return WebhookProvider(config.webhook, client=client)
            case "email" if config.email.configured:
                return EmailProvider(config.email)
            case "wecom" if config.wecom.configured:
                return WeComContactProvider(config.wecom, wecom_from(config.wecom))
            case "wecom_group":
                group_cfg = config.wecom_group or config.wecom
                if group_cfg.configured:
                    return WeComGroupProvider(group_cfg, wecom_from(group_cfg))
            case "sms" if config.sms.configured:
                return AliyunSmsProvider(config.sms, client=client)
            case "push" if config.push.configured:
                return PushGatewayProvider(config.push, client=client)
            case "official_account" if config.official_account.configured:
                return OfficialAccountProvider(
                    config.official_account, WeChatClient(config.official_account, client=client)
                )
            case "miniprogram" if config.miniprogram.configured:
                return MiniProgramProvider(config.miniprogram, WeChatClient(config.miniprogram, client=client))
        return UnconfiguredProvider(channel)

    providers: dict[str, ChannelProvider] = {}
    for channel in CHANNELS:
        if config.mode == "outbox" or channel in config.outbox_channels:
            assert outbox is not None
            providers[channel] = OutboxProvider(channel, outbox)
        else:
            providers[channel] = live(channel)
    app = config.wecom_app
    if config.mode == "live" and app.configured:
        assert app.corp_id is not None and app.corp_secret is not None
        app_client = wecom_client(app.base_url, app.corp_id, app.corp_secret.get_secret_value(), app.timeout_s)
        providers["wecom_app"] = WeComAppProvider(app, app_client)
    return providers


async def aclose_providers(providers: dict[str, ChannelProvider]) -> None:
    """Close the HTTP clients the providers own (shared ones are the caller's)."""
    for provider in providers.values():
        aclose = getattr(provider, "aclose", None)
        if aclose is not None:
            await aclose()


__all__ = [
    "CHANNELS",
    "AliyunSmsProvider",
    "ChannelError",
    "ChannelProvider",
    "ChannelsConfig",
    "EmailConfig",
    "EmailProvider",
    "MiniProgramConfig",
    "MiniProgramProvider",
    "OfficialAccountConfig",
    "OfficialAccountProvider",
    "OutboundMessage",
    "Outbox",
    "OutboxConfig",
    "OutboxProvider",
    "PollableProvider",
    "ProviderResult",
    "PushConfig",
    "PushGatewayProvider",
    "Reconcilable",
    "SmsConfig",
    "UnconfiguredProvider",
    "WeChatClient",
    "WeComAppConfig",
    "WeComAppProvider",
    "WeComClient",
    "WeComConfig",
    "WeComContactProvider",
    "WeComGroupProvider",
    "WebhookConfig",
    "WebhookProvider",
    "aclose_providers",
    "build_providers",
    "verify_signature",
]
