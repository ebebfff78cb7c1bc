"""Channel codes end to end: created at local stand-ins of WeCom
(``add_contact_way``) and WeChat (``qrcode/create``) through the real
clients, QR images served (WeCom's picture as fetched, the Official
Account's drawn here), then a scripted set of scans and adds — WeCom and
Official Account callbacks encrypted by the test, over real HTTP — tagging
people with source ``channel_code``, starting a welcome journey, and adding
up to each code's numbers; the console page lists them."""

from __future__ import annotations

import io
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
import pytest_asyncio
import segno
from sqlalchemy import select

from api.app import create_app
from api.settings import ApiSettings
from contracts.runs import workflow_id
from engine import queries
from engine.channels.config import ChannelsConfig, OfficialAccountConfig, WeComConfig
from engine.events import ingest_event
from engine.store import Store
from engine.store.models import ChannelCode, Event, Run
from runtime.worker import build_activities, build_worker
from tests.api.callback_support import (
    OA_AES_KEY,
    OA_TOKEN,
    WECOM_AES_KEY,
    WECOM_TOKEN,
    OfficialAccountSender,
    WeComSender,
)
from tests.api.conftest import ADMIN, KEYS, VIEWER, LiveServer, auth, eventually, unique
from tests.api.vendor_codes import APP_ID, APP_SECRET, CORP_ID, CORP_SECRET, CodesVendor, CodesVendorServer


@dataclass
class CodesStack:
    url: str
    http: httpx.AsyncClient
    store: Store
    vendor: CodesVendor
    wecom: WeComSender
    oa: OfficialAccountSender
    client: Any


