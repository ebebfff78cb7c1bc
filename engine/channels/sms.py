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

``OutId`` is echoed in delivery receipts so they can be joined back to the
ledger; Aliyun does not dedupe on it, so a retry after a timeout can send a
second SMS. Outcome: ``Code == "OK"`` → sent (``provider_message_id`` = BizId);
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
from datetime import UTC, datetime
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
from engine.channels.base import OutboundMessage, ProviderResult
from engine.channels.config import SmsConfig

API_VERSION = "2017-05-25"
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

    def signed_params(self, message: OutboundMessage, template_code: str) -> dict[str, str]:
        cfg = self.config
        assert cfg.access_key_id and cfg.access_key_secret and cfg.sign_name and message.address
        params = {
            "Action": "SendSms",
            "Version": API_VERSION,
            "RegionId": cfg.region_id,
            "Format": "JSON",
            "AccessKeyId": cfg.access_key_id,
            "SignatureMethod": "HMAC-SHA1",
            "SignatureVersion": "1.0",
            "SignatureNonce": str(uuid.uuid4()),
            "Timestamp": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "PhoneNumbers": message.address,
            "SignName": cfg.sign_name,
            "TemplateCode": template_code,
            "TemplateParam": json.dumps(template_params(message), ensure_ascii=False, separators=(",", ":")),
            "OutId": short_key(message.idempotency_key, 64),
        }
        params["Signature"] = rpc_signature(params, cfg.access_key_secret.get_secret_value(), "POST")
        return params

    async def send(self, message: OutboundMessage) -> ProviderResult:
        if not message.address:
            return missing_address(message)
        template_code = message.data.get("template_code") or self.config.templates.get(message.template)
        if not template_code:
            return failed(
                f"sms: no Aliyun TemplateCode for template {message.template!r} (map it in channels.sms.templates)",
                retryable=False,
            )
        params = self.signed_params(message, str(template_code))
        url = self.config.base_url.rstrip("/") + "/"
        try:
            response = await self._holder.http.post(url, data=params, timeout=self._holder.timeout)
        except httpx.HTTPError as exc:
            return transport_error_result(exc, what="aliyun sms")
        try:
            payload = response.json()
        except ValueError:
            payload = None
        status = response.status_code
        if not isinstance(payload, dict):
            retryable = status >= 500 or status in RETRYABLE_4XX or 200 <= status < 300
            return failed(f"aliyun sms answered HTTP {status}: {response.text[:300]}", retryable=retryable)
        code = str(payload.get("Code", ""))
        if code == "OK" and 200 <= status < 300:
            return sent(str(payload.get("BizId")) if payload.get("BizId") else None)
        retryable = code in RETRYABLE_CODES or status >= 500 or status in RETRYABLE_4XX
        return failed(f"aliyun sms {code or f'HTTP {status}'}: {payload.get('Message', '')}", retryable=retryable)

    async def aclose(self) -> None:
        await self._holder.aclose()
