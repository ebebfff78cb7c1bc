from __future__ import annotations

import json
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller

from engine.channels import (
    CHANNELS,
    AliyunSmsProvider,
    ChannelsConfig,
    EmailProvider,
    MiniProgramProvider,
    OfficialAccountProvider,
    Outbox,
    OutboxProvider,
    PollableProvider,
    PushGatewayProvider,
    UnconfiguredProvider,
    WebhookProvider,
    WeComAppProvider,
    WeComContactProvider,
    WeComGroupProvider,
    aclose_providers,
    build_providers,
)
from engine.channels import outbox as outbox_module
from engine.channels.base import ADDRESS_KIND

from .conftest import Inbox
from .vendors import WECOM_APP_SECRET, WECOM_CORP_ID, VendorState, live_config


def test_channels_are_the_language_channels() -> None:
    assert set(CHANNELS) == set(ADDRESS_KIND)


async def test_default_config_builds_unconfigured_providers(make_message) -> None:
    providers = build_providers(ChannelsConfig())
    assert set(providers) == set(CHANNELS)
    assert all(isinstance(p, UnconfiguredProvider) for p in providers.values())
    result = await providers["sms"].send(make_message("sms", "13800138000"))
    assert result.status == "failed" and not result.retryable and "channels.sms" in (result.error or "")


async def test_demo_outbox_records_jsonl_once_per_key(tmp_path: Path, make_message) -> None:
    path = tmp_path / "outbox" / "messages.jsonl"
    providers = build_providers(ChannelsConfig.demo(path))
    assert set(providers) == set(CHANNELS)
    assert all(isinstance(p, OutboxProvider) and p.channel == ch for ch, p in providers.items())
    sms = make_message("sms", "13800138000")
    wecom = make_message("wecom", "wm-1")
    for provider, msg in ((providers["sms"], sms), (providers["wecom"], wecom), (providers["sms"], sms)):
        result = await provider.send(msg)
        assert result.status == "sent" and result.provider_message_id == f"outbox:{msg.idempotency_key}"

    lines = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    assert [(r["channel"], r["idempotency_key"]) for r in lines] == [
        ("sms", sms.idempotency_key),
        ("wecom", wecom.idempotency_key),
    ]
    assert lines[0]["message"]["body"] == sms.body
    outbox = providers["sms"].outbox  # type: ignore[attr-defined]
    assert outbox.messages("wecom") == [wecom]

    # A restarted demo remembers what it already "sent".
    restarted = build_providers(ChannelsConfig.demo(path))
    await restarted["sms"].send(sms)
    assert len(path.read_text(encoding="utf-8").splitlines()) == 2


async def test_in_memory_outbox_can_be_injected(make_message) -> None:
    outbox = Outbox()
    providers = build_providers(ChannelsConfig(mode="outbox"), outbox=outbox)
    await providers["push"].send(make_message("push", "app-u-1"))
    await providers["email"].send(make_message("email", "a@example.com"))
    assert [m.channel for m in outbox.messages()] == ["push", "email"]
    assert outbox.path is None


def test_outbox_channels_mix_live_and_outbox(base_url: str) -> None:
    providers = build_providers(live_config(base_url, outbox_channels=["sms", "wecom_group"]))
    assert isinstance(providers["sms"], OutboxProvider) and isinstance(providers["wecom_group"], OutboxProvider)
    assert isinstance(providers["webhook"], WebhookProvider)
    with pytest.raises(ValueError, match="telegram"):
        build_providers(ChannelsConfig(outbox_channels=["telegram"]))


