from __future__ import annotations

import asyncio

import httpx
import pytest

from engine.channels.config import MiniProgramConfig, OfficialAccountConfig
from engine.channels.miniprogram import MiniProgramProvider
from engine.channels.official_account import OfficialAccountProvider
from engine.channels.wechat import WeChatClient

from .vendors import MP_APP_ID, MP_SECRET, WECHAT_APP_ID, WECHAT_SECRET, Canned, VendorState

TPL = "/wechat/cgi-bin/message/template/send"
SUB = "/wechat/cgi-bin/message/subscribe/send"
TOKEN = "/wechat/cgi-bin/token"
STABLE = "/wechat/cgi-bin/stable_token"


def oa(base_url: str, **kw: object) -> OfficialAccountProvider:
    cfg = OfficialAccountConfig.model_validate(
        {
            "base_url": f"{base_url}/wechat",
            "app_id": WECHAT_APP_ID,
            "app_secret": WECHAT_SECRET,
            "templates": {"welcome": "TPL-OA-1"},
            **kw,
        }
    )
    return OfficialAccountProvider(cfg, WeChatClient(cfg))


def mp(base_url: str, **kw: object) -> MiniProgramProvider:
    cfg = MiniProgramConfig.model_validate(
        {
            "base_url": f"{base_url}/wechat",
            "app_id": MP_APP_ID,
            "app_secret": MP_SECRET,
            "templates": {"welcome": "TPL-MP-1"},
            **kw,
        }
    )
    return MiniProgramProvider(cfg, WeChatClient(cfg))


@pytest.fixture
def oa_vendor(vendor: VendorState) -> VendorState:
    vendor.oa_templates.add("TPL-OA-1")
    vendor.oa_subscribers.add("o-openid-1")
    return vendor


async def test_template_message_request(oa_vendor: VendorState, base_url: str, make_message) -> None:
    msg = make_message(
        "official_account",
        "o-openid-1",
        data={"params": {"first": "您好", "keyword1": 88}, "url": "https://shop.example/c/1"},
    )
    result = await oa(base_url).send(msg)
    assert result.status == "sent" and result.provider_message_id
    (token_req,) = oa_vendor.calls(TOKEN)
    assert token_req.query == {"grant_type": "client_credential", "appid": WECHAT_APP_ID, "secret": WECHAT_SECRET}
    (req,) = oa_vendor.calls(TPL)
    assert req.query["access_token"] == "oa-tok-1"
    assert req.json() == {
        "touser": "o-openid-1",
        "template_id": "TPL-OA-1",
        "client_msg_id": msg.idempotency_key,
        "url": "https://shop.example/c/1",
        "data": {"first": {"value": "您好"}, "keyword1": {"value": "88"}},
    }


async def test_client_msg_id_dedupes_retries(oa_vendor: VendorState, base_url: str, make_message) -> None:
    p = oa(base_url)
    msg = make_message("official_account", "o-openid-1", idempotency_key="journey:j1:user:u1:step:s3:" + "x" * 40)
    first = await p.send(msg)
    again = await p.send(msg)
    assert first.provider_message_id == again.provider_message_id
    assert len(oa_vendor.oa_delivered) == 1
    client_msg_ids = {c.json()["client_msg_id"] for c in oa_vendor.calls(TPL)}
    (cmid,) = client_msg_ids
    assert len(cmid) == 32  # long keys are hashed to a vendor-sized value
    other = await p.send(make_message("official_account", "o-openid-1"))
    assert other.provider_message_id != first.provider_message_id


async def test_unsubscribed_user_is_final(oa_vendor: VendorState, base_url: str, make_message) -> None:
    result = await oa(base_url).send(make_message("official_account", "o-gone"))
    assert result.status == "failed" and not result.retryable and "43004" in (result.error or "")


async def test_unmapped_template_is_final(oa_vendor: VendorState, base_url: str, make_message) -> None:
    result = await oa(base_url).send(make_message("official_account", "o-openid-1", template="nope"))
    assert result.status == "failed" and not result.retryable and "template_id" in (result.error or "")
    assert oa_vendor.calls(TPL) == [] and oa_vendor.calls(TOKEN) == []


async def test_one_token_for_many_sends(oa_vendor: VendorState, base_url: str, make_message) -> None:
    p = oa(base_url)
    results = await asyncio.gather(*(p.send(make_message("official_account", "o-openid-1")) for _ in range(15)))
    assert {r.status for r in results} == {"sent"}
    assert len(oa_vendor.calls(TOKEN)) == 1


