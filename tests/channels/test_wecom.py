from __future__ import annotations

import asyncio

import pytest

from engine.channels import PollableProvider, build_providers
from engine.channels.config import WeComAppConfig, WeComConfig
from engine.channels.wecom import WeComAppProvider, WeComClient, WeComContactProvider, WeComGroupProvider

from .vendors import WECOM_APP_SECRET, WECOM_CORP_ID, WECOM_SECRET, Canned, VendorState, live_config

ADD = "/wecom/cgi-bin/externalcontact/add_msg_template"
TASK = "/wecom/cgi-bin/externalcontact/get_groupmsg_task"
RESULT = "/wecom/cgi-bin/externalcontact/get_groupmsg_send_result"
TOKEN = "/wecom/cgi-bin/gettoken"


def config(base_url: str, **kw: object) -> WeComConfig:
    return WeComConfig.model_validate(
        {"base_url": f"{base_url}/wecom", "corp_id": WECOM_CORP_ID, "corp_secret": WECOM_SECRET, **kw}
    )


def client_for(cfg: WeComConfig) -> WeComClient:
    assert cfg.corp_id and cfg.corp_secret
    return WeComClient(cfg.base_url, cfg.corp_id, cfg.corp_secret.get_secret_value())


def contact_provider(base_url: str, **kw: object) -> WeComContactProvider:
    cfg = config(base_url, **kw)
    return WeComContactProvider(cfg, client_for(cfg))


def group_provider(base_url: str, **kw: object) -> WeComGroupProvider:
    cfg = config(base_url, **kw)
    return WeComGroupProvider(cfg, client_for(cfg))


async def test_contact_message_is_pending_until_staff_confirms(
    vendor: VendorState, base_url: str, make_message
) -> None:
    vendor.wecom_contacts["wm-ext-1"] = ["zhangsan"]
    p = contact_provider(base_url, default_sender="zhangsan")
    assert isinstance(p, PollableProvider)
    msg = make_message("wecom", "wm-ext-1", data={"attachments": [{"msgtype": "link", "link": {"url": "https://x"}}]})

    result = await p.send(msg)
    assert result.status == "pending" and result.provider_message_id
    (req,) = vendor.calls(ADD)
    assert req.query["access_token"] == "wecom-tok-1"
    assert req.json() == {
        "chat_type": "single",
        "external_userid": ["wm-ext-1"],
        "sender": "zhangsan",
        "text": {"content": msg.body},
        "attachments": [{"msgtype": "link", "link": {"url": "https://x"}}],
    }

    msgid = result.provider_message_id
    assert (await p.poll_result(msgid)).status == "pending"
    vendor.wecom_confirm(msgid, "zhangsan")
    polled = await p.poll_result(msgid)
    assert polled.status == "sent" and polled.provider_message_id == msgid
    assert vendor.calls(RESULT)[-1].json()["userid"] == "zhangsan"
    assert len(vendor.calls(TOKEN)) == 1


async def test_poll_walks_pages_of_several_staff(vendor: VendorState, base_url: str, make_message) -> None:
    # No sender: every staff member who has the contact gets the task; the
    # fake answers one item per page, so the client must follow next_cursor.
    vendor.wecom_contacts["wm-ext-2"] = ["lisi", "wangwu", "zhaoliu"]
    p = contact_provider(base_url)
    result = await p.send(make_message("wecom", "wm-ext-2"))
    assert "sender" not in vendor.calls(ADD)[0].json()
    msgid = result.provider_message_id
    assert msgid
    vendor.wecom_confirm(msgid, "zhaoliu")
    assert (await p.poll_result(msgid)).status == "sent"
    assert [c.json()["cursor"] for c in vendor.calls(TASK)] == ["", "1", "2"]


async def test_poll_reports_failure_once_no_staff_can_still_send(
    vendor: VendorState, base_url: str, make_message
) -> None:
    vendor.wecom_contacts["wm-ext-3"] = ["lisi", "wangwu"]
    p = contact_provider(base_url)
    msgid = (await p.send(make_message("wecom", "wm-ext-3"))).provider_message_id
    assert msgid
    vendor.wecom_confirm(msgid, "lisi", status=3)  # customer already got a mass message
    assert (await p.poll_result(msgid)).status == "pending"  # wangwu may still send it
    vendor.wecom_confirm(msgid, "wangwu", status=2)  # not a contact any more
    final = await p.poll_result(msgid)
    assert final.status == "failed" and not final.retryable
    assert "already received" in (final.error or "") and "not a contact" in (final.error or "")


