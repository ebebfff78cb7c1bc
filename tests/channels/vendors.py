"""A local HTTP server that behaves like the vendors the providers talk to.

One Starlette app, served by uvicorn on 127.0.0.1 in a background thread,
mounts each vendor under a prefix (``/hook``, ``/wecom``, ``/wechat``,
``/aliyun``, ``/push``). The fakes implement the vendor behaviour the
providers depend on — token issue/expiry, the WeCom task lifecycle, WeChat's
``client_msg_id`` dedupe, Aliyun's signature check — and record every
request so tests can assert what the vendor received. ``script()`` makes the
next request(s) to a path answer a canned response or stall, for busy errors,
5xx and timeouts; ``Canned(process=True, delay_s=…)`` instead handles the
request for real and then holds the answer past the client's timeout — the
crash between request and answer that reconciliation is for. The query
endpoints (Aliyun ``QuerySendDetails``, WeCom ``get_groupmsg_list_v2`` and
the task/result lists) answer from what was actually received.

The Aliyun signature check here is written independently of the provider's
(by building the string to sign with ``urlencode``), so a shared mistake in
percent-encoding would not go unnoticed.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import itertools
import json
import socket
import threading
import time
from collections import defaultdict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from .vendor_aliyun import ALIYUN_KEY_ID, ALIYUN_KEY_SECRET, BEIJING, SmsRecord, aliyun

# re-exported: the tests take every vendor constant from here
__all__ = ["ALIYUN_KEY_ID", "ALIYUN_KEY_SECRET", "BEIJING", "SmsRecord"]

WEBHOOK_SECRET = "whsec-test"
WECOM_CORP_ID = "ww-corp"
WECOM_SECRET = "contact-secret"
WECOM_APP_SECRET = "app-secret"
WECHAT_APP_ID = "wx-oa"
WECHAT_SECRET = "oa-secret"
MP_APP_ID = "wx-mp"
MP_SECRET = "mp-secret"
PUSH_API_KEY = "push-key"


@dataclass
class Recorded:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)

    def form(self) -> dict[str, str]:
        return dict(parse_qsl(self.body.decode(), keep_blank_values=True))


@dataclass
class Canned:
    """A scripted answer: ``delay_s`` first (to provoke client timeouts).

    ``process=True``: the vendor handles the request as usual (the message is
    accepted and recorded) and only its answer is held for ``delay_s`` — the
    client, timing out first, never learns the outcome.
    """

    status: int = 200
    payload: Any = None
    delay_s: float = 0.0
    process: bool = False


@dataclass
class WeComTask:
    chat_type: str
    recipients: list[str]
    senders: list[str]
    sent_by: dict[str, int] = field(default_factory=dict)  # staff userid -> recipient status
    text: dict[str, Any] | None = None
    attachments: list[Any] = field(default_factory=list)
    create_time: int = 0
    create_type: int = 0  # 0 企业发表 (add_msg_template), 1 个人发表 (staff's own)


class TokenIssuer:
    """Tokens of one app: issued, expired (42001) or unknown (40014 / 40001)."""

    def __init__(self, prefix: str, *, invalidate_previous: bool) -> None:
        self.prefix = prefix
        self.invalidate_previous = invalidate_previous
        self.counter = itertools.count(1)
        self.valid: set[str] = set()
        self.expired: set[str] = set()
        self.expires_in = 7200
        self.issued = 0
        self.stable: str | None = None

    def issue(self) -> dict[str, Any]:
        token = f"{self.prefix}-{next(self.counter)}"
        if self.invalidate_previous:
            self.valid.clear()
        self.valid.add(token)
        self.issued += 1
        return {"access_token": token, "expires_in": self.expires_in}

    def expire_all(self) -> None:
        self.expired |= self.valid
        self.valid.clear()
        self.stable = None


class VendorState:
    def __init__(self) -> None:
        self.requests: list[Recorded] = []
        self.scripts: dict[str, deque[Canned]] = defaultdict(deque)
        self.ids = itertools.count(1)
        # webhook
        self.webhook_seen: dict[str, str] = {}  # idempotency key -> id
        # wecom
        self.wecom_tokens = TokenIssuer("wecom-tok", invalidate_previous=False)
        self.wecom_app_tokens = TokenIssuer("wecom-app-tok", invalidate_previous=False)
        self.wecom_contacts: dict[str, list[str]] = {}  # external_userid -> staff who have them
        self.wecom_groups: dict[str, str] = {}  # chat_id -> owner
        self.wecom_members: set[str] = set()
        self.wecom_tasks: dict[str, WeComTask] = {}
        self.wecom_page_size = 1  # small pages so the client's cursor loop is exercised
        # wechat
        self.oa_tokens = TokenIssuer("oa-tok", invalidate_previous=True)
        self.mp_tokens = TokenIssuer("mp-tok", invalidate_previous=True)
        self.oa_subscribers: set[str] = set()
        self.oa_templates: set[str] = set()
        self.oa_delivered: dict[tuple[str, str], int] = {}  # (openid, client_msg_id) -> msgid
        self.mp_grants: dict[str, int] = defaultdict(int)  # (openid) -> remaining one-time grants
        # aliyun
        self.sms_templates: set[str] = set()
        self.sms_nonces: set[str] = set()
        self.sms_sent: list[SmsRecord] = []
        # push
        self.push_users: set[str] = set()
        self.push_seen: dict[str, str] = {}

    # -- test helpers -------------------------------------------------------

    def calls(self, path: str) -> list[Recorded]:
        return [r for r in self.requests if r.path == path]

    def aliyun_calls(self, action: str) -> list[Recorded]:
        return [r for r in self.calls("/aliyun/") if r.form().get("Action") == action]

    def sms_to(self, phone: str) -> list[SmsRecord]:
        """SMS Aliyun accepted for ``phone``: what reached (or will reach) the user."""
        return [r for r in self.sms_sent if r.phone == phone]

    def script(self, path: str, *answers: Canned) -> None:
        self.scripts[path].extend(answers)

    def wecom_confirm(self, msgid: str, userid: str, status: int = 1) -> None:
        """A staff member taps "send" in the WeCom client (status per recipient)."""
        self.wecom_tasks[msgid].sent_by[userid] = status


Handler = Callable[[VendorState, Recorded], tuple[int, Any]]


# -- webhook -------------------------------------------------------------------


def webhook(state: VendorState, req: Recorded) -> tuple[int, Any]:
    ts = req.headers.get("x-journeys-timestamp", "")
    expected = "sha256=" + hmac.new(WEBHOOK_SECRET.encode(), f"{ts}.".encode() + req.body, hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected, req.headers.get("x-journeys-signature", "")):
        return 401, {"error": "bad signature"}
    key = req.headers["idempotency-key"]
    if key not in state.webhook_seen:
        state.webhook_seen[key] = f"hook-{next(state.ids)}"
    return 200, {"id": state.webhook_seen[key]}


def webhook_reject(state: VendorState, req: Recorded) -> tuple[int, Any]:
    return 422, {"error": "unprocessable"}


# -- wecom ---------------------------------------------------------------------


def _token_check(issuer: TokenIssuer, req: Recorded, *, unknown_code: int) -> tuple[int, Any] | None:
    token = req.query.get("access_token")
    if not token:
        return 200, {"errcode": 41001, "errmsg": "access_token missing"}
    if token in issuer.expired:
        return 200, {"errcode": 42001, "errmsg": "access_token expired"}
    if token not in issuer.valid:
        return 200, {"errcode": unknown_code, "errmsg": "invalid access_token"}
    return None


def wecom_gettoken(state: VendorState, req: Recorded) -> tuple[int, Any]:
    if req.query.get("corpid") != WECOM_CORP_ID:
        return 200, {"errcode": 40013, "errmsg": "invalid corpid"}
    secret = req.query.get("corpsecret")
    if secret == WECOM_SECRET:
        issuer = state.wecom_tokens
    elif secret == WECOM_APP_SECRET:
        issuer = state.wecom_app_tokens
    else:
        return 200, {"errcode": 40001, "errmsg": "invalid credential"}
    return 200, {"errcode": 0, "errmsg": "ok", **issuer.issue()}


def wecom_add_msg_template(state: VendorState, req: Recorded) -> tuple[int, Any]:
    if bad := _token_check(state.wecom_tokens, req, unknown_code=40014):
        return bad
    body = req.json()
    if not body.get("text", {}).get("content") and not body.get("attachments"):
        return 200, {"errcode": 41041, "errmsg": "empty content"}
    msgid = f"msg{next(state.ids)}"
    if body["chat_type"] == "single":
        targets = body["external_userid"]
        fail_list = [t for t in targets if t not in state.wecom_contacts]
        ok = [t for t in targets if t in state.wecom_contacts]
        if body.get("sender"):
            fail_list += [t for t in ok if body["sender"] not in state.wecom_contacts[t]]
            senders = [body["sender"]]
        else:
            senders = sorted({s for t in ok for s in state.wecom_contacts[t]})
        if not ok or len(fail_list) == len(targets):
            return 200, {"errcode": 0, "errmsg": "ok", "fail_list": fail_list, "msgid": msgid}
        state.wecom_tasks[msgid] = WeComTask("single", targets, senders, **_task_content(body))
        return 200, {"errcode": 0, "errmsg": "ok", "fail_list": fail_list, "msgid": msgid}
    if body["chat_type"] == "group":
        sender = body.get("sender")
        if not sender:
            return 200, {"errcode": 40003, "errmsg": "sender required for group"}
        chats = body["chat_id_list"]
        if any(state.wecom_groups.get(c) != sender for c in chats):
            return 200, {"errcode": 84061, "errmsg": "not the owner of the chat"}
        state.wecom_tasks[msgid] = WeComTask("group", chats, [sender], **_task_content(body))
        return 200, {"errcode": 0, "errmsg": "ok", "msgid": msgid}
    return 200, {"errcode": 40058, "errmsg": "invalid chat_type"}


def _task_content(body: dict[str, Any]) -> dict[str, Any]:
    return {
        "text": body.get("text"),
        "attachments": list(body.get("attachments") or []),
        "create_time": int(time.time()),
    }


def wecom_get_groupmsg_list(state: VendorState, req: Recorded) -> tuple[int, Any]:
    """Mass messages created in [start_time, end_time] (at most a month apart).
    Like WeCom, API-created (企业发表) ones carry no ``creator``."""
    if bad := _token_check(state.wecom_tokens, req, unknown_code=40014):
        return bad
    body = req.json()
    start, end = body.get("start_time"), body.get("end_time")
    if not isinstance(start, int) or not isinstance(end, int) or not 0 <= end - start <= 31 * 86400:
        return 200, {"errcode": 40058, "errmsg": "invalid start_time/end_time"}
    filter_type = body.get("filter_type", 2)
    items = [
        {
            "msgid": msgid,
            "create_type": task.create_type,
            "create_time": task.create_time,
            **({"text": task.text} if task.text else {}),
            **({"attachments": task.attachments} if task.attachments else {}),
        }
        for msgid, task in state.wecom_tasks.items()
        if task.chat_type == body.get("chat_type", "single")
        and start <= task.create_time <= end
        and (filter_type == 2 or task.create_type == filter_type)
    ]
    limit = body.get("limit", 50)
    size = min(state.wecom_page_size, limit if 1 <= limit <= 100 else 50)
    page, cursor = _page(items, body.get("cursor", ""), size)
    return 200, {"errcode": 0, "errmsg": "ok", "next_cursor": cursor, "group_msg_list": page}


def _page(items: list[dict[str, Any]], cursor: str, size: int) -> tuple[list[dict[str, Any]], str]:
    start = int(cursor or 0)
    end = start + size
    return items[start:end], (str(end) if end < len(items) else "")


def wecom_get_task(state: VendorState, req: Recorded) -> tuple[int, Any]:
    if bad := _token_check(state.wecom_tokens, req, unknown_code=40014):
        return bad
    body = req.json()
    task = state.wecom_tasks.get(body["msgid"])
    if task is None:
        return 200, {"errcode": 41063, "errmsg": "msgid not found"}
    items = [
        {"userid": s, "status": 2 if s in task.sent_by else 0, "send_time": int(time.time())} for s in task.senders
    ]
    page, cursor = _page(items, body.get("cursor", ""), min(state.wecom_page_size, body.get("limit", 500)))
    return 200, {"errcode": 0, "errmsg": "ok", "next_cursor": cursor, "task_list": page}


def wecom_get_send_result(state: VendorState, req: Recorded) -> tuple[int, Any]:
    if bad := _token_check(state.wecom_tokens, req, unknown_code=40014):
        return bad
    body = req.json()
    task = state.wecom_tasks.get(body["msgid"])
    if task is None:
        return 200, {"errcode": 41063, "errmsg": "msgid not found"}
    userid = body["userid"]
    status = task.sent_by.get(userid, 0)
    id_key = "external_userid" if task.chat_type == "single" else "chat_id"
    items = [{id_key: r, "userid": userid, "status": status, "send_time": 0} for r in task.recipients]
    page, cursor = _page(items, body.get("cursor", ""), min(state.wecom_page_size, body.get("limit", 500)))
    return 200, {"errcode": 0, "errmsg": "ok", "next_cursor": cursor, "send_list": page}


def wecom_message_send(state: VendorState, req: Recorded) -> tuple[int, Any]:
    if bad := _token_check(state.wecom_app_tokens, req, unknown_code=40014):
        return bad
    body = req.json()
    users = body["touser"].split("|")
    invalid = [u for u in users if u not in state.wecom_members]
    return 200, {"errcode": 0, "errmsg": "ok", "invaliduser": "|".join(invalid), "msgid": f"app{next(state.ids)}"}


# -- wechat --------------------------------------------------------------------


def _wechat_issuer(state: VendorState, appid: str | None, secret: str | None) -> TokenIssuer | dict[str, Any]:
    if appid == WECHAT_APP_ID and secret == WECHAT_SECRET:
        return state.oa_tokens
    if appid == MP_APP_ID and secret == MP_SECRET:
        return state.mp_tokens
    if appid not in (WECHAT_APP_ID, MP_APP_ID):
        return {"errcode": 40013, "errmsg": "invalid appid"}
    return {"errcode": 40001, "errmsg": "invalid credential, access_token is invalid or not latest"}


def wechat_token(state: VendorState, req: Recorded) -> tuple[int, Any]:
    if req.query.get("grant_type") != "client_credential":
        return 200, {"errcode": 40002, "errmsg": "invalid grant_type"}
    issuer = _wechat_issuer(state, req.query.get("appid"), req.query.get("secret"))
    if isinstance(issuer, dict):
        return 200, issuer
    return 200, issuer.issue()


def wechat_stable_token(state: VendorState, req: Recorded) -> tuple[int, Any]:
    body = req.json()
    issuer = _wechat_issuer(state, body.get("appid"), body.get("secret"))
    if isinstance(issuer, dict):
        return 200, issuer
    if issuer.stable is None or body.get("force_refresh"):
        issuer.stable = issuer.issue()["access_token"]
        issuer.valid = {issuer.stable}
    else:
        issuer.issued += 1
    return 200, {"access_token": issuer.stable, "expires_in": issuer.expires_in}


def wechat_template_send(state: VendorState, req: Recorded) -> tuple[int, Any]:
    if bad := _token_check(state.oa_tokens, req, unknown_code=40001):
        return bad
    body = req.json()
    if body["template_id"] not in state.oa_templates:
        return 200, {"errcode": 40037, "errmsg": "invalid template_id"}
    if body["touser"] not in state.oa_subscribers:
        return 200, {"errcode": 43004, "errmsg": "require subscribe"}
    key = (body["touser"], body.get("client_msg_id") or f"none-{next(state.ids)}")
    if key not in state.oa_delivered:
        state.oa_delivered[key] = 200000 + next(state.ids)
    return 200, {"errcode": 0, "errmsg": "ok", "msgid": state.oa_delivered[key]}


def wechat_subscribe_send(state: VendorState, req: Recorded) -> tuple[int, Any]:
    if bad := _token_check(state.mp_tokens, req, unknown_code=40001):
        return bad
    body = req.json()
    if state.mp_grants[body["touser"]] <= 0:
        return 200, {"errcode": 43101, "errmsg": "user refuse to accept the msg"}
    if not all(isinstance(v, dict) and "value" in v for v in body["data"].values()):
        return 200, {"errcode": 47003, "errmsg": "argument invalid! data.thing1.value invalid"}
    state.mp_grants[body["touser"]] -= 1
    return 200, {"errcode": 0, "errmsg": "ok", "msgid": 300000 + next(state.ids)}


# -- push ----------------------------------------------------------------------


def push(state: VendorState, req: Recorded) -> tuple[int, Any]:
    if req.headers.get("authorization") != f"Bearer {PUSH_API_KEY}":
        return 401, {"error": "unauthorized"}
    body = req.json()
    if body["app_user_id"] not in state.push_users:
        return 404, {"error": "unknown app user"}
    key = req.headers["idempotency-key"]
    if key not in state.push_seen:
        state.push_seen[key] = f"push-{next(state.ids)}"
    return 200, {"message_id": state.push_seen[key]}


ROUTES: dict[str, Handler] = {
    "/hook": webhook,
    "/hook/reject": webhook_reject,
    "/wecom/cgi-bin/gettoken": wecom_gettoken,
    "/wecom/cgi-bin/externalcontact/add_msg_template": wecom_add_msg_template,
    "/wecom/cgi-bin/externalcontact/get_groupmsg_list_v2": wecom_get_groupmsg_list,
    "/wecom/cgi-bin/externalcontact/get_groupmsg_task": wecom_get_task,
    "/wecom/cgi-bin/externalcontact/get_groupmsg_send_result": wecom_get_send_result,
    "/wecom/cgi-bin/message/send": wecom_message_send,
    "/wechat/cgi-bin/token": wechat_token,
    "/wechat/cgi-bin/stable_token": wechat_stable_token,
    "/wechat/cgi-bin/message/template/send": wechat_template_send,
    "/wechat/cgi-bin/message/subscribe/send": wechat_subscribe_send,
    "/aliyun/": aliyun,
    "/push/push/send": push,
}


class VendorServer:
    """The fake vendors on a random local port, in a thread with its own loop."""

    def __init__(self) -> None:
        self.state = VendorState()
        app = Starlette(routes=[Route("/{path:path}", self._handle, methods=["GET", "POST"])])
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._sock.getsockname()[1]}"
        self._server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [self._sock]}, daemon=True)

    def start(self) -> VendorServer:
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("fake vendor server did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)

    def reset(self) -> VendorState:
        self.state = VendorState()
        return self.state

    async def _handle(self, request: Request) -> Response:
        state = self.state
        rec = Recorded(
            method=request.method,
            path=request.url.path,
            query=dict(request.query_params),
            headers={k.lower(): v for k, v in request.headers.items()},
            body=await request.body(),
        )
        state.requests.append(rec)
        handler = ROUTES.get(rec.path)
        script = state.scripts[script_key(rec)] or state.scripts[rec.path]
        if script:
            canned = script.popleft()
            if canned.process and handler is not None:
                status, payload = handler(state, rec)  # accepted and recorded before the answer is lost
                await asyncio.sleep(canned.delay_s)
                return JSONResponse(payload, status_code=status)
            if canned.delay_s:
                await asyncio.sleep(canned.delay_s)
            if isinstance(canned.payload, str):
                return Response(canned.payload, status_code=canned.status)
            return JSONResponse(canned.payload, status_code=canned.status)
        if handler is None:
            return JSONResponse({"error": f"no route {rec.path}"}, status_code=404)
        status, payload = handler(state, rec)
        return JSONResponse(payload, status_code=status)


def script_key(rec: Recorded) -> str:
    """Scripts for Aliyun can name the action (``/aliyun/#QuerySendDetails``):
    every action shares one path."""
    if rec.path == "/aliyun/" and rec.method == "POST":
        return f"{rec.path}#{rec.form().get('Action', '')}"
    return rec.path


def live_config(base_url: str, *, smtp_port: int | None = None, **overrides: Any) -> Any:
    """A ``ChannelsConfig`` with every channel pointed at this fake server."""
    from engine.channels import ChannelsConfig

    raw: dict[str, Any] = {
        "webhook": {"url": f"{base_url}/hook", "secret": WEBHOOK_SECRET, "timeout_s": 2},
        "email": {"host": "127.0.0.1", "port": smtp_port or 1, "from_addr": "crm@shop.example", "timeout_s": 5},
        "wecom": {"base_url": f"{base_url}/wecom", "corp_id": WECOM_CORP_ID, "corp_secret": WECOM_SECRET},
        "sms": {
            "base_url": f"{base_url}/aliyun",
            "access_key_id": ALIYUN_KEY_ID,
            "access_key_secret": ALIYUN_KEY_SECRET,
            "sign_name": "好店",
            "templates": {"welcome": "SMS_100001"},
        },
        "push": {"base_url": f"{base_url}/push", "api_key": PUSH_API_KEY},
        "official_account": {
            "base_url": f"{base_url}/wechat",
            "app_id": WECHAT_APP_ID,
            "app_secret": WECHAT_SECRET,
            "templates": {"welcome": "TPL-OA-1"},
        },
        "miniprogram": {
            "base_url": f"{base_url}/wechat",
            "app_id": MP_APP_ID,
            "app_secret": MP_SECRET,
            "templates": {"welcome": "TPL-MP-1"},
        },
    }
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(raw.get(key), dict):
            raw[key] = {**raw[key], **value}
        else:
            raw[key] = value
    return ChannelsConfig.model_validate(raw)