@pytest_asyncio.fixture(scope="module")
async def codes(dev_env: Any, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[CodesStack]:
    tmp = tmp_path_factory.mktemp("codes")
    with CodesVendorServer() as vendors:
        channels = ChannelsConfig(
            mode="outbox",
            wecom=WeComConfig(
                base_url=f"{vendors.url}/wecom",
                corp_id=CORP_ID,
                corp_secret=CORP_SECRET,
                callback_token=WECOM_TOKEN,
                callback_aes_key=WECOM_AES_KEY,
            ),
            official_account=OfficialAccountConfig(
                base_url=f"{vendors.url}/wechat",
                app_id=APP_ID,
                app_secret=APP_SECRET,
                callback_token=OA_TOKEN,
                callback_aes_key=OA_AES_KEY,
            ),
        )
        settings = ApiSettings(
            database_url=f"sqlite:///{tmp / 'journeys.db'}",
            task_queue=f"codes-{uuid.uuid4().hex[:8]}",
            temporal_address=dev_env.client.service_client.config.target_host,
            api_keys=KEYS,
            channels=channels,
            cap_per_day=None,
            cap_per_week=None,
            callback_retry_seconds=0,
        )
        store = Store(settings.database_url)
        store.migrate()
        activities = build_activities(settings, store)
        app = create_app(settings, store=store)
        async with build_worker(dev_env.client, activities.all(), settings.task_queue):
            with LiveServer(app) as url:
                async with httpx.AsyncClient(base_url=url, timeout=30) as http:
                    yield CodesStack(
                        url,
                        http,
                        store,
                        vendors.vendor,
                        WeComSender(http, url, corp_id=CORP_ID),
                        OfficialAccountSender(http, url, app_id=APP_ID),
                        dev_env.client,
                    )
        store.dispose()


async def _create(stack: CodesStack, **body: Any) -> httpx.Response:
    return await stack.http.post("/v1/channel-codes", json=body, headers=auth())


def _wecom_add(external: str, state: str, staff: str = "zhangsan") -> dict[str, Any]:
    return {
        "ToUserName": CORP_ID,
        "FromUserName": "sys",
        "CreateTime": int(datetime.now(UTC).timestamp()) - 1 - uuid.uuid4().int % 1000,
        "MsgType": "event",
        "Event": "change_external_contact",
        "ChangeType": "add_external_contact",
        "UserID": staff,
        "ExternalUserID": external,
        "State": state,
    }


def _oa(openid: str, event: str, key: str) -> dict[str, Any]:
    return {
        "ToUserName": "gh_codes",
        "FromUserName": openid,
        "CreateTime": int(datetime.now(UTC).timestamp()) - 1 - uuid.uuid4().int % 1000,
        "MsgType": "event",
        "Event": event,
        "EventKey": key,
        "Ticket": "t",
    }


async def test_a_wecom_code_is_a_contact_way_and_its_picture_is_served(codes: CodesStack) -> None:
    placement = unique("poster")[:30]
    r = await _create(
        codes, vendor="wecom", placement=placement, name="A座大堂", tags=["src_poster"], staff=["zhangsan"]
    )
    assert r.status_code == 201, r.text
    code = r.json()
    (call,) = [
        c for c in codes.vendor.called("/wecom/cgi-bin/externalcontact/add_contact_way") if c.body["state"] == placement
    ]
    assert call.body == {
        "type": 1,
        "scene": 2,
        "remark": "A座大堂",
        "skip_verify": True,
        "state": placement,
        "user": ["zhangsan"],
    }
    assert code["status"] == "active" and code["vendor_ref"] in codes.vendor.contact_ways
    png = await codes.http.get(code["qr_png"], headers=auth(VIEWER))
    assert png.status_code == 200 and png.headers["content-type"] == "image/png"
    assert png.content == CodesVendor.picture(code["vendor_ref"])
    # two staff: a multi-person code
    r = await _create(codes, vendor="wecom", placement=unique("duo")[:30], staff=["zhangsan", "lisi"])
    assert (
        r.status_code == 201
        and codes.vendor.called("/wecom/cgi-bin/externalcontact/add_contact_way")[-1].body["type"] == 2
    )


async def test_an_official_account_code_is_a_permanent_scene_qr_drawn_here(codes: CodesStack) -> None:
    placement = unique("card-" + "x" * 40)  # longer than WeCom allows, fine for a scene_str
    r = await _create(codes, vendor="official_account", placement=placement, tags=["src_card"])
    assert r.status_code == 201, r.text
    code = r.json()
    call = codes.vendor.called("/wechat/cgi-bin/qrcode/create")[-1]
    assert call.body == {"action_name": "QR_LIMIT_STR_SCENE", "action_info": {"scene": {"scene_str": placement}}}
    assert code["qr_url"] == f"http://weixin.qq.com/q/{code['vendor_ref']}"
    before = len(codes.vendor.calls)
    png = await codes.http.get(code["qr_png"], params={"scale": 3}, headers=auth(VIEWER))
    assert png.status_code == 200 and png.content.startswith(b"\x89PNG")
    expected = io.BytesIO()
    segno.make_qr(code["qr_url"], error="m").save(expected, kind="png", scale=3, border=4)
    assert png.content == expected.getvalue()
    assert len(codes.vendor.calls) == before  # drawn locally: the vendor was not asked
    assert (await codes.http.get(code["qr_png"], params={"scale": 99}, headers=auth())).status_code == 422


async def test_bounds_conflicts_and_vendor_refusals_are_4xx(codes: CodesStack) -> None:
    too_long = "p" * 31
    r = await _create(codes, vendor="wecom", placement=too_long, staff=["zhangsan"])
    assert r.status_code == 422 and "30" in r.json()["detail"]
    r = await _create(codes, vendor="wecom", placement=unique("nostaff"))
    assert r.status_code == 422 and "staff" in r.json()["detail"]
    r = await _create(codes, vendor="official_account", placement="has space")
    assert r.status_code == 422
    r = await _create(codes, vendor="official_account", placement=unique("tags"), tags=["a b"])
    assert r.status_code == 422
    placement = unique("twice")
    assert (await _create(codes, vendor="official_account", placement=placement)).status_code == 201
    r = await _create(codes, vendor="official_account", placement=placement)
    assert r.status_code == 409 and r.json()["type"].endswith("channel-code-taken")
    # WeCom refuses an unknown staff member: 422 with its errcode, the placement stays free
    refused = unique("refused")[:30]
    r = await _create(codes, vendor="wecom", placement=refused, staff=["nobody"])
    assert r.status_code == 422 and "60111" in r.json()["detail"]
    assert (await _create(codes, vendor="wecom", placement=refused, staff=["lisi"])).status_code == 201
    # a welcome journey must enter by API
    jid = unique("evt-journey")
    src = f'journey "{jid}"\n  entry event something_else\n\n  tag add x\n'
    assert (await codes.http.post("/v1/journeys", json={"source": src, "id": jid}, headers=auth())).status_code == 201
    r = await _create(codes, vendor="official_account", placement=unique("w"), welcome_journey=jid)
    assert r.status_code == 409 and "entry api" in r.json()["detail"]
    r = await _create(codes, vendor="official_account", placement=unique("w"), welcome_journey="no-such-journey")
    assert r.status_code == 409
    # a viewer reads but does not create
    r = await codes.http.post(
        "/v1/channel-codes", json={"vendor": "official_account", "placement": unique("v")}, headers=auth(VIEWER)
    )
    assert r.status_code == 403
    assert (await codes.http.get("/v1/channel-codes/nope", headers=auth())).status_code == 404


async def test_scans_through_codes_tag_welcome_and_count(codes: CodesStack) -> None:
    group = unique("lobby-ab")
    mark = uuid.uuid4().hex[:8]
    welcome = unique("welcome")
    src = f'journey "{welcome}"\n  entry api\n  reentry always\n\n  if event.placement != "":\n    tag add welcomed_{mark}\n'
    assert (
        await codes.http.post("/v1/journeys", json={"source": src, "id": welcome}, headers=auth())
    ).status_code == 201
    poster, card = unique("pA")[:30], unique("cB")
    a = (
        await _create(
            codes,
            vendor="wecom",
            placement=poster,
            name="Poster A",
            tags=["src_poster", f"bldg_a_{mark}"],
            group=group,
            staff=["zhangsan", "lisi"],
        )
    ).json()
    b = (
        await _create(
            codes,
            vendor="official_account",
            placement=card,
            tags=[f"src_card_{mark}"],
            group=group,
            welcome_journey=welcome,
        )
    ).json()
    # a journey entered on the add sees the code's tags already
    jid = unique("poster-entry")
    src = (
        f'journey "{jid}"\n  entry event add_external_contact where placement == "{poster}"\n  reentry always\n\n'
        f"  if tag bldg_a_{mark}:\n    tag add saw_code_tag_{mark}\n"
    )
    assert (await codes.http.post("/v1/journeys", json={"source": src, "id": jid}, headers=auth())).status_code == 201

    w1, w2 = unique("wmP1"), unique("wmP2")
    o1, o2 = unique("oC1"), unique("oC2")

    async def ended(journey: str, n: int) -> bool:
        async def check() -> list[Run] | None:
            with codes.store.read() as s:
                runs = s.scalars(select(Run).where(Run.journey_id == journey, Run.ended_at.is_not(None))).all()
            return list(runs) if len(runs) >= n else None

        runs = await eventually(check)
        for run in runs or []:  # closed on Temporal too (the store says so a moment before)
            await codes.client.get_workflow_handle(workflow_id(run.journey_id, run.user_id)).result()
        return bool(runs)

    async def post(response: Any) -> None:
        r = await response
        assert r.status_code == 200 and r.text == "success", r.text

    # one run per journey and person at a time: each next event waits for the
    # run the last one started to end, so every event is its own entry
    first = _wecom_add(w1, poster)
    await post(codes.wecom.post(first))
    await post(codes.wecom.post(first))  # WeCom's retry: once
    assert await ended(jid, 1)
    await post(codes.wecom.post(_wecom_add(w1, poster, staff="lisi")))  # the same person adds a second staff member
    assert await ended(jid, 2)
    await post(codes.wecom.post(_wecom_add(w2, poster)))
    assert await ended(jid, 3)
    await post(codes.oa.post(_oa(o1, "subscribe", f"qrscene_{card}")))
    assert await ended(welcome, 1)
    await post(codes.oa.post(_oa(o1, "SCAN", card)))  # already follows: a scan, not a new contact
    assert await ended(welcome, 2)
    await post(codes.oa.post(_oa(o2, "subscribe", f"qrscene_{card}")))
    assert await ended(welcome, 3)
    await post(codes.wecom.post(_wecom_add(unique("wmOther"), "not-a-code")))  # a state no code owns

    # a payment after the scan converts the first poster person
    uid1 = queries.lookup(codes.store, "wecom_external_userid", w1)
    assert uid1 is not None
    ingest_event(
        codes.store,
        event_id=unique("pay"),
        name="order_paid",
        identifiers=[("wecom_external_userid", w1)],
        properties={"amount": 99},
    )

    listing = (await codes.http.get("/v1/channel-codes", params={"group": group}, headers=auth(VIEWER))).json()
    by = {c["placement"]: c["numbers"] for c in listing}
    assert by[poster] == {
        "scans": 3,
        "contacts": 2,
        "new_users": 2,
        "people": 2,
        "conversions": 1,
        "conversion_rate": 0.5,
        "revenue": 99.0,  # the poster's contribution
    }
    assert by[card] == {
        "scans": 3,
        "contacts": 2,
        "new_users": 2,
        "people": 2,
        "conversions": 0,
        "conversion_rate": 0.0,
        "revenue": 0.0,
    }

    profile = (await codes.http.get(f"/v1/users/{uid1}", headers=auth())).json()
    tags = {t["tag"]: t["source"] for t in profile["tags"]}
    assert tags["src_poster"] == "channel_code" and tags[f"bldg_a_{mark}"] == "channel_code"
    assert f"saw_code_tag_{mark}" in tags  # the tags were there when the journey ran
    with codes.store.read() as s:
        adds = s.scalars(select(Event).where(Event.user_id == uid1, Event.name == "add_external_contact")).all()
    assert len(adds) == 2
    assert adds[0].properties["placement"] == poster
    assert adds[0].properties["channel_code"] == a["id"] and adds[0].properties["channel_code_group"] == group

    uid_o1 = queries.lookup(codes.store, "openid", o1)
    profile = (await codes.http.get(f"/v1/users/{uid_o1}", headers=auth())).json()
    tags = {t["tag"]: t["source"] for t in profile["tags"]}
    assert tags[f"src_card_{mark}"] == "channel_code" and f"welcomed_{mark}" in tags
    with codes.store.read() as s:
        welcomed = s.scalars(select(Run).where(Run.journey_id == welcome, Run.user_id == uid_o1)).all()
    assert len(welcomed) == 2  # the follow and the scan, each its own trigger
    assert {r.trigger_event["properties"]["channel_code"] for r in welcomed if r.trigger_event} == {b["id"]}
    stranger = queries.lookup(codes.store, "wecom_external_userid", "not-a-code")
    assert stranger is None  # ids are not placements: the unattributed add landed on its own person

    detail = (await codes.http.get(f"/v1/channel-codes/{a['id']}", params={"days": 7}, headers=auth())).json()
    assert len(detail["days"]) == 7 and detail["timezone"] == "Asia/Shanghai"
    with codes.store.read() as s:
        through_a = s.scalars(
            select(Event).where(
                Event.name == "add_external_contact", Event.properties["channel_code"].as_string() == a["id"]
            )
        ).all()
    shanghai = ZoneInfo("Asia/Shanghai")
    expected: dict[str, set[str]] = {}
    for e in through_a:  # the adds' own times, by local day: distinct people per day
        expected.setdefault(e.occurred_at.astimezone(shanghai).date().isoformat(), set()).add(e.user_id)
    got = {d["day"]: (d["scans"], d["contacts"]) for d in detail["days"] if d["scans"]}
    assert sum(n for n, _ in got.values()) == 3
    assert {day: c for day, (_, c) in got.items()} == {day: len(users) for day, users in expected.items()}
    assert (
        await codes.http.get(f"/v1/channel-codes/{a['id']}", params={"tz": "Mars/Base"}, headers=auth())
    ).status_code == 422

    # the console lists the group's codes with their numbers and images
    codes.http.cookies.set("journeys_key", ADMIN)
    try:
        page = await codes.http.get("/console/channel-codes")
        assert page.status_code == 200
        assert poster in page.text and card in page.text and group in page.text
        assert f"/console/channel-codes/{b['id']}/qr.png" in page.text
        img = await codes.http.get(f"/console/channel-codes/{b['id']}/qr.png")
        assert img.status_code == 200 and img.content.startswith(b"\x89PNG")
    finally:
        codes.http.cookies.clear()
    assert (await codes.http.get("/console/channel-codes", follow_redirects=False)).status_code == 303


async def test_change_and_archive(codes: CodesStack) -> None:
    placement = unique("arch")[:30]
    code = (
        await _create(codes, vendor="wecom", placement=placement, tags=["old"], staff=["wangwu"], group="g1")
    ).json()
    r = await codes.http.patch(
        f"/v1/channel-codes/{code['id']}",
        json={"tags": ["new_tag"], "name": "改名", "clear": ["group"]},
        headers=auth(),
    )
    assert r.status_code == 200, r.text
    assert r.json()["tags"] == ["new_tag"] and r.json()["name"] == "改名" and r.json()["group"] is None
    assert r.json()["placement"] == placement  # printed: never changes
    config_id = code["vendor_ref"]
    r = await codes.http.delete(f"/v1/channel-codes/{code['id']}", headers=auth())
    assert r.status_code == 200 and r.json()["status"] == "archived" and "deleted" in r.json()["note"]
    assert config_id not in codes.vendor.contact_ways
    listed = [c["id"] for c in (await codes.http.get("/v1/channel-codes", headers=auth())).json()]
    assert code["id"] not in listed
    archived = [c["id"] for c in (await codes.http.get("/v1/channel-codes?archived=true", headers=auth())).json()]
    assert code["id"] in archived
    with codes.store.read() as s:
        row = s.get(ChannelCode, code["id"])
        assert row is not None and row.archived_at is not None