async def test_token_knocked_out_by_another_process_is_refreshed(
    oa_vendor: VendorState, base_url: str, make_message
) -> None:
    p = oa(base_url)
    assert (await p.send(make_message("official_account", "o-openid-1"))).status == "sent"
    # Another process fetches a token with the classic endpoint: ours dies (40001).
    async with httpx.AsyncClient() as other:
        await other.get(
            f"{base_url}{TOKEN}",
            params={"grant_type": "client_credential", "appid": WECHAT_APP_ID, "secret": WECHAT_SECRET},
        )
    assert (await p.send(make_message("official_account", "o-openid-1"))).status == "sent"
    assert [c.query["access_token"] for c in oa_vendor.calls(TPL)] == ["oa-tok-1", "oa-tok-1", "oa-tok-3"]


async def test_stable_token_lets_processes_coexist(oa_vendor: VendorState, base_url: str, make_message) -> None:
    a, b = oa(base_url, token_endpoint="stable_token"), oa(base_url, token_endpoint="stable_token")
    for p in (a, b, a, b):
        assert (await p.send(make_message("official_account", "o-openid-1"))).status == "sent"
    assert oa_vendor.calls(TOKEN) == []
    assert [c.json()["force_refresh"] for c in oa_vendor.calls(STABLE)] == [False, False]
    assert {c.query["access_token"] for c in oa_vendor.calls(TPL)} == {"oa-tok-1"}
    assert len(oa_vendor.calls(TPL)) == 4  # nobody's token was rejected


async def test_bad_app_secret_is_final(oa_vendor: VendorState, base_url: str, make_message) -> None:
    result = await oa(base_url, app_secret="wrong").send(make_message("official_account", "o-openid-1"))
    assert result.status == "failed" and not result.retryable and "40001" in (result.error or "")


@pytest.mark.parametrize(("errcode", "retryable"), [(-1, True), (45009, True), (45011, True), (40003, False)])
async def test_errcode_mapping(
    oa_vendor: VendorState, base_url: str, make_message, errcode: int, retryable: bool
) -> None:
    oa_vendor.script(TPL, Canned(200, {"errcode": errcode, "errmsg": f"wechat says {errcode}"}))
    result = await oa(base_url).send(make_message("official_account", "o-openid-1"))
    assert result.status == "failed" and result.retryable is retryable
    assert f"wechat says {errcode}" in (result.error or "")


async def test_subscribe_message(vendor: VendorState, base_url: str, make_message) -> None:
    vendor.mp_grants["mp-openid-1"] = 1
    msg = make_message(
        "miniprogram",
        "mp-openid-1",
        data={"params": {"thing1": "会员日", "time2": "2024-06-18 10:00"}, "page": "pages/coupon/index?id=1"},
    )
    p = mp(base_url, miniprogram_state="trial")
    result = await p.send(msg)
    assert result.status == "sent" and result.provider_message_id
    (req,) = vendor.calls(SUB)
    assert req.query["access_token"] == "mp-tok-1"
    assert req.json() == {
        "touser": "mp-openid-1",
        "template_id": "TPL-MP-1",
        "page": "pages/coupon/index?id=1",
        "miniprogram_state": "trial",
        "lang": "zh_CN",
        "data": {"thing1": {"value": "会员日"}, "time2": {"value": "2024-06-18 10:00"}},
    }
    # The one-time grant is used up: the next one is refused, finally.
    refused = await p.send(make_message("miniprogram", "mp-openid-1"))
    assert refused.status == "failed" and not refused.retryable and "43101" in (refused.error or "")
    assert len(vendor.calls(TOKEN)) == 1


async def test_subscribe_token_expiry_is_refreshed(vendor: VendorState, base_url: str, make_message) -> None:
    vendor.mp_grants["mp-openid-1"] = 2
    p = mp(base_url)
    await p.send(make_message("miniprogram", "mp-openid-1"))
    vendor.mp_tokens.expire_all()
    result = await p.send(make_message("miniprogram", "mp-openid-1"))
    assert result.status == "sent"
    assert [c.query["access_token"] for c in vendor.calls(SUB)] == ["mp-tok-1", "mp-tok-1", "mp-tok-2"]
