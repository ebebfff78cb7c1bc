"""The Aliyun SMS stand-in (``/aliyun/``): signature check, ``SendSms``
recording what it accepted, and ``QuerySendDetails`` answering from those
records (one phone, one Beijing-time day, paged), so a test can lose a
``SendSms`` answer and reconcile against what the "vendor" really holds."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlencode

if TYPE_CHECKING:
    from .vendors import Recorded, VendorState

ALIYUN_KEY_ID = "LTAI-test"
ALIYUN_KEY_SECRET = "aliyun-secret"
BEIJING = timezone(timedelta(hours=8))


@dataclass
@dataclass
class SmsRecord:
    """One SMS Aliyun accepted, as QuerySendDetails reports it."""

    phone: str
    out_id: str | None
    biz_id: str
    template_code: str
    content: str
    send_date: datetime  # Beijing time, as Aliyun shows it


def aliyun_expected_signature(method: str, params: dict[str, str], secret: str) -> str:
    """Independent of the provider: urlencode(quote_via=quote) + the POP fix-ups."""
    canonical = urlencode(sorted((k, v) for k, v in params.items() if k != "Signature"), quote_via=quote, safe="~")
    to_sign = "&".join([method, quote("/", safe=""), quote(canonical, safe="~")])
    digest = hmac.new((secret + "&").encode(), to_sign.encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode()


def aliyun(state: VendorState, req: Recorded) -> tuple[int, Any]:
    params = req.form() if req.method == "POST" else dict(req.query)
    request_id = f"req-{next(state.ids)}"
    if params.get("AccessKeyId") != ALIYUN_KEY_ID:
        return 404, {
            "Code": "InvalidAccessKeyId.NotFound",
            "Message": "Specified access key is not found.",
            "RequestId": request_id,
        }
    if params.get("Signature") != aliyun_expected_signature(req.method, params, ALIYUN_KEY_SECRET):
        return 400, {
            "Code": "SignatureDoesNotMatch",
            "Message": "Specified signature is not matched.",
            "RequestId": request_id,
        }
    if params["SignatureNonce"] in state.sms_nonces:
        return 400, {"Code": "SignatureNonceUsed", "Message": "nonce used", "RequestId": request_id}
    state.sms_nonces.add(params["SignatureNonce"])
    action = ALIYUN_ACTIONS.get(params.get("Action", "")) if params.get("Version") == "2017-05-25" else None
    if action is None:
        return 400, {"Code": "InvalidAction", "Message": "bad action", "RequestId": request_id}
    return action(state, params, request_id)


def aliyun_send_sms(state: VendorState, params: dict[str, str], request_id: str) -> tuple[int, Any]:
    phone = params["PhoneNumbers"]
    if not (len(phone) == 11 and phone.isdigit() and phone.startswith("1")):
        return 200, {"Code": "isv.MOBILE_NUMBER_ILLEGAL", "Message": "invalid number", "RequestId": request_id}
    if params["TemplateCode"] not in state.sms_templates:
        return 200, {"Code": "isv.SMS_TEMPLATE_ILLEGAL", "Message": "bad template", "RequestId": request_id}
    template_params = json.loads(params["TemplateParam"])
    biz_id = f"{next(state.ids)}^0"
    state.sms_sent.append(
        SmsRecord(
            phone=phone,
            out_id=params.get("OutId"),
            biz_id=biz_id,
            template_code=params["TemplateCode"],
            content=f"【{params['SignName']}】{json.dumps(template_params, ensure_ascii=False)}",
            send_date=datetime.now(BEIJING),
        )
    )
    return 200, {"Code": "OK", "Message": "OK", "BizId": f"biz{biz_id}", "RequestId": request_id}


def aliyun_query_send_details(state: VendorState, params: dict[str, str], request_id: str) -> tuple[int, Any]:
    """Records of one phone on one Beijing-time day, paged; BizId narrows."""
    try:
        page_size, page = int(params["PageSize"]), int(params.get("CurrentPage") or 1)
        day = datetime.strptime(params["SendDate"], "%Y%m%d").date()
        phone = params["PhoneNumber"]
    except (KeyError, ValueError):
        return 400, {"Code": "isv.InvalidParameters", "Message": "bad parameters", "RequestId": request_id}
    if not 1 <= page_size <= 50:
        return 400, {"Code": "isv.InvalidParameters", "Message": "PageSize 1~50", "RequestId": request_id}
    records = [
        r
        for r in state.sms_sent
        if r.phone == phone
        and r.send_date.date() == day
        and (not params.get("BizId") or f"biz{r.biz_id}" == params["BizId"])
    ]
    shown = records[(page - 1) * page_size : page * page_size]
    dtos = [
        {
            "PhoneNum": r.phone,
            "SendStatus": 3,
            "ErrCode": "DELIVERED",
            "TemplateCode": r.template_code,
            "Content": r.content,
            "SendDate": r.send_date.strftime("%Y-%m-%d %H:%M:%S"),
            "ReceiveDate": r.send_date.strftime("%Y-%m-%d %H:%M:%S"),
            **({"OutId": r.out_id} if r.out_id else {}),
        }
        for r in shown
    ]
    return 200, {
        "Code": "OK",
        "Message": "OK",
        "RequestId": request_id,
        "TotalCount": str(len(records)),
        "SmsSendDetailDTOs": {"SmsSendDetailDTO": dtos},
    }


AliyunAction = Callable[["VendorState", dict[str, str], str], tuple[int, Any]]
ALIYUN_ACTIONS: dict[str, AliyunAction] = {
    "SendSms": aliyun_send_sms,
    "QuerySendDetails": aliyun_query_send_details,
}
