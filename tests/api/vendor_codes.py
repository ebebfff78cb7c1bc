"""A local stand-in for the vendor APIs channel codes call, on uvicorn in a
thread: WeCom's ``gettoken``, ``externalcontact/add_contact_way`` and
``del_contact_way`` (plus the QR picture its ``qr_code`` URL points at),
WeChat's ``cgi-bin/token`` and ``qrcode/create``. It checks what the
documented APIs check and the client depends on — the token, WeCom's
``type`` 1 taking exactly one user, ``scene`` 2, ``state`` at most 30
characters, staff it knows; WeChat's ``QR_LIMIT_STR_SCENE`` with a
``scene_str`` of 1 to 64 characters, one ticket per scene — and records
every request."""

from __future__ import annotations

import io
import itertools
import json
import socket
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import segno
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

CORP_ID = "ww-codes-corp"
CORP_SECRET = "codes-contact-secret"
APP_ID = "wx-codes-oa"
APP_SECRET = "codes-oa-secret"


@dataclass
class Call:
    path: str
    query: dict[str, str]
    body: Any


@dataclass
class CodesVendor:
    staff: set[str] = field(default_factory=lambda: {"zhangsan", "lisi", "wangwu"})
    calls: list[Call] = field(default_factory=list)
    contact_ways: dict[str, dict[str, Any]] = field(default_factory=dict)  # config_id -> body
    tickets: dict[str, str] = field(default_factory=dict)  # scene_str -> ticket
    ids: Any = field(default_factory=lambda: itertools.count(1))
    wecom_token: str = "codes-wecom-tok"
    oa_token: str = "codes-oa-tok"
    url: str = ""

    def called(self, path: str) -> list[Call]:
        return [c for c in self.calls if c.path == path]

    @staticmethod
    def picture(config_id: str) -> bytes:
        out = io.BytesIO()
        segno.make_qr(f"https://work.weixin.qq.com/ca/{config_id}").save(out, kind="png", scale=4)
        return out.getvalue()


def _bad_token(given: str | None, expected: str) -> JSONResponse | None:
    if given != expected:
        return JSONResponse({"errcode": 40014, "errmsg": "invalid access_token"})
    return None


class CodesVendorServer:
    def __init__(self) -> None:
        self.vendor = CodesVendor()
        app = Starlette(routes=[Route("/{path:path}", self._handle, methods=["GET", "POST"])])
        self._sock = socket.socket()
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._sock.getsockname()[1]}"
        self.vendor.url = self.url
        self._server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [self._sock]}, daemon=True)

    def __enter__(self) -> CodesVendorServer:
        self._thread.start()
        for _ in range(500):
            if self._server.started:
                return self
            time.sleep(0.02)
        raise RuntimeError("the vendor stand-in did not start")

    def __exit__(self, *exc: object) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)

    async def _handle(self, request: Request) -> Response:
        v = self.vendor
        raw = await request.body()
        body = json.loads(raw) if raw else None
        query = dict(request.query_params)
        path = "/" + request.path_params["path"]
        v.calls.append(Call(path, query, body))
        token = query.get("access_token")
        if path == "/wecom/cgi-bin/gettoken":
            if query.get("corpid") != CORP_ID or query.get("corpsecret") != CORP_SECRET:
                return JSONResponse({"errcode": 40001, "errmsg": "invalid credential"})
            return JSONResponse({"errcode": 0, "access_token": v.wecom_token, "expires_in": 7200})
        if path == "/wecom/cgi-bin/externalcontact/add_contact_way":
            if bad := _bad_token(token, v.wecom_token):
                return bad
            users = body.get("user") or []
            if body.get("type") not in (1, 2) or (body["type"] == 1 and len(users) != 1) or body.get("scene") != 2:
                return JSONResponse({"errcode": 40058, "errmsg": "invalid type/scene/user"})
            if len(body.get("state", "")) > 30:
                return JSONResponse({"errcode": 40058, "errmsg": "state exceed max length 30"})
            unknown = [u for u in users if u not in v.staff]
            if unknown:
                return JSONResponse({"errcode": 60111, "errmsg": f"invalid userid {unknown[0]}"})
            config_id = f"cfg{next(v.ids):06d}"
            v.contact_ways[config_id] = body
            return JSONResponse(
                {
                    "errcode": 0,
                    "errmsg": "ok",
                    "config_id": config_id,
                    "qr_code": f"{self.url}/pictures/{config_id}.png",
                }
            )
        if path == "/wecom/cgi-bin/externalcontact/del_contact_way":
            if bad := _bad_token(token, v.wecom_token):
                return bad
            if v.contact_ways.pop(body.get("config_id"), None) is None:
                return JSONResponse({"errcode": 41044, "errmsg": "invalid config_id"})
            return JSONResponse({"errcode": 0, "errmsg": "ok"})
        if path.startswith("/pictures/") and path.endswith(".png"):
            config_id = path.removeprefix("/pictures/").removesuffix(".png")
            if config_id not in v.contact_ways:
                return Response(b"gone", status_code=404, media_type="text/plain")
            return Response(v.picture(config_id), media_type="image/png")
        if path == "/wechat/cgi-bin/token":
            if query.get("appid") != APP_ID or query.get("secret") != APP_SECRET:
                return JSONResponse({"errcode": 40013, "errmsg": "invalid appid"})
            return JSONResponse({"access_token": v.oa_token, "expires_in": 7200})
        if path == "/wechat/cgi-bin/qrcode/create":
            if bad := _bad_token(token, v.oa_token):
                return bad
            scene = ((body.get("action_info") or {}).get("scene") or {}).get("scene_str", "")
            if body.get("action_name") != "QR_LIMIT_STR_SCENE" or not 1 <= len(scene) <= 64:
                return JSONResponse({"errcode": 40097, "errmsg": "invalid args"})
            ticket = v.tickets.setdefault(scene, f"gQH{next(v.ids):08d}")
            return JSONResponse({"ticket": ticket, "url": f"http://weixin.qq.com/q/{ticket}"})
        return JSONResponse({"errcode": 404, "errmsg": f"no route {path}"}, status_code=404)
