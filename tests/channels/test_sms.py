from __future__ import annotations

import json

import pytest

from engine.channels.config import SmsConfig
from engine.channels.sms import AliyunSmsProvider, percent_encode, rpc_signature

from .vendors import ALIYUN_KEY_ID, ALIYUN_KEY_SECRET, Canned, VendorState

SMS = "/aliyun/"


def provider(base_url: str, **kw: object) -> AliyunSmsProvider:
    cfg = {
        "base_url": f"{base_url}/aliyun",
        "access_key_id": ALIYUN_KEY_ID,
        "access_key_secret": ALIYUN_KEY_SECRET,
        "sign_name": "好店",
        "templates": {"welcome": "SMS_100001"},
        "timeout_s": 2,
    }
    cfg.update(kw)
    return AliyunSmsProvider(SmsConfig.model_validate(cfg))


def test_signature_matches_aliyun_sendsms_doc_example() -> None:
    # The worked example in Aliyun's SMS signature documentation (GET).
    params = {
        "AccessKeyId": "testId",
        "Action": "SendSms",
        "Format": "XML",
        "OutId": "123",
        "PhoneNumbers": "15300000001",
        "RegionId": "cn-hangzhou",
        "SignName": "阿里云短信测试专用",
        "SignatureMethod": "HMAC-SHA1",
        "SignatureNonce": "45e25e9b-0a6f-4070-8c85-2956eda1b466",
        "SignatureVersion": "1.0",
        "TemplateCode": "SMS_71390007",
        "TemplateParam": '{"customer":"test"}',
        "Timestamp": "2017-07-12T02:42:19Z",
        "Version": "2017-05-25",
    }
    assert rpc_signature(params, "testSecret", "GET") == "zJDF+Lrzhj/ThnlvIToysFRq6t4="
    assert rpc_signature({**params, "Signature": "stale"}, "testSecret", "GET") == "zJDF+Lrzhj/ThnlvIToysFRq6t4="


def test_signature_matches_aliyun_rpc_doc_example() -> None:
    # The DescribeRegions example of the generic RPC signature documentation.
    params = {
        "Format": "XML",
        "AccessKeyId": "testid",
        "Action": "DescribeRegions",
        "SignatureMethod": "HMAC-SHA1",
        "SignatureNonce": "3ee8c1b8-83d3-44af-a94f-4e0ad82fd6cf",
        "SignatureVersion": "1.0",
        "Version": "2014-05-26",
        "Timestamp": "2016-02-23T12:46:24Z",
    }
    assert rpc_signature(params, "testsecret", "GET") == "OLeaidS1JvxuMvnyHOwuJ+uX5qY="


def test_percent_encoding_rules() -> None:
    assert percent_encode("a b*c~d-_.") == "a%20b%2Ac~d-_."
    assert percent_encode("/=&+") == "%2F%3D%26%2B"
    assert percent_encode("好") == "%E5%A5%BD"


async def test_sends_signed_request_with_out_id(vendor: VendorState, base_url: str, make_message) -> None:
    vendor.sms_templates.add("SMS_100001")
    msg = make_message("sms", "13800138000", data={"params": {"name": "李雷", "code": 42}})
    result = await provider(base_url).send(msg)

    assert result.status == "sent" and (result.provider_message_id or "").startswith("biz")
    (req,) = vendor.calls(SMS)
    assert req.method == "POST" and req.headers["content-type"] == "application/x-www-form-urlencoded"
    form = req.form()
    assert form["OutId"] == msg.idempotency_key
    assert form["PhoneNumbers"] == "13800138000"
    assert form["SignName"] == "好店" and form["TemplateCode"] == "SMS_100001"
    assert json.loads(form["TemplateParam"]) == {"name": "李雷", "code": "42"}
    assert form["Format"] == "JSON" and form["SignatureMethod"] == "HMAC-SHA1"


async def test_template_code_override_and_long_key(vendor: VendorState, base_url: str, make_message) -> None:
    vendor.sms_templates.add("SMS_999")
    msg = make_message("sms", "13800138000", idempotency_key="k" * 100, data={"template_code": "SMS_999"})
    assert (await provider(base_url).send(msg)).status == "sent"
    form = vendor.calls(SMS)[0].form()
    assert form["TemplateCode"] == "SMS_999"
    assert len(form["OutId"]) == 64
    # Deterministic: the same delivery always carries the same OutId.
    await provider(base_url).send(msg)
    assert vendor.calls(SMS)[1].form()["OutId"] == form["OutId"]


async def test_wrong_secret_fails_signature_check_finally(vendor: VendorState, base_url: str, make_message) -> None:
    vendor.sms_templates.add("SMS_100001")
    result = await provider(base_url, access_key_secret="nope").send(make_message("sms", "13800138000"))
    assert result.status == "failed" and not result.retryable and "SignatureDoesNotMatch" in (result.error or "")


async def test_illegal_number_is_final(vendor: VendorState, base_url: str, make_message) -> None:
    vendor.sms_templates.add("SMS_100001")
    result = await provider(base_url).send(make_message("sms", "12345"))
    assert result.status == "failed" and not result.retryable and "MOBILE_NUMBER_ILLEGAL" in (result.error or "")


@pytest.mark.parametrize(
    "canned",
    [
        Canned(200, {"Code": "isv.BUSINESS_LIMIT_CONTROL", "Message": "触发分钟级流控"}),
        Canned(400, {"Code": "Throttling.User", "Message": "Request was denied due to user flow control."}),
        Canned(500, {"Code": "isp.SYSTEM_ERROR", "Message": "system error"}),
        Canned(503, "Service Unavailable"),
    ],
)
async def test_throttling_and_vendor_errors_are_retryable(
    vendor: VendorState, base_url: str, make_message, canned: Canned
) -> None:
    vendor.script(SMS, canned)
    result = await provider(base_url).send(make_message("sms", "13800138000"))
    assert result.status == "failed" and result.retryable


async def test_timeout_is_retryable(vendor: VendorState, base_url: str, make_message) -> None:
    vendor.script(SMS, Canned(200, {"Code": "OK"}, delay_s=1.5))
    result = await provider(base_url, timeout_s=0.3).send(make_message("sms", "13800138000"))
    assert result.status == "failed" and result.retryable and "timed out" in (result.error or "")


async def test_unmapped_template_fails_without_calling(vendor: VendorState, base_url: str, make_message) -> None:
    result = await provider(base_url).send(make_message("sms", "13800138000", template="unknown"))
    assert result.status == "failed" and not result.retryable and "unknown" in (result.error or "")
    assert vendor.calls(SMS) == []


async def test_no_phone_is_final(vendor: VendorState, base_url: str, make_message) -> None:
    result = await provider(base_url).send(make_message("sms", None))
    assert result.status == "failed" and not result.retryable
    assert vendor.calls(SMS) == []
