"""Official Account callbacks end to end over real HTTP: safe (AES) and
plaintext mode, subscribe through a parametric QR code (``qrscene_``
stripped) starting a journey that sends a template message through the real
provider to a local WeChat stand-in, then that send's
``TEMPLATESENDJOBFINISH`` report finding it in the ledger."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import pytest_asyncio
from sqlalchemy import select

from api.app import create_app
from api.settings import ApiSettings
from engine import queries
from engine.callbacks import receipts
from engine.callbacks.messages import parse
from engine.channels.config import ChannelsConfig, OfficialAccountConfig
from engine.store import Store
from engine.store.models import CallbackReceipt, Delivery, Event
from runtime.worker import build_activities, build_worker
from tests.api.callback_support import OA_AES_KEY, OA_TOKEN, OfficialAccountSender, xml
from tests.api.conftest import KEYS, LiveServer, auth, eventually, unique
from tests.channels.vendors import WECHAT_APP_ID, WECHAT_SECRET, VendorServer, VendorState

TEMPLATE_ID = "TPL-CARD-THANKS"


@dataclass
class OAStack:
    url: str
    http: httpx.AsyncClient
    store: Store
    settings: ApiSettings
    sender: OfficialAccountSender
    vendor: VendorState


@pytest.fixture(scope="module")
def wechat() -> Iterator[VendorServer]:
    server = VendorServer().start()
    yield server
    server.stop()


def oa_settings(tmp: Any, task_queue: str, address: str, wechat_url: str, **oa: Any) -> ApiSettings:
    account = OfficialAccountConfig(
        base_url=f"{wechat_url}/wechat",
        app_id=WECHAT_APP_ID,
        app_secret=WECHAT_SECRET,
        templates={"card_thanks": TEMPLATE_ID},
        callback_token=OA_TOKEN,
        **oa,
    )
    return ApiSettings(
        database_url=f"sqlite:///{tmp / 'journeys.db'}",
        task_queue=task_queue,
        temporal_address=address,
        api_keys=KEYS,
        channels=ChannelsConfig(mode="live", official_account=account),
        cap_per_day=None,
        cap_per_week=None,
        callback_retry_seconds=0,
    )


@pytest_asyncio.fixture(scope="module")
async def oa(dev_env: Any, wechat: VendorServer, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[OAStack]:
    tmp = tmp_path_factory.mktemp("oa-callbacks")
    address = dev_env.client.service_client.config.target_host
    # safe mode, plaintext still allowed (兼容模式): both are exercised
    settings = oa_settings(
        tmp,
        f"oa-{uuid.uuid4().hex[:8]}",
        address,
        wechat.url,
        callback_aes_key=OA_AES_KEY,
        callback_allow_plaintext=True,
    )
    store = Store(settings.database_url)
    store.migrate()
    activities = build_activities(settings, store)
    app = create_app(settings, store=store)
    state = wechat.reset()
    state.oa_templates.add(TEMPLATE_ID)
    async with build_worker(dev_env.client, activities.all(), settings.task_queue):
        with LiveServer(app) as url:
            async with httpx.AsyncClient(timeout=30) as http:
                sender = OfficialAccountSender(http, url, app_id=WECHAT_APP_ID)
                yield OAStack(url, http, store, settings, sender, state)
    store.dispose()


def _event(openid: str, event: str, **fields: Any) -> dict[str, Any]:
    return {
        "ToUserName": "gh_shop",
        "FromUserName": openid,
        "CreateTime": 1700000000 + uuid.uuid4().int % 10**6,
        "MsgType": "event",
        "Event": event,
        **fields,
    }


def _events(stack: OAStack, name: str, openid: str) -> list[Event]:
    uid = queries.lookup(stack.store, "openid", openid)
    with stack.store.read() as s:
        return list(s.scalars(select(Event).where(Event.name == name, Event.user_id == uid)))


async def _found(value: Any) -> Any:
    return value


async def _card_journey(oa: OAStack, prefix: str, card: str) -> str:
    """Deploy a journey that thanks each follow through the QR scene ``card``
    with a template message; returns its id."""
    jid = unique(prefix)
    r = await oa.http.put(f"{oa.url}/v1/templates/card_thanks", json={"body": "谢谢关注"}, headers=auth())
    assert r.status_code in (200, 201), r.text
    source = (
        f'journey "{jid}"\n  entry event subscribe where placement == "{card}"\n  reentry always\n\n'
        '  send official_account "card_thanks"\n'
    )
    r = await oa.http.post(f"{oa.url}/v1/journeys", json={"source": source, "id": jid}, headers=auth())
    assert r.status_code == 201, r.text
    return jid


async def test_server_verification_echoes_when_signed(oa: OAStack) -> None:
    q = oa.sender.query() | {"echostr": "8152357451213"}
    r = await oa.http.get(f"{oa.url}/v1/callbacks/official-account", params=q)
    assert r.status_code == 200 and r.text == "8152357451213"
    r = await oa.http.get(f"{oa.url}/v1/callbacks/official-account", params=q | {"signature": "0" * 40})
    assert r.status_code == 403 and r.json()["type"].endswith("callback-bad-signature")


async def test_subscribe_by_a_qr_scene_starts_the_journey_whose_send_is_then_reported(oa: OAStack) -> None:
    jid, openid = await _card_journey(oa, "oa-card", "card-7"), unique("o-card")
    oa.vendor.oa_subscribers.add(openid)
    follow = _event(openid, "subscribe", EventKey="qrscene_card-7", Ticket="gQH47joAAAAAAAAAASxodHRw")
    r = await oa.sender.post(follow)  # safe mode
    assert r.status_code == 200 and r.text == "success"

    async def sent() -> Delivery | None:
        with oa.store.read() as s:
            return s.scalars(select(Delivery).where(Delivery.journey_id == jid, Delivery.status == "sent")).first()

    delivery = await eventually(sent)
    assert delivery is not None and delivery.provider_message_id
    (event,) = _events(oa, "subscribe", openid)
    assert event.properties == {
        "source": "official_account",
        "channel": "official_account",
        "account": "gh_shop",
        "placement": "card-7",
        "scene": "card-7",
        "ticket": "gQH47joAAAAAAAAAASxodHRw",
    }
    # WeChat reports the template send; the report finds the ledger's row
    report = _event(
        openid, "TEMPLATESENDJOBFINISH", MsgID=int(delivery.provider_message_id), Status="failed:user block"
    )
    r = await oa.sender.post(report)
    assert r.status_code == 200
    rid = receipts.receipt_id("official_account", WECHAT_APP_ID, parse(xml(report)))

    async def reported() -> dict[str, Any] | None:
        got = receipts.get(oa.store, rid)
        return got.outcome if got is not None and got.processed else None

    outcome = await eventually(reported)
    assert outcome is not None and outcome["events"] == []
    assert outcome["report"]["delivery"] == delivery.id
    assert outcome["report"]["status"] == "failed" and "blocks" in outcome["report"]["reason"]
    # the user blocked the account: the send the ledger held as 'sent' is failed now, with WeChat's reason
    assert outcome["report"]["ledger_status"] == "failed"


async def test_scan_and_unsubscribe_in_plaintext_mode_and_a_replay_is_one_event(oa: OAStack) -> None:
    openid = unique("o-scan")
    scan = _event(openid, "SCAN", EventKey="store-12", Ticket="t-1")
    for _ in range(2):  # WeChat's retry of a plaintext message: same body, fresh signature
        r = await oa.sender.post(scan, encrypted=False)
        assert r.status_code == 200 and r.text == "success"
    r = await oa.sender.post(scan, encrypted=True)  # and once more encrypted: the same message
    assert r.status_code == 200
    r = await oa.sender.post(_event(openid, "unsubscribe", EventKey=""), encrypted=False)
    assert r.status_code == 200
    assert await eventually(lambda: _found(_events(oa, "unsubscribe", openid)))
    assert await eventually(lambda: _found(_events(oa, "qr_scanned", openid)))
    scans = _events(oa, "qr_scanned", openid)
    assert len(scans) == 1
    assert scans[0].properties["placement"] == "store-12" and scans[0].properties["scene"] == "store-12"
    # a follow without a QR code carries no placement
    plain = unique("o-plain")
    assert (await oa.sender.post(_event(plain, "subscribe", EventKey=""))).status_code == 200
    assert await eventually(lambda: _found(_events(oa, "subscribe", plain)))
    assert "placement" not in _events(oa, "subscribe", plain)[0].properties


async def test_refusals(oa: OAStack) -> None:
    openid = unique("o-bad")
    message = _event(openid, "subscribe", EventKey="qrscene_x")
    # a stale plaintext signature (the body is not signed: replaying one is refused)
    r = await oa.sender.post(message, encrypted=False, timestamp="1500000000")
    assert r.status_code == 403 and r.json()["type"].endswith("callback-stale")
    # the wrong token
    forged = OfficialAccountSender(oa.http, oa.url, token="not-ours", app_id=WECHAT_APP_ID)
    assert (await forged.post(message)).status_code == 403
    # encrypted for another app
    other = OfficialAccountSender(oa.http, oa.url, app_id="wx-other-app")
    r = await other.post(message)
    assert r.status_code == 403 and r.json()["type"].endswith("callback-bad-receiver")
    # an openid parameter that is not the message's
    query = oa.sender.query() | {"openid": "o-someone-else"}
    r = await oa.http.post(f"{oa.url}/v1/callbacks/official-account", params=query, content=xml(message))
    assert r.status_code == 400
    with oa.store.read() as s:
        rows = s.scalars(select(CallbackReceipt).where(CallbackReceipt.vendor == "official_account")).all()
        assert all(r.message.get("FromUserName") != openid for r in rows)
    assert queries.lookup(oa.store, "openid", openid) is None


async def test_receipts_listing_shows_what_came_of_each(oa: OAStack) -> None:
    openid = unique("o-list")
    await oa.sender.post(_event(openid, "CLICK", EventKey="menu-1"))
    r = await oa.http.get(f"{oa.url}/v1/callbacks/receipts", params={"vendor": "official_account"}, headers=auth())
    assert r.status_code == 200
    latest = r.json()[0]
    assert latest["kind"] == "event/CLICK" and "not mapped" in latest["outcome"]["ignored"]
    assert (await oa.http.get(f"{oa.url}/v1/callbacks/receipts")).status_code == 401
    r = await oa.http.get(f"{oa.url}/v1/callbacks/receipts", params={"limit": 1000}, headers=auth())
    assert r.status_code == 422


async def test_safe_mode_refuses_plaintext(dev_env: Any, tmp_path: Any) -> None:
    settings = oa_settings(tmp_path, "unused", "", "http://127.0.0.1:9", callback_aes_key=OA_AES_KEY)
    store = Store(settings.database_url)
    store.migrate()
    app = create_app(settings, store=store)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://api") as http:
        sender = OfficialAccountSender(http, "http://api", app_id=WECHAT_APP_ID)
        r = await sender.post(_event("o-x", "subscribe"), encrypted=False)
        assert r.status_code == 403 and r.json()["type"].endswith("callback-plaintext-refused")
        no_key = OfficialAccountSender(http, "http://api", aes_key=None, app_id=WECHAT_APP_ID)
        assert (await no_key.post(_event("o-x", "subscribe"))).status_code == 403
    with store.read() as s:
        assert s.scalars(select(CallbackReceipt)).first() is None
    store.dispose()


async def test_an_unfollow_opts_out_of_the_account_and_a_follow_back_opts_in_but_not_past_an_operator(
    oa: OAStack,
) -> None:
    """WeChat sends no template message to a non-follower, so an
    ``unsubscribe`` opts the person out of ``official_account`` (the
    journey's send is suppressed, not failed at the vendor); following again
    opts them back in before the follow's own journey sends; an opt-out an
    operator made stays whatever the person does on WeChat."""
    jid, openid = await _card_journey(oa, "oa-refollow", "card-9"), unique("o-refollow")
    oa.vendor.oa_subscribers.add(openid)
    sent_at = iter(range(1700000000 + uuid.uuid4().int % 10**6, 1800000000))  # WeChat's CreateTime: in order

    def statuses() -> list[str]:
        with oa.store.read() as s:
            rows = s.scalars(select(Delivery).where(Delivery.journey_id == jid).order_by(Delivery.at)).all()
            return [d.status for d in rows]

    async def settled(count: int) -> list[str] | None:
        found = statuses()
        return found if len(found) >= count and all(st in ("sent", "suppressed") for st in found) else None

    def opted_out() -> tuple[bool, str | None] | None:
        profile = queries.user_profile(oa.store, queries.lookup(oa.store, "openid", openid) or "")
        row = next((c for c in profile.consents if c.channel == "official_account"), None) if profile else None
        return (row.opted_out, row.source) if row else None

    follow = _event(openid, "subscribe", EventKey="qrscene_card-9", CreateTime=next(sent_at))
    assert (await oa.sender.post(follow)).status_code == 200
    assert await eventually(lambda: settled(1), attempts=900) == ["sent"]

    assert (
        await oa.sender.post(_event(openid, "unsubscribe", EventKey="", CreateTime=next(sent_at)))
    ).status_code == 200
    assert await eventually(lambda: _found(opted_out() == (True, "vendor:unfollowed")))

    # following again sends again
    assert (
        await oa.sender.post(_event(openid, "subscribe", EventKey="qrscene_card-9", CreateTime=next(sent_at)))
    ).status_code == 200
    assert await eventually(lambda: settled(2), attempts=900) == ["sent", "sent"]
    assert opted_out() == (False, "vendor:unfollowed")

    uid = queries.lookup(oa.store, "openid", openid)
    r = await oa.http.post(f"{oa.url}/v1/users/{uid}/opt-out/official_account", json={}, headers=auth())
    assert r.status_code == 200, r.text
    assert (
        await oa.sender.post(_event(openid, "subscribe", EventKey="qrscene_card-9", CreateTime=next(sent_at)))
    ).status_code == 200
    assert await eventually(lambda: settled(3), attempts=900) == ["sent", "sent", "suppressed"], (
        statuses(),
        opted_out(),
    )
    assert opted_out() is not None and opted_out()[0] is True
