"""The console's channel-codes page: every code with its QR, its tags and
its numbers (scans, new contacts, new users, conversions), grouped so the
variants of one card or poster campaign sit side by side; operators create
and archive codes there (the page's script calls ``/v1/channel-codes``).

A page of its own module with its own router (registered in
``api.routes``), so the codes stay out of ``api.console.pages``. The QR
image has a console route too: an ``<img>`` carries the key cookie but not
the console header the ``/v1`` route would need.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, Response

from api.console import auth
from api.console.pages import _not_found, _page
from api.deps import SettingsDep, StoreDep
from engine import channel_codes
from engine.channel_codes import CodeError, CodeInfo, Numbers

router = APIRouter(prefix="/console", include_in_schema=False)


@dataclass(frozen=True)
class Row:
    code: CodeInfo
    numbers: Numbers


@dataclass(frozen=True)
class Group:
    name: str | None
    rows: list[Row]


def grouped(codes: list[CodeInfo], numbers: dict[str, Numbers]) -> list[Group]:
    """Codes by their group (named groups first, in name order; ungrouped
    last), each group's codes by scans, most first: the A/B reading."""
    by: dict[str | None, list[Row]] = {}
    for code in codes:
        by.setdefault(code.group, []).append(Row(code, numbers.get(code.id) or Numbers()))
    names = sorted(g for g in by if g is not None) + ([None] if None in by else [])
    return [Group(g, sorted(by[g], key=lambda r: (-r.numbers.scans, r.code.placement))) for g in names]


@router.get("/channel-codes", response_class=HTMLResponse)
async def channel_codes_page(
    request: Request, store: StoreDep, settings: SettingsDep, archived: bool = False
) -> Response:
    principal = auth.page_principal(request)
    if principal is None:
        return auth.login_redirect(request)
    codes = await asyncio.to_thread(channel_codes.listing, store, archived=archived)
    numbers = await asyncio.to_thread(
        channel_codes.numbers, store, settings.derived.payment_events, code_ids=[c.id for c in codes]
    )
    return _page(
        request,
        "channel_codes.html",
        principal,
        active="channel_codes",
        groups=grouped(codes, numbers),
        archived=archived,
        wecom_ready=settings.channels.wecom.configured,
        oa_ready=settings.channels.official_account.configured,
    )


@router.get("/channel-codes/{code_id}/qr.png")
async def channel_code_qr(
    request: Request,
    code_id: str,
    store: StoreDep,
    settings: SettingsDep,
    scale: Annotated[int, Query(ge=1, le=40)] = 6,
) -> Response:
    principal = auth.page_principal(request)
    if principal is None:
        return Response("sign in", status_code=401, media_type="text/plain")
    code = await asyncio.to_thread(channel_codes.get, store, code_id)
    if code is None:
        return _not_found(request, principal, f"No channel code {code_id!r}.")
    try:
        data, kind = await channel_codes.qr_image(store, settings.channels, code, scale=scale)
    except CodeError as exc:
        return Response(str(exc), status_code=409 if exc.kind == "creating" else 502, media_type="text/plain")
    return Response(data, media_type=kind, headers={"Cache-Control": "private, max-age=3600"})