async def test_unknown_contact_in_fail_list_is_final(vendor: VendorState, base_url: str, make_message) -> None:
    result = await contact_provider(base_url).send(make_message("wecom", "wm-stranger"))
    assert result.status == "failed" and not result.retryable and "wm-stranger" in (result.error or "")


async def test_group_message_flow(vendor: VendorState, base_url: str, make_message) -> None:
    vendor.wecom_groups["wr-chat-1"] = "owner-1"
    p = group_provider(base_url, default_sender="owner-1")
    result = await p.send(make_message("wecom_group", "wr-chat-1", data={"wecom_sender": "owner-1"}))
    assert result.status == "pending"
    body = vendor.calls(ADD)[0].json()
    assert body["chat_type"] == "group" and body["chat_id_list"] == ["wr-chat-1"] and body["sender"] == "owner-1"
    msgid = result.provider_message_id
    assert msgid
    assert (await p.poll_result(msgid)).status == "pending"
    vendor.wecom_confirm(msgid, "owner-1")
    assert (await p.poll_result(msgid)).status == "sent"


async def test_group_needs_a_sender(vendor: VendorState, base_url: str, make_message) -> None:
    result = await group_provider(base_url).send(make_message("wecom_group", "wr-chat-1"))
    assert result.status == "failed" and not result.retryable and "sender" in (result.error or "")
    assert vendor.calls(ADD) == []


async def test_wrong_group_owner_is_final_with_errmsg(vendor: VendorState, base_url: str, make_message) -> None:
    vendor.wecom_groups["wr-chat-1"] = "owner-1"
    result = await group_provider(base_url, default_sender="someone").send(make_message("wecom_group", "wr-chat-1"))
    assert result.status == "failed" and not result.retryable
    assert "84061" in (result.error or "") and "not the owner" in (result.error or "")


async def test_one_token_for_many_concurrent_sends(vendor: VendorState, base_url: str, make_message) -> None:
    for i in range(20):
        vendor.wecom_contacts[f"wm-{i}"] = ["zhangsan"]
    p = contact_provider(base_url)
    results = await asyncio.gather(*(p.send(make_message("wecom", f"wm-{i}")) for i in range(20)))
    assert {r.status for r in results} == {"pending"}
    assert len(vendor.calls(TOKEN)) == 1 and p.client.tokens.fetches == 1
    assert {c.query["access_token"] for c in vendor.calls(ADD)} == {"wecom-tok-1"}


async def test_contact_and_group_share_the_token(vendor: VendorState, base_url: str, make_message) -> None:
    vendor.wecom_contacts["wm-1"] = ["zhangsan"]
    vendor.wecom_groups["wr-1"] = "zhangsan"
    cfg = live_config(base_url, wecom={"default_sender": "zhangsan"})
    providers = build_providers(cfg)
    assert (await providers["wecom"].send(make_message("wecom", "wm-1"))).status == "pending"
    assert (await providers["wecom_group"].send(make_message("wecom_group", "wr-1"))).status == "pending"
    assert len(vendor.calls(TOKEN)) == 1


@pytest.mark.parametrize("expiry", ["server_expired_42001", "server_unknown_40014"])
async def test_rejected_token_is_refreshed_and_call_retried_once(
    vendor: VendorState, base_url: str, make_message, expiry: str
) -> None:
    vendor.wecom_contacts["wm-1"] = ["zhangsan"]
    p = contact_provider(base_url)
    assert (await p.send(make_message("wecom", "wm-1"))).status == "pending"
    if expiry == "server_expired_42001":
        vendor.wecom_tokens.expire_all()
    else:
        vendor.wecom_tokens.valid.clear()
    result = await p.send(make_message("wecom", "wm-1"))
    assert result.status == "pending"
    assert [c.query["access_token"] for c in vendor.calls(ADD)] == ["wecom-tok-1", "wecom-tok-1", "wecom-tok-2"]
    assert len(vendor.calls(TOKEN)) == 2


async def test_token_refetched_when_cached_one_nears_expiry(vendor: VendorState, base_url: str, make_message) -> None:
    vendor.wecom_contacts["wm-1"] = ["zhangsan"]
    p = contact_provider(base_url)
    now = [1000.0]
    p.client.tokens.clock = lambda: now[0]
    await p.send(make_message("wecom", "wm-1"))
    now[0] += 6800  # within expires_in (7200) minus the refresh margin
    await p.send(make_message("wecom", "wm-1"))
    assert len(vendor.calls(TOKEN)) == 1
    now[0] += 200  # past 7200 - 300
    await p.send(make_message("wecom", "wm-1"))
    assert len(vendor.calls(TOKEN)) == 2
    assert vendor.calls(ADD)[-1].query["access_token"] == "wecom-tok-2"


