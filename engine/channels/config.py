"""Configuration of the channel providers: one sub-config per channel.

Every vendor endpoint is a ``base_url`` so tests (and staging) can point a
provider at a local server. Secrets are ``SecretStr`` so they never show up in
logs or reprs. The model nests into a pydantic-settings ``BaseSettings`` (e.g.
``JOURNEYS_CHANNELS__SMS__ACCESS_KEY_ID`` with ``env_nested_delimiter="__"``).

``mode="outbox"`` replaces every provider with one that records messages into
a JSONL file (or memory) instead of sending — the embedded demo runs offline
that way. ``outbox_channels`` does the same for chosen channels only, for a
deployment that has, say, a real webhook but no SMS contract yet.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, SecretStr


class OutboxConfig(BaseModel):
    # JSONL file the demo outbox appends to; None keeps messages in memory only.
    path: Path | None = None


class WebhookConfig(BaseModel):
    url: str | None = None
    # HMAC-SHA256 key for X-Journeys-Signature; unsigned requests are refused
    # by construction (a webhook without a secret is not configured).
    secret: SecretStr | None = None
    timeout_s: float = 10.0
    headers: dict[str, str] = Field(default_factory=dict)

    @property
    def configured(self) -> bool:
        return bool(self.url and self.secret)


class EmailConfig(BaseModel):
    host: str | None = None
    port: int = 25
    security: Literal["none", "starttls", "tls"] = "none"
    username: str | None = None
    password: SecretStr | None = None
    from_addr: str | None = None
    # Right-hand side of Message-ID; defaults to the domain of ``from_addr``.
    message_id_domain: str | None = None
    timeout_s: float = 30.0

    @property
    def configured(self) -> bool:
        return bool(self.host and self.from_addr)


class WeComConfig(BaseModel):
    """企业微信 customer-contact (客户联系) API credentials.

    ``corp_secret`` must be the secret of the customer-contact app (or a
    self-built app granted customer-contact permission): the group-message
    endpoints refuse tokens of other apps.
    """

    base_url: str = "https://qyapi.weixin.qq.com"
    corp_id: str | None = None
    corp_secret: SecretStr | None = None
    # Staff userid whose WeCom client receives the task. Optional for 1:1
    # messages (every staff member with the contact gets it); required for
    # customer groups, where it must be the group owner.
    default_sender: str | None = None
    timeout_s: float = 10.0
    # How long after an attempt began WeCom's "no such task" is believed when
    # reconciling it: a request the client gave up on may still be processed
    # until then. Keep it above ``timeout_s``.
    reconcile_settle_s: float = 120.0
    # Customer-contact callbacks (客户联系 → API → 接收事件服务器): the Token and
    # EncodingAESKey the WeCom admin console shows next to the callback URL
    # (``/v1/callbacks/wecom``); ``corp_id`` is the receiver id they are
    # encrypted for. Both unset: the endpoint answers 404.
    callback_token: SecretStr | None = None
    callback_aes_key: SecretStr | None = None
    # A customer group's member list names staff and customers alike; ids
    # with these prefixes are external contacts (WeChat users' external
    # userids start ``wm``, other WeCom corps' users ``wo``), the rest staff.
    external_userid_prefixes: list[str] = Field(default_factory=lambda: ["wm", "wo"])

    @property
    def configured(self) -> bool:
        return bool(self.corp_id and self.corp_secret)

    @property
    def callback_configured(self) -> bool:
        return bool(self.corp_id and self.callback_token and self.callback_aes_key)


class WeComAppConfig(BaseModel):
    """A WeCom self-built app (自建应用) for ``message/send`` to internal members."""

    base_url: str = "https://qyapi.weixin.qq.com"
    corp_id: str | None = None
    corp_secret: SecretStr | None = None  # the app's own secret, not the contact secret
    agent_id: int | None = None
    duplicate_check_interval_s: int = 1800
    timeout_s: float = 10.0

    @property
    def configured(self) -> bool:
        return bool(self.corp_id and self.corp_secret and self.agent_id is not None)


class SmsConfig(BaseModel):
    """Aliyun SMS (dysmsapi ``SendSms``) credentials and template mapping."""

    base_url: str = "https://dysmsapi.aliyuncs.com"
    access_key_id: str | None = None
    access_key_secret: SecretStr | None = None
    sign_name: str | None = None
    region_id: str = "cn-hangzhou"
    # journeys template name -> Aliyun TemplateCode (SMS_xxx). A message may
    # also carry ``data["template_code"]``.
    templates: dict[str, str] = Field(default_factory=dict)
    timeout_s: float = 10.0
    # How long after an attempt began ``QuerySendDetails`` finding nothing is
    # believed: a request the client gave up on may still be processed (and
    # its record written) until then. Keep it above ``timeout_s``.
    reconcile_settle_s: float = 120.0

    @property
    def configured(self) -> bool:
        return bool(self.access_key_id and self.access_key_secret and self.sign_name)


class PushConfig(BaseModel):
    """A generic JSON push gateway (see ``engine.channels.push``)."""

    base_url: str | None = None
    api_key: SecretStr | None = None
    timeout_s: float = 10.0

    @property
    def configured(self) -> bool:
        return bool(self.base_url and self.api_key)


class WeChatAppConfig(BaseModel):
    base_url: str = "https://api.weixin.qq.com"
    app_id: str | None = None
    app_secret: SecretStr | None = None
    # ``token`` is the classic cgi-bin/token: every fetch invalidates the
    # previous token, so several processes sharing one app id knock each
    # other's tokens out. ``stable_token`` (cgi-bin/stable_token) returns the
    # same token to everyone until it expires; prefer it with many workers.
    token_endpoint: Literal["token", "stable_token"] = "token"
    # journeys template name -> WeChat template_id. A message may also carry
    # ``data["template_id"]``.
    templates: dict[str, str] = Field(default_factory=dict)
    timeout_s: float = 10.0
    # How long after an attempt began ``QuerySendDetails`` finding nothing is
    # believed: a request the client gave up on may still be processed (and
    # its record written) until then. Keep it above ``timeout_s``.
    reconcile_settle_s: float = 120.0

    @property
    def configured(self) -> bool:
        return bool(self.app_id and self.app_secret)


class OfficialAccountConfig(WeChatAppConfig):
    """公众号 template messages, and the account's callbacks (基本配置 →
    服务器配置: URL ``/v1/callbacks/official-account``, Token,
    EncodingAESKey)."""

    callback_token: SecretStr | None = None
    # Set: 安全模式 (safe mode), encrypted bodies; a plaintext body is then
    # refused unless ``callback_allow_plaintext`` (兼容模式, while switching),
    # since a plaintext body is signed by nothing (the signature covers only
    # token, timestamp and nonce). Unset: 明文模式 (plaintext mode).
    callback_aes_key: SecretStr | None = None
    callback_allow_plaintext: bool = False

    @property
    def callback_configured(self) -> bool:
        return bool(self.app_id and self.callback_token)


class MiniProgramConfig(WeChatAppConfig):
    """小程序 subscribe messages."""

    miniprogram_state: Literal["developer", "trial", "formal"] = "formal"
    lang: Literal["zh_CN", "en_US", "zh_HK", "zh_TW"] = "zh_CN"


class ChannelsConfig(BaseModel):
    mode: Literal["live", "outbox"] = "live"
    outbox: OutboxConfig = Field(default_factory=OutboxConfig)
    # In live mode, these channels still go to the outbox.
    outbox_channels: list[str] = Field(default_factory=list)

    webhook: WebhookConfig = Field(default_factory=WebhookConfig)
    email: EmailConfig = Field(default_factory=EmailConfig)
    wecom: WeComConfig = Field(default_factory=WeComConfig)
    # None: customer groups use the same corp credentials as ``wecom``.
    wecom_group: WeComConfig | None = None
    sms: SmsConfig = Field(default_factory=SmsConfig)
    push: PushConfig = Field(default_factory=PushConfig)
    official_account: OfficialAccountConfig = Field(default_factory=OfficialAccountConfig)
    miniprogram: MiniProgramConfig = Field(default_factory=MiniProgramConfig)
    # Not a journey channel: WeCom app messages to internal staff, built as
    # ``wecom_app`` only when configured.
    wecom_app: WeComAppConfig = Field(default_factory=WeComAppConfig)

    @classmethod
    def demo(cls, outbox_path: Path | None = None) -> ChannelsConfig:
        """Everything into the outbox: what ``journeys up --demo`` runs with."""
        return cls(mode="outbox", outbox=OutboxConfig(path=outbox_path))
