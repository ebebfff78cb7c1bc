"""WeCom add_msg_template: an attempt whose answer was lost is looked for in
``get_groupmsg_list_v2`` (content, window) and confirmed by its recipients
before any second task is created."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from engine.channels.config import WeComConfig
from engine.channels.wecom import WeComClient, WeComContactProvider, WeComGroupProvider
from engine.reconcile import send_once

from .vendors import WECOM_CORP_ID, WECOM_SECRET, Canned, VendorState

ADD = "/wecom/cgi-bin/externalcontact/add_msg_template"
LIST = "/wecom/cgi-bin/externalcontact/get_groupmsg_list_v2"


def config(base_url: str, **kw: object) -> WeComConfig:
    raw = {
        "base_url": f"{base_url}/wecom",
        "corp_id": WECOM_CORP_ID,
        "corp_secret": WECOM_SECRET,
        "timeout_s": 0.3,
        "reconcile_settle_s": 0,
        **kw,
    }
    return WeComConfig.model_validate(raw)


def client_for(cfg: WeComConfig) -> WeComClient:
    assert cfg.corp_id and cfg.corp_secret
    return WeComClient(cfg.base_url, cfg.corp_id, cfg.corp_secret.get_secret_value(), timeout_s=cfg.timeout_s)


def contact(base_url: str, **kw: object) -> WeComContactProvider:
    cfg = config(base_url, **kw)
    return WeComContactProvider(cfg, client_for(cfg))


def group(base_url: str, **kw: object) -> WeComGroupProvider:
    cfg = config(base_url, **kw)
    return WeComGroupProvider(cfg, client_for(cfg))


async def test_crash_between_request_and_answer_finds_the_task(
    vendor: VendorState, base_url: str, make_message
) -> None:
    vendor.wecom_contacts["wm-1"] = ["zhangsan"]
    vendor.script(ADD, Canned(process=True, delay_s=1.5))
    p = contact(base_url, default_sender="zhangsan")
    msg = make_message("wecom", "wm-1", data={"attachments": [{"msgtype": "link", "link": {"url": "https://x"}}]})
    started = datetime.now(UTC)

    first = await send_once(p, msg, earlier_attempt_at=None)
    assert first.status == "failed" and first.retryable and "timed out" in (first.error or "")
    (msgid,) = vendor.wecom_tasks  # WeCom made the task; the client never heard its msgid

    retry = await send_once(p, msg, earlier_attempt_at=started)
    assert retry.status == "pending" and retry.provider_message_id == msgid
    assert len(vendor.wecom_tasks) == 1 and len(vendor.calls(ADD)) == 1
    listed = vendor.calls(LIST)[0].json()
    assert listed["chat_type"] == "single" and listed["filter_type"] == 0 and listed["limit"] == 100
    assert listed["start_time"] <= int(started.timestamp()) <= listed["end_time"]

    vendor.wecom_confirm(msgid, "zhangsan")
    assert (await p.poll_result(msgid)).status == "sent"


async def test_found_task_already_confirmed_is_sent(vendor: VendorState, base_url: str, make_message) -> None:
    vendor.wecom_contacts["wm-1"] = ["zhangsan"]
    vendor.script(ADD, Canned(process=True, delay_s=1.5))
    p, msg = contact(base_url), make_message("wecom", "wm-1")
    started = datetime.now(UTC)
    await send_once(p, msg, earlier_attempt_at=None)
    (msgid,) = vendor.wecom_tasks
    vendor.wecom_confirm(msgid, "zhangsan")
    found = await p.reconcile(msg, started)
    assert found is not None and found.status == "sent" and found.provider_message_id == msgid


async def test_lost_request_is_not_found_and_sent_once(vendor: VendorState, base_url: str, make_message) -> None:
    vendor.wecom_contacts["wm-1"] = ["zhangsan"]
    vendor.script(ADD, Canned(200, {"errcode": 0}, delay_s=1.5))  # never processed
    p, msg = contact(base_url), make_message("wecom", "wm-1")
    started = datetime.now(UTC)
    assert (await send_once(p, msg, earlier_attempt_at=None)).status == "failed"
    assert vendor.wecom_tasks == {}

    retry = await send_once(p, msg, earlier_attempt_at=started)
    assert retry.status == "pending" and len(vendor.wecom_tasks) == 1


async def test_failing_query_is_ambiguous_not_unsent(vendor: VendorState, base_url: str, make_message) -> None:
    vendor.wecom_contacts["wm-1"] = ["zhangsan"]
    vendor.script(ADD, Canned(process=True, delay_s=1.5))
    vendor.script(LIST, Canned(200, {"errcode": -1, "errmsg": "system busy"}))
    p, msg = contact(base_url), make_message("wecom", "wm-1")
    started = datetime.now(UTC)
    await send_once(p, msg, earlier_attempt_at=None)

    retry = await send_once(p, msg, earlier_attempt_at=started)
    assert retry.status == "failed" and retry.retryable and "could not reconcile" in (retry.error or "")
    assert len(vendor.calls(ADD)) == 1 and len(vendor.wecom_tasks) == 1
    later = await send_once(p, msg, earlier_attempt_at=started)
    assert later.status == "pending" and len(vendor.wecom_tasks) == 1


async def test_no_record_is_not_believed_before_the_settle_time(
    vendor: VendorState, base_url: str, make_message
) -> None:
    vendor.wecom_contacts["wm-1"] = ["zhangsan"]
    p, msg = contact(base_url, reconcile_settle_s=120), make_message("wecom", "wm-1")
    now = datetime.now(UTC)
    young = await send_once(p, msg, earlier_attempt_at=now - timedelta(seconds=5))
    assert young.status == "failed" and young.retryable and vendor.calls(ADD) == []
    old = await send_once(p, msg, earlier_attempt_at=now - timedelta(seconds=300))
    assert old.status == "pending" and len(vendor.wecom_tasks) == 1


async def test_other_tasks_are_not_taken_for_ours(vendor: VendorState, base_url: str, make_message) -> None:
    for ext in ("wm-1", "wm-2"):
        vendor.wecom_contacts[ext] = ["zhangsan"]
    p = contact(base_url)
    mine = make_message("wecom", "wm-1", body="您的专属券已到账")
    # same text to another contact; other text to the same contact; an attachment our message lacks
    await p.send(make_message("wecom", "wm-2", body=mine.body))
    await p.send(make_message("wecom", "wm-1", body="别的内容"))
    await p.send(make_message("wecom", "wm-1", body=mine.body, data={"attachments": [{"msgtype": "image"}]}))
    # and our very text to our contact, but long before the attempt
    old = await p.send(make_message("wecom", "wm-1", body=mine.body))
    assert old.provider_message_id
    vendor.wecom_tasks[old.provider_message_id].create_time -= 3 * 3600
    assert len(vendor.wecom_tasks) == 4

    assert await p.reconcile(mine, datetime.now(UTC) - timedelta(minutes=1)) is None
    assert len(vendor.calls(LIST)) == 3  # one item a page: the cursor was followed


async def test_same_text_to_same_contact_is_indistinguishable(vendor: VendorState, base_url: str, make_message) -> None:
    # The documented gap: another delivery's identical task is taken for ours
    # (one message where two were due; never two where one was).
    vendor.wecom_contacts["wm-1"] = ["zhangsan"]
    p = contact(base_url)
    other = await p.send(make_message("wecom", "wm-1", body="同一句话"))
    found = await p.reconcile(make_message("wecom", "wm-1", body="同一句话"), datetime.now(UTC))
    assert found is not None and found.provider_message_id == other.provider_message_id


async def test_group_crash_is_found_by_chat_and_owner(vendor: VendorState, base_url: str, make_message) -> None:
    vendor.wecom_groups["wr-1"] = "owner-1"
    vendor.wecom_groups["wr-2"] = "owner-2"
    await group(base_url, default_sender="owner-2").send(make_message("wecom_group", "wr-2", body="群公告"))
    vendor.script(ADD, Canned(process=True, delay_s=1.5))
    p, msg = group(base_url, default_sender="owner-1"), make_message("wecom_group", "wr-1", body="群公告")
    started = datetime.now(UTC)
    assert (await send_once(p, msg, earlier_attempt_at=None)).status == "failed"
    ours = [m for m, t in vendor.wecom_tasks.items() if t.recipients == ["wr-1"]]

    retry = await send_once(p, msg, earlier_attempt_at=started)
    assert retry.status == "pending" and [retry.provider_message_id] == ours
    assert len(vendor.calls(ADD)) == 2 and len(vendor.wecom_tasks) == 2
    assert vendor.calls(LIST)[0].json()["chat_type"] == "group"