async def test_live_config_builds_every_real_provider(
    vendor: VendorState, base_url: str, smtp_server: tuple[Controller, Inbox], make_message
) -> None:
    controller, inbox = smtp_server
    cfg = live_config(
        base_url,
        smtp_port=controller.port,
        wecom={"default_sender": "zhangsan"},
        wecom_app={
            "base_url": f"{base_url}/wecom",
            "corp_id": WECOM_CORP_ID,
            "corp_secret": WECOM_APP_SECRET,
            "agent_id": 7,
        },
    )
    providers = build_providers(cfg)
    expected = {
        "webhook": WebhookProvider,
        "email": EmailProvider,
        "wecom": WeComContactProvider,
        "wecom_group": WeComGroupProvider,
        "sms": AliyunSmsProvider,
        "push": PushGatewayProvider,
        "official_account": OfficialAccountProvider,
        "miniprogram": MiniProgramProvider,
        "wecom_app": WeComAppProvider,
    }
    assert {ch: type(p) for ch, p in providers.items()} == expected
    assert all(p.channel == ch for ch, p in providers.items())
    assert providers["wecom"].client is providers["wecom_group"].client  # type: ignore[attr-defined]
    assert providers["wecom_app"].client is not providers["wecom"].client  # type: ignore[attr-defined]
    assert isinstance(providers["wecom"], PollableProvider) and not isinstance(providers["sms"], PollableProvider)

    vendor.wecom_contacts["wm-1"] = ["zhangsan"]
    vendor.wecom_groups["wr-1"] = "zhangsan"
    vendor.wecom_members.add("zhangsan")
    vendor.sms_templates.add("SMS_100001")
    vendor.push_users.add("app-u-1")
    vendor.oa_templates.add("TPL-OA-1")
    vendor.oa_subscribers.add("o-1")
    vendor.mp_grants["mp-1"] = 1
    addresses = {
        "webhook": None,
        "email": "a@example.com",
        "wecom": "wm-1",
        "wecom_group": "wr-1",
        "sms": "13800138000",
        "push": "app-u-1",
        "official_account": "o-1",
        "miniprogram": "mp-1",
        "wecom_app": "zhangsan",
    }
    statuses = {ch: (await providers[ch].send(make_message(ch, addr))).status for ch, addr in addresses.items()}
    pending = {"wecom", "wecom_group"}
    assert statuses == {ch: "pending" if ch in pending else "sent" for ch in addresses}
    assert len(inbox.envelopes) == 1
    await aclose_providers(providers)


def test_config_secrets_stay_hidden_and_parse_from_plain_data(base_url: str) -> None:
    cfg = live_config(base_url)
    assert "contact-secret" not in repr(cfg) and "aliyun-secret" not in cfg.model_dump_json()
    again = ChannelsConfig.model_validate_json(json.dumps({"sms": {"access_key_secret": "s", "templates": {"a": "b"}}}))
    assert again.sms.access_key_secret is not None and again.sms.access_key_secret.get_secret_value() == "s"
    assert again.wecom.base_url == "https://qyapi.weixin.qq.com"
    assert again.official_account.base_url == "https://api.weixin.qq.com"
    assert again.sms.base_url == "https://dysmsapi.aliyuncs.com"


async def test_a_file_outbox_keeps_its_messages_in_the_file_only(tmp_path: Path, make_message) -> None:
    """The embedded default's worker "sends" into a file outbox for its whole
    life: it must not also hold every message in memory (2.3 kB each)."""
    path = tmp_path / "outbox.jsonl"
    outbox = Outbox(path)
    messages = [make_message("sms", f"1380013800{i}") for i in range(3)]
    for m in messages:
        assert outbox.record(m)
    assert outbox.records == []
    assert outbox.messages("sms") == messages  # read back from the file
    assert Outbox(path).messages() == messages  # and by another process


async def test_a_file_outbox_remembers_the_newest_keys(
    tmp_path: Path, make_message, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A bounded de-duplication window, as a vendor's: a retried key within
    it is acknowledged without a second record; one that fell out of it is
    recorded again. A restart reads the window back from the file."""
    monkeypatch.setattr(outbox_module, "KEPT_KEYS", 2)
    path = tmp_path / "outbox.jsonl"
    outbox = Outbox(path)
    first, second, third = (make_message("sms", f"1390013900{i}") for i in range(3))
    for m in (first, second, third):
        assert outbox.record(m)
    assert not outbox.record(third) and not outbox.record(second)
    assert outbox.record(first)  # forgotten: the window holds the two newest keys
    restarted = Outbox(path)  # the file's last two keys: third, first
    assert not restarted.record(first) and not restarted.record(third)
    assert restarted.record(second)
    assert len(path.read_text(encoding="utf-8").splitlines()) == 5
