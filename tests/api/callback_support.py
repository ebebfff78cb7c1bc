"""What the vendors do, done by the tests: WeCom's and the Official
Account's callback requests, signed and encrypted with the documented
scheme (``engine.channels.wecom_crypto``, itself pinned to the vendor's
vectors) and known keys, posted to the real endpoint over HTTP."""

from __future__ import annotations

import itertools
import secrets
import time
from dataclasses import dataclass
from typing import Any
from xml.sax.saxutils import escape

import httpx

from engine.channels.wecom_crypto import MsgCrypt, sha1_signature

WECOM_CORP_ID = "ww-callback-corp"
WECOM_TOKEN = "wecom-callback-token"
WECOM_AES_KEY = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"  # 43 characters
OA_APP_ID = "wx-callback-oa"
OA_TOKEN = "oa-callback-token"
OA_AES_KEY = "ZYXWVUTSRQPONMLKJIHGFEDCBA9876543210zyxwvut"

_stamps = itertools.count(1_700_000_000)


def xml(fields: dict[str, Any]) -> bytes:
    """``<xml>`` with CDATA text fields, numbers bare, lists as <Item>s."""
    parts = ["<xml>"]
    for name, value in fields.items():
        if isinstance(value, list):
            inner = "".join(f"<Item><![CDATA[{v}]]></Item>" for v in value)
            parts.append(f"<{name}>{inner}</{name}>")
        elif isinstance(value, int):
            parts.append(f"<{name}>{value}</{name}>")
        else:
            parts.append(f"<{name}><![CDATA[{value}]]></{name}>")
    parts.append("</xml>")
    return "".join(parts).encode("utf-8")


def wecom_event(change: str, **fields: Any) -> dict[str, Any]:
    return {
        "ToUserName": WECOM_CORP_ID,
        "FromUserName": "sys",
        "CreateTime": next(_stamps),
        "MsgType": "event",
        "Event": "change_external_contact",
        "ChangeType": change,
        **fields,
    }


@dataclass
class WeComSender:
    """Posts like WeCom: ``msg_signature``, ``timestamp``, ``nonce`` in the
    query, ``<xml><ToUserName/><Encrypt/><AgentID/></xml>`` as the body."""

    http: httpx.AsyncClient
    url: str
    token: str = WECOM_TOKEN
    aes_key: str = WECOM_AES_KEY
    corp_id: str = WECOM_CORP_ID

    def crypt(self) -> MsgCrypt:
        return MsgCrypt(self.token, self.aes_key, self.corp_id)

    def envelope(self, message: dict[str, Any]) -> tuple[dict[str, str], bytes]:
        """Query and body for one delivery (a fresh nonce and ciphertext
        each time, as a WeCom retry has)."""
        crypt = self.crypt()
        encrypted = crypt.encrypt(xml(message))
        timestamp, nonce = str(next(_stamps)), str(secrets.randbelow(10**9))
        query = {"msg_signature": crypt.signature(timestamp, nonce, encrypted), "timestamp": timestamp, "nonce": nonce}
        body = f"<xml><ToUserName><![CDATA[{escape(self.corp_id)}]]></ToUserName><Encrypt><![CDATA[{encrypted}]]></Encrypt><AgentID><![CDATA[]]></AgentID></xml>"
        return query, body.encode()

    async def post(self, message: dict[str, Any]) -> httpx.Response:
        query, body = self.envelope(message)
        return await self.http.post(f"{self.url}/v1/callbacks/wecom", params=query, content=body)


@dataclass
class OfficialAccountSender:
    """Posts like the Official Account: ``signature`` (token, timestamp,
    nonce) and ``openid`` always; in safe mode ``encrypt_type=aes`` and
    ``msg_signature`` too, the body ``<xml><ToUserName/><Encrypt/></xml>``."""

    http: httpx.AsyncClient
    url: str
    token: str = OA_TOKEN
    aes_key: str | None = OA_AES_KEY
    app_id: str = OA_APP_ID

    def query(self, timestamp: str | None = None) -> dict[str, str]:
        timestamp = timestamp or str(int(time.time()))
        nonce = str(secrets.randbelow(10**9))
        return {"signature": sha1_signature(self.token, timestamp, nonce), "timestamp": timestamp, "nonce": nonce}

    async def post(
        self, message: dict[str, Any], *, encrypted: bool | None = None, timestamp: str | None = None
    ) -> httpx.Response:
        query = self.query(timestamp)
        if "FromUserName" in message:
            query["openid"] = str(message["FromUserName"])
        safe = self.aes_key is not None if encrypted is None else encrypted
        if not safe:
            body = xml(message)
        else:
            assert self.aes_key is not None
            crypt = MsgCrypt(self.token, self.aes_key, self.app_id)
            ciphertext = crypt.encrypt(xml(message))
            query["encrypt_type"] = "aes"
            query["msg_signature"] = crypt.signature(query["timestamp"], query["nonce"], ciphertext)
            body = f"<xml><ToUserName><![CDATA[gh_test]]></ToUserName><Encrypt><![CDATA[{ciphertext}]]></Encrypt></xml>".encode()
        return await self.http.post(f"{self.url}/v1/callbacks/official-account", params=query, content=body)