async def test_token_rejected_twice_gives_up_retryable(vendor: VendorState, base_url: str, make_message) -> None:
    vendor.script(
        ADD, Canned(200, {"errcode": 42001, "errmsg": "expired"}), Canned(200, {"errcode": 42001, "errmsg": "expired"})
    )
    result = await contact_provider(base_url).send(make_message("wecom", "wm-1"))
    assert result.status == "failed" and result.retryable and "42001" in (result.error or "")
    assert len(vendor.calls(ADD)) == 2 and len(vendor.calls(TOKEN)) == 2


@pytest.mark.parametrize(
    ("errcode", "retryable"),
    [(-1, True), (45009, True), (45033, True), (40003, False), (41048, False), (48002, False)],
)
async def test_errcode_mapping(vendor: VendorState, base_url: str, make_message, errcode: int, retryable: bool) -> None:
    vendor.script(ADD, Canned(200, {"errcode": errcode, "errmsg": f"vendor says {errcode}"}))
    result = await contact_provider(base_url).send(make_message("wecom", "wm-1"))
    assert result.status == "failed" and result.retryable is retryable
    assert f"vendor says {errcode}" in (result.error or "")


async def test_http_502_is_retryable(vendor: VendorState, base_url: str, make_message) -> None:
    vendor.script(ADD, Canned(502, "<html>bad gateway</html>"))
    result = await contact_provider(base_url).send(make_message("wecom", "wm-1"))
    assert result.status == "failed" and result.retryable


async def test_bad_corp_secret_is_final(vendor: VendorState, base_url: str, make_message) -> None:
    result = await contact_provider(base_url, corp_secret="wrong").send(make_message("wecom", "wm-1"))
    assert result.status == "failed" and not result.retryable and "40001" in (result.error or "")
    assert vendor.calls(ADD) == []


async def test_busy_token_endpoint_is_retryable(vendor: VendorState, base_url: str, make_message) -> None:
    vendor.script(TOKEN, Canned(200, {"errcode": -1, "errmsg": "system busy"}))
    p = contact_provider(base_url)
    first = await p.send(make_message("wecom", "wm-1"))
    assert first.status == "failed" and first.retryable
    vendor.wecom_contacts["wm-1"] = ["zhangsan"]
    assert (await p.send(make_message("wecom", "wm-1"))).status == "pending"


async def test_poll_trouble_keeps_message_pending(vendor: VendorState, base_url: str, make_message) -> None:
    vendor.wecom_contacts["wm-1"] = ["zhangsan"]
    p = contact_provider(base_url)
    msgid = (await p.send(make_message("wecom", "wm-1"))).provider_message_id
    assert msgid
    vendor.script(TASK, Canned(200, {"errcode": -1, "errmsg": "system busy"}))
    polled = await p.poll_result(msgid)
    assert polled.status == "pending" and polled.retryable and "busy" in (polled.error or "")


async def test_app_message_to_internal_member(vendor: VendorState, base_url: str, make_message) -> None:
    vendor.wecom_members.add("zhangsan")
    cfg = WeComAppConfig(
        base_url=f"{base_url}/wecom", corp_id=WECOM_CORP_ID, corp_secret=WECOM_APP_SECRET, agent_id=1000002
    )
    client = WeComClient(cfg.base_url, WECOM_CORP_ID, WECOM_APP_SECRET)
    p = WeComAppProvider(cfg, client)
    result = await p.send(make_message("wecom_app", "zhangsan"))
    assert result.status == "sent" and (result.provider_message_id or "").startswith("app")
    body = vendor.calls("/wecom/cgi-bin/message/send")[0].json()
    assert body["touser"] == "zhangsan" and body["agentid"] == 1000002 and body["msgtype"] == "text"
    assert body["enable_duplicate_check"] == 1 and body["duplicate_check_interval"] == 1800
    assert vendor.calls(TOKEN)[0].query["corpsecret"] == WECOM_APP_SECRET

    missing = await p.send(make_message("wecom_app", "nobody"))
    assert missing.status == "failed" and not missing.retryable
