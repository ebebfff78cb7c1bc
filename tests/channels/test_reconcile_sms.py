"""Aliyun SMS: an attempt whose answer was lost is looked up by OutId with
``QuerySendDetails`` before anything is re-sent."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from engine.channels.config import SmsConfig
from engine.channels.sms import AliyunSmsProvider, out_id_for, send_dates
from engine.reconcile import send_once

from .vendors import ALIYUN_KEY_ID, ALIYUN_KEY_SECRET, BEIJING, Canned, SmsRecord, VendorState

SEND = "/aliyun/#SendSms"
QUERY = "/aliyun/#QuerySendDetails"
PHONE = "13800138000"


def provider(base_url: str, **kw: object) -> AliyunSmsProvider:
    cfg = {
        "base_url": f"{base_url}/aliyun",
        "access_key_id": ALIYUN_KEY_ID,
        "access_key_secret": ALIYUN_KEY_SECRET,
        "sign_name": "好店",
        "templates": {"welcome": "SMS_100001"},
        "timeout_s": 0.3,
        "reconcile_settle_s": 0,
        **kw,
    }
    return AliyunSmsProvider(SmsConfig.model_validate(cfg))


def record(out_id: str, at: datetime, n: int = 0) -> SmsRecord:
    return SmsRecord(PHONE, out_id, f"{n}^0", "SMS_100001", "【好店】…", at.astimezone(BEIJING))


async def test_crash_between_request_and_answer_is_found_and_not_resent(
    vendor: VendorState, base_url: str, make_message
) -> None:
    vendor.sms_templates.add("SMS_100001")
    vendor.script(SEND, Canned(process=True, delay_s=1.5))
    p, msg = provider(base_url), make_message("sms", PHONE)
    started = datetime.now(UTC)

    first = await send_once(p, msg, earlier_attempt_at=None)
    assert first.status == "failed" and first.retryable and "timed out" in (first.error or "")
    assert len(vendor.sms_to(PHONE)) == 1  # Aliyun took it; the client never heard

    retry = await send_once(p, msg, earlier_attempt_at=started)
    assert retry.status == "sent" and retry.provider_message_id == f"OutId:{msg.idempotency_key}"
    assert len(vendor.sms_to(PHONE)) == 1 and len(vendor.aliyun_calls("SendSms")) == 1
    (query,) = vendor.aliyun_calls("QuerySendDetails")
    form = query.form()
    assert form["PhoneNumber"] == PHONE and form["SendDate"] == datetime.now(BEIJING).strftime("%Y%m%d")
    assert form["PageSize"] == "50" and form["CurrentPage"] == "1"


async def test_lost_request_is_not_found_and_sent_once(vendor: VendorState, base_url: str, make_message) -> None:
    vendor.sms_templates.add("SMS_100001")
    vendor.script(SEND, Canned(200, {"Code": "OK"}, delay_s=1.5))  # never processed
    p, msg = provider(base_url), make_message("sms", PHONE)
    started = datetime.now(UTC)

    assert (await send_once(p, msg, earlier_attempt_at=None)).status == "failed"
    assert vendor.sms_to(PHONE) == []
    retry = await send_once(p, msg, earlier_attempt_at=started)
    assert retry.status == "sent" and (retry.provider_message_id or "").startswith("biz")
    assert len(vendor.sms_to(PHONE)) == 1 and vendor.sms_to(PHONE)[0].out_id == msg.idempotency_key


async def test_failing_query_is_ambiguous_not_unsent(vendor: VendorState, base_url: str, make_message) -> None:
    vendor.sms_templates.add("SMS_100001")
    vendor.script(SEND, Canned(process=True, delay_s=1.5))
    vendor.script(QUERY, Canned(500, {"Code": "isp.SYSTEM_ERROR", "Message": "system error"}))
    p, msg = provider(base_url), make_message("sms", PHONE)
    started = datetime.now(UTC)
    await send_once(p, msg, earlier_attempt_at=None)

    retry = await send_once(p, msg, earlier_attempt_at=started)
    assert retry.status == "failed" and retry.retryable and "could not reconcile" in (retry.error or "")
    assert len(vendor.aliyun_calls("SendSms")) == 1  # did not re-send on a failed query
    later = await send_once(p, msg, earlier_attempt_at=started)
    assert later.status == "sent" and len(vendor.sms_to(PHONE)) == 1


async def test_no_record_is_not_believed_before_the_settle_time(
    vendor: VendorState, base_url: str, make_message
) -> None:
    # Aliyun may still be processing a request the client gave up on.
    vendor.sms_templates.add("SMS_100001")
    p, msg = provider(base_url, reconcile_settle_s=120), make_message("sms", PHONE)
    now = datetime.now(UTC)
    young = await send_once(p, msg, earlier_attempt_at=now - timedelta(seconds=5))
    assert young.status == "failed" and young.retryable and "believed after 120s" in (young.error or "")
    assert vendor.aliyun_calls("SendSms") == []
    old = await send_once(p, msg, earlier_attempt_at=now - timedelta(seconds=300))
    assert old.status == "sent" and len(vendor.sms_to(PHONE)) == 1


async def test_other_deliveries_to_the_phone_do_not_count(vendor: VendorState, base_url: str, make_message) -> None:
    vendor.sms_templates.add("SMS_100001")
    now = datetime.now(UTC)
    vendor.sms_sent.extend(record(f"other-{i}", now, i) for i in range(3))
    p, msg = provider(base_url), make_message("sms", PHONE)
    assert await p.reconcile(msg, now - timedelta(minutes=5)) is None


async def test_found_on_a_later_page(vendor: VendorState, base_url: str, make_message) -> None:
    now = datetime.now(UTC)
    msg = make_message("sms", PHONE)
    vendor.sms_sent.extend(record(f"other-{i}", now, i) for i in range(60))
    vendor.sms_sent.insert(55, record(out_id_for(msg), now, 99))
    found = await provider(base_url).reconcile(msg, now - timedelta(minutes=5))
    assert found is not None and found.status == "sent"
    assert [c.form()["CurrentPage"] for c in vendor.aliyun_calls("QuerySendDetails")] == ["1", "2"]


async def test_attempt_before_beijing_midnight_is_found_on_that_day(
    vendor: VendorState, base_url: str, make_message
) -> None:
    now = datetime.now(UTC)
    msg = make_message("sms", PHONE, idempotency_key="k" * 100)  # OutId is the 64-character hash
    vendor.sms_sent.append(record(out_id_for(msg), now - timedelta(days=1)))
    found = await provider(base_url).reconcile(msg, now - timedelta(days=1, minutes=1))
    assert found is not None and found.provider_message_id == f"OutId:{out_id_for(msg)}"
    dates = [c.form()["SendDate"] for c in vendor.aliyun_calls("QuerySendDetails")]
    assert dates == [
        now.astimezone(BEIJING).strftime("%Y%m%d"),
        (now - timedelta(days=1)).astimezone(BEIJING).strftime("%Y%m%d"),
    ]


def test_send_dates_are_beijing_days_newest_first_within_30() -> None:
    started = datetime(2026, 12, 1, 15, 59, tzinfo=UTC)  # 23:59 in Beijing
    assert send_dates(started, started + timedelta(minutes=2)) == ["20261202", "20261201"]
    assert send_dates(started, started + timedelta(minutes=0)) == ["20261201"]
    assert len(send_dates(started - timedelta(days=90), started)) == 30
    assert send_dates(started + timedelta(hours=1), started) == ["20261201"]  # clock skew: today only
