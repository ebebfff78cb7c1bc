"""SMS channel: Aliyun SMS (阿里云短信, dysmsapi) ``SendSms``.

Chosen because it is the most common Chinese SMS gateway and its RPC protocol
is fully documented (https://help.aliyun.com/document_detail/101414.html and
the RPC signature spec); other vendors (Tencent Cloud SMS, 云片) have the same
shape — sign name + template code + template params — and would be sibling
modules.

Request (form-encoded POST to ``<base_url>/``)::

    Action=SendSms  Version=2017-05-25  RegionId=cn-hangzhou  Format=JSON
    AccessKeyId=…  SignatureMethod=HMAC-SHA1  SignatureVersion=1.0
    SignatureNonce=<uuid4>  Timestamp=<UTC, 2017-07-12T02:42:19Z>
    PhoneNumbers=<phone>  SignName=<sign>  TemplateCode=<SMS_xxx>
    TemplateParam=<JSON of the template params>  OutId=<idempotency key>
    Signature=base64(HMAC-SHA1(secret + "&", "POST&%2F&" + pe(sorted canonical query)))

where ``pe`` is RFC 3986 percent-encoding (space → %20, ``*`` → %2A, ``~`` kept).
Answer: ``{"Code": "OK", "Message": "OK", "BizId": "…", "RequestId": "…"}``.

``OutId`` (the delivery's idempotency key, hashed to 64 characters when
longer) is echoed in delivery receipts and in ``QuerySendDetails``; Aliyun
does not dedupe on it, so a blind retry after a timeout could send a second
SMS. Instead an ambiguous attempt is *reconciled* before re-sending
(:meth:`AliyunSmsProvider.reconcile`)::

    Action=QuerySendDetails  PhoneNumber=<phone>  SendDate=<yyyyMMdd, Beijing time>
    PageSize=50  CurrentPage=<n>  (+ the same signed common parameters)
    → {"Code": "OK", "TotalCount": "2", "SmsSendDetailDTOs": {"SmsSendDetailDTO":
       [{"OutId", "PhoneNum", "SendStatus": 1 waiting | 2 failed | 3 delivered,
         "TemplateCode", "Content", "SendDate", "ReceiveDate", "ErrCode"}]}}

A record with our OutId on any day since the first attempt means Aliyun
accepted it: sent (``provider_message_id`` = ``OutId:<out id>``, as the
records carry no BizId), whatever the carrier did with it since. No such
record once ``reconcile_settle_s`` has passed → it never arrived, send.
``BizId`` would narrow the query but an ambiguous attempt never learnt it.
Records are kept 30 days, far longer than any retry. Outcome of a send: ``Code == "OK"`` → sent (``provider_message_id`` = BizId);
throttling and Aliyun-side errors (``isv.BUSINESS_LIMIT_CONTROL``,
``Throttling.User``, ``isp.SYSTEM_ERROR``, HTTP 5xx, timeouts) → retryable;
everything else (``isv.MOBILE_NUMBER_ILLEGAL``, ``isv.AMOUNT_NOT_ENOUGH``,
``SignatureDoesNotMatch``, ``isv.SMS_TEMPLATE_ILLEGAL``, …) → not.

Data keys read: ``data["params"]`` (template params; default ``{"content":
body}``), ``data["template_code"]`` (overrides the ``templates`` mapping).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta, timezone
from typing import Any, Literal
from urllib.parse import quote

import httpx

from engine.channels._common import (
    RETRYABLE_4XX,
    HttpClientHolder,
    failed,
    missing_address,
    sent,
    short_key,
    template_params,
    transport_error_result,
)
from engine.channels._reconcile import as_utc, could_not_tell, too_recent
from engine.channels.base import OutboundMessage, ProviderResult
from engine.channels.config import SmsConfig

API_VERSION = "2017-05-25"
# QuerySendDetails: SendDate is a date in Beijing time (no DST, so a fixed
# offset is exact), pages hold at most 50 records, records are kept 30 days.
BEIJING = timezone(timedelta(hours=8), "Asia/Shanghai")
QUERY_PAGE_SIZE = 50
QUERY_DAYS = 30
RETRYABLE_CODES = frozenset(
    {
        "isv.BUSINESS_LIMIT_CONTROL",
        "Throttling",
        "Throttling.User",
        "Throttling.Api",
        "isp.SYSTEM_ERROR",
        "InternalError",
        "ServiceUnavailable",
        "SignatureNonceUsed",
    }
)


def percent_encode(value: str) -> str:
    """Aliyun POP percent-encoding: RFC 3986 unreserved characters stay."""
    return quote(value, safe="~")


def rpc_signature(params: Mapping[str, str], access_key_secret: str, method: str = "POST") -> str:
    """Aliyun RPC (signature version 1.0) HMAC-SHA1 signature of ``params``."""
    canonical = "&".join(
        f"{percent_encode(k)}={percent_encode(v)}" for k, v in sorted(params.items()) if k != "Signature"
    )
    string_to_sign = f"{method.upper()}&{percent_encode('/')}&{percent_encode(canonical)}"
    mac = hmac.new(f"{access_key_secret}&".encode(), string_to_sign.encode(), hashlib.sha1)
    return base64.b64encode(mac.digest()).decode()


class AliyunSmsProvider:
    channel = "sms"

    def __init__(self, config: SmsConfig, *, client: httpx.AsyncClient | None = None) -> None:
        if not config.configured:
            raise ValueError("sms needs access_key_id, access_key_secret and sign_name")
        self.config = config
        self._holder = HttpClientHolder(client, timeout_s=config.timeout_s)

    def _signed(self, action: str, fields: Mapping[str, str]) -> dict[str, str]:
        """``fields`` plus the RPC common parameters, signed (fresh nonce and time)."""
        cfg = self.config
        assert cfg.access_key_id and cfg.access_key_secret
        params = {
            "Action": action,
            "Version": API_VERSION,
            "RegionId": cfg.region_id,
            "Format": "JSON",
            "AccessKeyId": cfg.access_key_id,
            "SignatureMethod": "HMAC-SHA1",
            "SignatureVersion": "1.0",
            "SignatureNonce": str(uuid.uuid4()),
            "Timestamp": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            **fields,
        }
        params["Signature"] = rpc_signature(params, cfg.access_key_secret.get_secret_value(), "POST")
        return params

    def signed_params(self, message: OutboundMessage, template_code: str) -> dict[str, str]:
        assert self.config.sign_name and message.address
        return self._signed(
            "SendSms",
            {
                "PhoneNumbers": message.address,
                "SignName": self.config.sign_name,
                "TemplateCode": template_code,
                "TemplateParam": json.dumps(template_params(message), ensure_ascii=False, separators=(",", ":")),
                "OutId": out_id_for(message),
            },
        )

    async def _call(self, params: dict[str, str], what: str) -> dict[str, Any] | ProviderResult:
        """POST signed ``params``; the ``Code == "OK"`` payload, or the failure."""
        url = self.config.base_url.rstrip("/") + "/"
        try:
            response = await self._holder.http.post(url, data=params, timeout=self._holder.timeout)
        except httpx.HTTPError as exc:
            return transport_error_result(exc, what=what)
        try:
            payload = response.json()
        except ValueError:
            payload = None
        status = response.status_code
        if not isinstance(payload, dict):
            retryable = status >= 500 or status in RETRYABLE_4XX or 200 <= status < 300
            return failed(f"{what} answered HTTP {status}: {response.text[:300]}", retryable=retryable)
        code = str(payload.get("Code", ""))
        if code == "OK" and 200 <= status < 300:
            return payload
        retryable = code in RETRYABLE_CODES or status >= 500 or status in RETRYABLE_4XX
        return failed(f"{what} {code or f'HTTP {status}'}: {payload.get('Message', '')}", retryable=retryable)

    async def send(self, message: OutboundMessage) -> ProviderResult:
        if not message.address:
            return missing_address(message)
        template_code = message.data.get("template_code") or self.config.templates.get(message.template)
        if not template_code:
            return failed(
                f"sms: no Aliyun TemplateCode for template {message.template!r} (map it in channels.sms.templates)",
                retryable=False,
            )
        answer = await self._call(self.signed_params(message, str(template_code)), "aliyun sms")
        if isinstance(answer, ProviderResult):
            return answer
        return sent(str(answer["BizId"]) if answer.get("BizId") else None)

    async def reconcile(self, message: OutboundMessage, attempt_started_at: datetime) -> ProviderResult | None:
        """Did an earlier attempt of ``message`` reach Aliyun? (module doc)."""
        if not message.address:
            return None  # send fails without calling Aliyun: nothing to find
        started, now = as_utc(attempt_started_at), datetime.now(UTC)
        out_id = out_id_for(message)
        for send_date in send_dates(started, now):
            found = await self._find_out_id(message.address, send_date, out_id)
            if found is not False:
                return found
        return too_recent(self.channel, started, now, self.config.reconcile_settle_s)

    async def _find_out_id(self, phone: str, send_date: str, out_id: str) -> ProviderResult | Literal[False]:
        """sent if a record of ``phone`` on ``send_date`` has ``out_id``;
        a retryable failure if Aliyun cannot be asked; False if absent."""
        page, seen = 1, 0
        while True:
            fields = {
                "PhoneNumber": phone,
                "SendDate": send_date,
                "PageSize": str(QUERY_PAGE_SIZE),
                "CurrentPage": str(page),
            }
            answer = await self._call(self._signed("QuerySendDetails", fields), "aliyun QuerySendDetails")
            if isinstance(answer, ProviderResult):
                return could_not_tell(self.channel, answer.error or "QuerySendDetails failed")
            records = (answer.get("SmsSendDetailDTOs") or {}).get("SmsSendDetailDTO") or []
            if any(record.get("OutId") == out_id for record in records):
                return sent(f"OutId:{out_id}")
            seen += len(records)
            if not records or seen >= int(answer.get("TotalCount") or 0):
                return False
            page += 1

    async def aclose(self) -> None:
        await self._holder.aclose()


def out_id_for(message: OutboundMessage) -> str:
    """The ``OutId`` a delivery's every attempt carries: how reconcile finds it."""
    return short_key(message.idempotency_key, 64)


def send_dates(started: datetime, now: datetime) -> list[str]:
    """Beijing-time ``SendDate`` values from the first attempt to now, newest
    first (an attempt just before midnight is recorded on the earlier day);
    at most the 30 days Aliyun keeps."""
    first = max(started.astimezone(BEIJING).date(), (now - timedelta(days=QUERY_DAYS - 1)).astimezone(BEIJING).date())
    day, dates = now.astimezone(BEIJING).date(), []
    while day >= first:
        dates.append(day.strftime("%Y%m%d"))
        day -= timedelta(days=1)
    return dates or [now.astimezone(BEIJING).strftime("%Y%m%d")]
