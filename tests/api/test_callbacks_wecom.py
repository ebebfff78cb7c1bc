"""WeCom customer-contact callbacks end to end: payloads signed and
encrypted by the test with known keys (``callback_support``), posted over
real HTTP to the API on uvicorn, which stores, answers ``success`` and
makes journey events a real Temporal worker runs journeys on."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import httpx
import pytest
import pytest_asyncio
from sqlalchemy import func, select

from api.app import create_app
from api.settings import ApiSettings
from engine.callbacks import receipts
from engine.callbacks.processing import CallbackProcessor
from engine.channels.config import ChannelsConfig, WeComConfig
from engine.dispatch import Dispatcher
from engine.journey_cache import JourneyCache
from engine.store import Store
from engine.store.models import CallbackReceipt, Delivery, Event, Run
from runtime.worker import build_activities, build_worker
from tests.api.callback_support import WECOM_AES_KEY, WECOM_CORP_ID, WECOM_TOKEN, WeComSender, wecom_event, xml
from tests.api.conftest import KEYS, LiveServer, auth, eventually, unique


@dataclass
class CallbackStack:
    url: str
    http: httpx.AsyncClient
    store: Store
    settings: ApiSettings
    client: Any
    sender: WeComSender


def callback_settings(tmp: Any, task_queue: str, temporal_address: str, **channels: Any) -> ApiSettings:
    return ApiSettings(
        database_url=f"sqlite:///{tmp / 'journeys.db'}",
        task_queue=task_queue,
        temporal_address=temporal_address,
        api_keys=KEYS,
        channels=ChannelsConfig(mode="outbox", **channels),
        cap_per_day=None,
        cap_per_week=None,
        callback_retry_seconds=0,  # the tests sweep themselves
    )


@pytest_asyncio.fixture(scope="module")
async def wecom(dev_env: Any, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[CallbackStack]:
    tmp = tmp_path_factory.mktemp("wecom-callbacks")
    address = dev_env.client.service_client.config.target_host
    wecom_cfg = WeComConfig(corp_id=WECOM_CORP_ID, callback_token=WECOM_TOKEN, callback_aes_key=WECOM_AES_KEY)
    settings = callback_settings(tmp, f"cb-{uuid.uuid4().hex[:8]}", address, wecom=wecom_cfg)
    store = Store(settings.database_url)
    store.migrate()
    activities = build_activities(settings, store)
    app = create_app(settings, store=store)
    async with build_worker(dev_env.client, activities.all(), settings.task_queue):
        with LiveServer(app) as url:
            async with httpx.AsyncClient(timeout=30) as http:
                yield CallbackStack(url, http, store, settings, dev_env.client, WeComSender(http, url))
    store.dispose()


def _events(stack: CallbackStack, name: str, external: str) -> list[Event]:
    with stack.store.read() as s:
        rows = s.scalars(select(Event).where(Event.name == name).order_by(Event.received_at)).all()
        uid = _user(stack, external)
        return [r for r in rows if r.user_id == uid]


def _user(stack: CallbackStack, external: str) -> str | None:
    from engine import queries

    return queries.lookup(stack.store, "wecom_external_userid", external)


def _receipt_count(stack: CallbackStack) -> int:
    with stack.store.read() as s:
        return int(s.scalar(select(func.count()).select_from(CallbackReceipt)) or 0)


async def _deploy(stack: CallbackStack, source: str, jid: str) -> None:
    r = await stack.http.post(f"{stack.url}/v1/journeys", json={"source": source, "id": jid}, headers=auth())
    assert r.status_code == 201, r.text


async def test_url_verification_answers_the_decrypted_echostr(wecom: CallbackStack) -> None:
    crypt = wecom.sender.crypt()
    echostr = crypt.encrypt(b"7581230987123")
    q = {"timestamp": "1700000001", "nonce": "99", "echostr": echostr}
    r = await wecom.http.get(
        f"{wecom.url}/v1/callbacks/wecom", params=q | {"msg_signature": crypt.signature("1700000001", "99", echostr)}
    )
    assert r.status_code == 200 and r.text == "7581230987123"
    bad = await wecom.http.get(f"{wecom.url}/v1/callbacks/wecom", params=q | {"msg_signature": "0" * 40})
    assert bad.status_code == 403 and bad.json()["type"].endswith("callback-bad-signature")
    missing = await wecom.http.get(f"{wecom.url}/v1/callbacks/wecom", params={"echostr": echostr})
    assert missing.status_code == 400 and "msg_signature" in missing.json()["detail"]


async def test_a_bad_signature_wrong_key_or_corp_is_refused_and_nothing_is_stored(wecom: CallbackStack) -> None:
    before = _receipt_count(wecom)
    message = wecom_event("add_external_contact", UserID="zhangsan", ExternalUserID=unique("wmforged"))
    query, body = wecom.sender.envelope(message)
    forged = await wecom.http.post(
        f"{wecom.url}/v1/callbacks/wecom", params=query | {"msg_signature": "f" * 40}, content=body
    )
    assert forged.status_code == 403, forged.text
    assert "msg_signature" in forged.json()["detail"]
    # signed with the right token but encrypted for another corp under our key
    other_corp = WeComSender(wecom.http, wecom.url, corp_id="ww-someone-else")
    r = await other_corp.post(message)
    assert r.status_code == 403 and r.json()["type"].endswith("callback-bad-receiver")
    # signed with another token
    r = await WeComSender(wecom.http, wecom.url, token="not-ours").post(message)
    assert r.status_code == 403
    # a body that is no XML, or has no <Encrypt>
    r = await wecom.http.post(f"{wecom.url}/v1/callbacks/wecom", params=query, content=b"{not xml")
    assert r.status_code == 400 and r.json()["type"].endswith("callback-malformed")
    r = await wecom.http.post(f"{wecom.url}/v1/callbacks/wecom", params=query, content=b"<xml><A>1</A></xml>")
    assert r.status_code == 400 and "Encrypt" in r.json()["detail"]
    # an entity bomb is refused by the parser, not expanded
    bomb = b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;">]><xml><Encrypt>&b;</Encrypt></xml>'
    r = await wecom.http.post(f"{wecom.url}/v1/callbacks/wecom", params=query, content=bomb)
    assert r.status_code == 400
    # past the size bound: refused before it is parsed
    huge = b"<xml><Encrypt>" + b"A" * (wecom.settings.callback_max_body_bytes + 1) + b"</Encrypt></xml>"
    r = await wecom.http.post(f"{wecom.url}/v1/callbacks/wecom", params=query, content=huge)
    assert r.status_code == 413 and r.json()["limit_bytes"] == wecom.settings.callback_max_body_bytes
    assert _receipt_count(wecom) == before


async def test_add_external_contact_with_a_state_starts_the_journey_with_it(wecom: CallbackStack) -> None:
    jid = unique("wecom-add")
    mark = jid.replace("-", "_")
    source = (
        f'journey "{jid}"\n  entry event add_external_contact where state == "poster-A"\n  reentry always\n\n'
        f'  if event.staff == "zhangsan" and event.placement == "poster-A":\n    tag add staffed_{mark}\n'
        f"  tag add entered_{mark}\n"
    )
    await _deploy(wecom, source, jid)
    external, other = unique("wmA"), unique("wmB")
    r = await wecom.sender.post(
        wecom_event(
            "add_external_contact", UserID="zhangsan", ExternalUserID=external, State="poster-A", WelcomeCode="wc1"
        )
    )
    assert r.status_code == 200 and r.text == "success"
    # another placement: stored as an event, enters nothing
    r = await wecom.sender.post(
        wecom_event("add_external_contact", UserID="zhangsan", ExternalUserID=other, State="poster-B")
    )
    assert r.status_code == 200

    async def tagged() -> list[str] | None:
        uid = _user(wecom, external)
        if uid is None:
            return None
        profile = (await wecom.http.get(f"{wecom.url}/v1/users/{uid}", headers=auth())).json()
        tags = [t["tag"] for t in profile["tags"]]
        return tags if f"entered_{mark}" in tags else None

    tags = await eventually(tagged)
    assert tags and f"staffed_{mark}" in tags
    (event,) = _events(wecom, "add_external_contact", external)
    assert event.properties == {
        "source": "wecom",
        "corp_id": WECOM_CORP_ID,
        "staff": "zhangsan",
        "state": "poster-A",
        "placement": "poster-A",
    }
    with wecom.store.read() as s:
        runs = s.scalars(select(Run).where(Run.journey_id == jid)).all()
        assert [r.user_id for r in runs] == [_user(wecom, external)]
        assert runs[0].trigger_event and runs[0].trigger_event["properties"]["state"] == "poster-A"
    assert await eventually(lambda: _async(_events(wecom, "add_external_contact", other)))


async def _async(value: Any) -> Any:
    return value


async def test_a_replayed_callback_is_one_event_and_one_run(wecom: CallbackStack) -> None:
    jid = unique("wecom-replay")
    source = (
        f'journey "{jid}"\n  entry event del_follow_user\n  reentry always\n\n  tag add left_{jid.replace("-", "_")}\n'
    )
    await _deploy(wecom, source, jid)
    external = unique("wmR")
    message = wecom_event("del_follow_user", UserID="lisi", ExternalUserID=external)
    query, body = wecom.sender.envelope(message)
    first = await wecom.http.post(f"{wecom.url}/v1/callbacks/wecom", params=query, content=body)
    same = await wecom.http.post(f"{wecom.url}/v1/callbacks/wecom", params=query, content=body)  # byte for byte
    retry = await wecom.sender.post(message)  # WeCom's retry: same message, fresh nonce and ciphertext
    assert [first.status_code, same.status_code, retry.status_code] == [200, 200, 200]

    async def ended() -> list[Run] | None:
        with wecom.store.read() as s:
            runs = s.scalars(select(Run).where(Run.journey_id == jid, Run.ended_at.is_not(None))).all()
        return list(runs) or None

    assert await eventually(ended)
    assert len(_events(wecom, "del_follow_user", external)) == 1
    with wecom.store.read() as s:
        assert len(s.scalars(select(Run).where(Run.journey_id == jid)).all()) == 1
        rid = receipts.receipt_id("wecom", WECOM_CORP_ID, _parsed(message))
        row = s.get(CallbackReceipt, rid)
        assert row is not None and row.processed_at is not None
        # the one relation the store knows of is gone: out of wecom, once
        uid = _user(wecom, external)
        assert row.outcome == {"events": [rid], "consent": [{"user_id": uid, "changed": "opted_out"}]}


async def test_a_customer_leaves_wecom_only_when_no_staff_member_is_left(wecom: CallbackStack) -> None:
    """A customer who removes one staff member may still be a contact of
    another: a 1:1 send still goes. Once every staff member the store heard
    of is removed (by the customer or by the staff member), ``wecom`` is out
    and the send is suppressed (a best-of would take the next channel);
    adding one again lets it through."""
    jid, external = unique("wecom-staff"), unique("wmS")
    source = f'journey "{jid}"\n  entry event edit_external_contact\n  reentry always\n\n  send wecom "hello"\n'
    made = await wecom.http.put(f"{wecom.url}/v1/templates/hello", json={"body": "hello"}, headers=auth())
    assert made.status_code in (200, 201), made.text
    await _deploy(wecom, source, jid)

    def statuses() -> list[str]:
        with wecom.store.read() as s:
            rows = s.scalars(select(Delivery).where(Delivery.journey_id == jid).order_by(Delivery.at)).all()
            return [f"{d.status} ({d.reason})" if d.status == "failed" else d.status for d in rows]

    async def post(change: str, staff: str) -> None:
        r = await wecom.sender.post(wecom_event(change, UserID=staff, ExternalUserID=external))
        assert r.status_code == 200 and r.text == "success", r.text

    async def send_once() -> str:
        before = len(statuses())
        await post("edit_external_contact", "zhangsan")
        found = await eventually(lambda: _async(statuses()[before:] or None), attempts=900)
        assert found and len(found) == 1, found
        return "went" if found[0] in ("sent", "pending") else found[0]

    def consent() -> tuple[bool, str | None] | None:
        from engine import queries

        profile = queries.user_profile(wecom.store, _user(wecom, external) or "")
        row = next((c for c in profile.consents if c.channel == "wecom"), None) if profile else None
        return (row.opted_out, row.source) if row else None

    await post("add_external_contact", "zhangsan")
    await post("add_half_external_contact", "lisi")
    assert await eventually(lambda: _async(len(_events(wecom, "add_half_external_contact", external)) == 1 or None))
    assert await send_once() == "went"
    await post("del_follow_user", "zhangsan")  # the customer removed one of the two
    assert await send_once() == "went" and consent() is None
    await post("del_external_contact", "lisi")  # the other removed the customer
    assert await eventually(lambda: _async(consent() == (True, "vendor:unfollowed") or None))
    assert await send_once() == "suppressed", (statuses(), consent())
    await post("add_external_contact", "lisi")
    assert await eventually(lambda: _async(consent() == (False, "vendor:unfollowed") or None))
    assert await send_once() == "went"
    assert statuses()[2] == "suppressed"


def _parsed(message: dict[str, Any]) -> dict[str, Any]:
    from engine.callbacks.messages import parse

    return parse(xml(message))


async def test_an_unknown_or_customerless_event_is_stored_and_ignored(wecom: CallbackStack) -> None:
    tag_change = {
        "ToUserName": WECOM_CORP_ID,
        "FromUserName": "sys",
        "CreateTime": 1700000999,
        "MsgType": "event",
        "Event": "change_external_tag",
        "Id": "etXXXXXXXXXX",
        "TagType": "tag",
        "ChangeType": "create",
    }
    unknown = {"ToUserName": WECOM_CORP_ID, "CreateTime": 1700001000, "MsgType": "event", "Event": "something_new"}
    events_before = _event_count(wecom)
    for message in (tag_change, unknown):
        r = await wecom.sender.post(message)
        assert r.status_code == 200 and r.text == "success"
    with wecom.store.read() as s:
        for message, why in ((tag_change, "corp tag definition"), (unknown, "not mapped")):
            row = s.get(CallbackReceipt, receipts.receipt_id("wecom", WECOM_CORP_ID, _parsed(message)))
            assert row is not None and row.processed_at is not None
            assert row.outcome is not None and row.outcome["events"] == [] and why in row.outcome["ignored"]
            assert row.message["Event"] == message["Event"]
    assert _event_count(wecom) == events_before


def _event_count(stack: CallbackStack) -> int:
    with stack.store.read() as s:
        return int(s.scalar(select(func.count()).select_from(Event)) or 0)


async def test_group_member_changes_land_on_each_external_member(wecom: CallbackStack) -> None:
    chat, a, b = unique("wrchat"), unique("wmG"), unique("woG")
    joined = {
        "ToUserName": WECOM_CORP_ID,
        "CreateTime": 1700002000,
        "MsgType": "event",
        "Event": "change_external_chat",
        "ChatId": chat,
        "ChangeType": "update",
        "UpdateDetail": "add_member",
        "JoinScene": 3,
        "MemChangeCnt": 3,
        "MemChangeList": [a, "staff-wangwu", b],
    }
    left = joined | {"CreateTime": 1700002100, "UpdateDetail": "del_member", "QuitScene": 0, "MemChangeList": [a]}
    left.pop("JoinScene")
    for message in (joined, left):
        assert (await wecom.sender.post(message)).status_code == 200

    async def both() -> bool:
        return bool(_events(wecom, "joined_group", a) and _events(wecom, "joined_group", b))

    assert await eventually(both)
    (ev,) = _events(wecom, "joined_group", a)
    assert ev.properties == {
        "source": "wecom",
        "corp_id": WECOM_CORP_ID,
        "chat_id": chat,
        "channel": "wecom_group",
        "join_scene": "group_qr",
    }
    assert _user(wecom, "staff-wangwu") is None  # staff are not customers
    assert await eventually(lambda: _async(_events(wecom, "left_group", a)))
    assert _events(wecom, "left_group", a)[0].properties["quit_scene"] == "left"


async def test_a_receipt_left_unprocessed_by_a_crash_is_processed_by_the_sweep(wecom: CallbackStack) -> None:
    """The process died after the receipt was stored (and "success"
    answered) but before its event: the sweep makes the event, once."""
    external = unique("wmCrash")
    message = _parsed(wecom_event("add_external_contact", UserID="zhaoliu", ExternalUserID=external, State="card-1"))
    receipt, new = receipts.store(
        wecom.store, vendor="wecom", receiver=WECOM_CORP_ID, kind="event/change_external_contact", message=message
    )
    assert new and not receipt.processed
    processor = CallbackProcessor(
        wecom.store,
        wecom.settings,
        Dispatcher(wecom.store, wecom.settings, JourneyCache(wecom.store)),
        lambda: wecom.client,
    )
    assert await processor.sweep(older_than=timedelta(0)) >= 1
    assert await processor.sweep(older_than=timedelta(0)) == 0  # nothing left
    (event,) = _events(wecom, "add_external_contact", external)
    assert event.id == receipt.id and event.properties["placement"] == "card-1"
    # the vendor's retry arrives after all: still one event
    assert (await wecom.sender.post(_raw(message))).status_code == 200
    assert await eventually(lambda: _async(_all_processed(wecom)))
    assert len(_events(wecom, "add_external_contact", external)) == 1


def _all_processed(stack: CallbackStack) -> bool:
    with stack.store.read() as s:
        waiting = s.scalar(
            select(func.count()).select_from(CallbackReceipt).where(CallbackReceipt.processed_at.is_(None))
        )
    return waiting == 0


def _raw(parsed: dict[str, Any]) -> dict[str, Any]:
    return {k: (int(v) if k == "CreateTime" else v) for k, v in parsed.items()}


async def test_not_configured_is_a_404_with_the_settings_to_set(dev_env: Any, tmp_path: Any) -> None:
    settings = callback_settings(tmp_path, "unused", "")
    store = Store(settings.database_url)
    store.migrate()
    app = create_app(settings, store=store)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://api") as http:
        r = await http.post("/v1/callbacks/wecom", params={"msg_signature": "x", "timestamp": "1", "nonce": "2"})
        assert r.status_code == 404 and "callback_token" in r.json()["detail"]
    store.dispose()
