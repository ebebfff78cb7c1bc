"""The console's pages: server-rendered HTML, live bits done by small scripts.

Every page is complete without JavaScript (the list, the diagram with the
numbers as of rendering, the user's timeline); the scripts in ``static/``
make the numbers live, open a node's panel, re-check the editor's text and
call the ``/v1`` API for actions. Pages authenticate with the key cookie
(``api.console.auth``); without one they redirect to the sign-in form.
"""

from __future__ import annotations

import asyncio
import base64
import logging
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import parse_qs

from fastapi import APIRouter, Query, Request
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from temporalio.client import Client

from api.console import auth, view
from api.deps import CONSOLE_HEADER, CacheDep, OptionalClientDep, Principal, StoreDep, resolve_api_key
from dsl.ir import Journey
from dsl.render import to_svg
from engine import api_keys, catalog, lifecycle, queries, run_pages, split_tests, views, visibility
from engine.catalog import JourneyInfo
from engine.journey_cache import JourneyCache

log = logging.getLogger("journeys.console")

HERE = Path(__file__).resolve().parent
STATIC = HERE / "static"
STATIC_TYPES = {".css": "text/css; charset=utf-8", ".js": "text/javascript; charset=utf-8", ".svg": "image/svg+xml"}
STARTER = """journey "新用户欢迎"
  description "注册后发欢迎语，一天后提醒首单"
  entry event signed_up
  reentry once
  goal event order_paid within 7d

  send wecom "welcome"
  wait 1d
  send sms "first_order_reminder"
"""

templates = Jinja2Templates(directory=str(HERE / "templates"))
# the buttons a journey shows are the moves its lifecycle allows from its status
templates.env.globals["moves"] = lambda status: lifecycle.TRANSITIONS.get(status, frozenset())
LIST_REFRESH_MS = 5000  # the journeys list refreshes its numbers in place this often
router = APIRouter(prefix="/console", include_in_schema=False)


def _page(request: Request, template: str, principal: Principal | None, **context: Any) -> HTMLResponse:
    context.update(
        principal=principal,
        can_operate=bool(principal and principal.can("operator")),
        console_header=CONSOLE_HEADER,
    )
    response = templates.TemplateResponse(request, template, context)
    response.headers["Cache-Control"] = "no-store"
    response.headers["X-Frame-Options"] = "DENY"
    return response


# ---------------------------------------------------------------- sign-in


@router.get("", response_class=RedirectResponse)
@router.get("/", response_class=RedirectResponse)
async def home() -> RedirectResponse:
    return RedirectResponse("/console/journeys", status_code=303)


@router.get("/login", response_class=HTMLResponse)
async def login_form(request: Request, next: str | None = None) -> HTMLResponse:
    return _page(request, "login.html", None, next=auth.safe_next(next), error=None)


@router.post("/login", response_class=HTMLResponse)
async def login(request: Request) -> Response:
    # A plain urlencoded form, parsed by hand: no python-multipart needed.
    form = parse_qs((await request.body()).decode("utf-8", "replace"), keep_blank_values=True)
    key = (form.get("key") or [""])[0].strip()
    target = auth.safe_next((form.get("next") or [None])[0])
    principal = resolve_api_key(request, key) if key else None
    if principal is None or principal.kind != "api":
        error = "That key is not an API key of this service." if key else "Enter your API key."
        if principal is not None and principal.kind == "write":
            error = "That is a write key (events only); sign in with an API key."
        response = _page(request, "login.html", None, next=target, error=error)
        response.status_code = 401
        return response
    response = RedirectResponse(target, status_code=303)
    auth.set_key_cookie(response, key, secure=request.url.scheme == "https")
    return response


@router.post("/logout")
async def logout() -> RedirectResponse:
    response = RedirectResponse(auth.LOGIN_PATH, status_code=303)
    auth.clear_key_cookie(response)
    return response


@router.get("/static/{name}")
async def static(name: str) -> Response:
    path = (STATIC / name).resolve()
    if path.parent != STATIC or path.suffix not in STATIC_TYPES or not path.is_file():
        return Response("not found", status_code=404, media_type="text/plain")
    return FileResponse(path, media_type=STATIC_TYPES[path.suffix], headers={"Cache-Control": "no-cache"})


# ---------------------------------------------------------------- journeys


@router.get("/journeys", response_class=HTMLResponse)
async def journeys(request: Request, store: StoreDep, archived: bool = False) -> Response:
    principal = auth.page_principal(request)
    if principal is None:
        return auth.login_redirect(request)
    rows = await asyncio.to_thread(views.journey_rows, store, archived)
    return _page(request, "journeys.html", principal, rows=rows, archived=archived, refresh_ms=LIST_REFRESH_MS)


async def _drawn(cache: JourneyCache, info: JourneyInfo, version: int | None) -> Journey | None:
    """The IR the journey page draws: that version's, or the current one's;
    None when there is no such version (or none deployed)."""
    deployed = await asyncio.to_thread(cache.pinned, info, version)
    return deployed.ir if deployed else None


@router.get("/journeys/{journey_id}", response_class=HTMLResponse)
async def journey(
    request: Request,
    journey_id: str,
    store: StoreDep,
    cache: CacheDep,
    version: Annotated[int | None, Query(ge=1, le=1_000_000)] = None,
    per_entry: Annotated[str | None, Query(max_length=128, pattern=r"^[A-Za-z_][A-Za-z0-9_.:-]*$")] = None,
) -> Response:
    """The journey's diagram with live numbers: of every version together,
    or (``?version=N``) of one version, drawn as that version was."""
    principal = auth.page_principal(request)
    if principal is None:
        return auth.login_redirect(request)
    info = await asyncio.to_thread(queries.get_journey, store, journey_id)
    if info is None:
        return _not_found(request, principal, f"No journey {journey_id!r}.")
    drawn = await _drawn(cache, info, version)
    if version is not None and drawn is None:
        return _not_found(request, principal, f"Journey {journey_id!r} has no version {version}.")
    svg = None
    if drawn is not None:
        svg = await asyncio.to_thread(to_svg, drawn, view.zero_counts(drawn))
    versions = await asyncio.to_thread(catalog.list_versions, store, journey_id)
    return _page(
        request,
        "journey.html",
        principal,
        journey=info,
        svg=svg,
        versions=list(reversed(versions)),
        selected_version=version,
        per_entry=per_entry,
        panel_limit=view.PANEL_LIMIT,  # the node panel's page of who waits / of deliveries
    )


@router.get("/journeys/{journey_id}/nodes/{node_id}")
async def node_panel(
    request: Request,
    journey_id: str,
    node_id: str,
    store: StoreDep,
    cache: CacheDep,
    client: OptionalClientDep,
    version: Annotated[int | None, Query(ge=1, le=1_000_000)] = None,
    limit: Annotated[int, Query(ge=1, le=view.PANEL_MAX)] = view.PANEL_LIMIT,
    waiting_cursor: Annotated[str | None, Query(min_length=1, max_length=4000)] = None,
    deliveries_cursor: Annotated[str | None, Query(min_length=1, max_length=1000)] = None,
) -> Response:
    """JSON for the panel beside the diagram: who waits at the node now, and
    its latest deliveries with their status and reason (of one version if
    given, like the page's numbers). Both lists come a page (``limit``, at
    most ``view.PANEL_MAX``) at a time, the next page by ``waiting_next`` /
    ``deliveries_next``: a node 100k runs wait at is never listed whole."""
    principal = auth.page_principal(request)
    if principal is None:
        return JSONResponse({"detail": "sign in again"}, status_code=401)
    try:
        waiting_at = run_pages.decode_cursor(waiting_cursor)
        store_cursor = run_pages.run_cursor(waiting_at) if waiting_at and "temporal" not in waiting_at else None
        delivery_cursor = _delivery_cursor(run_pages.decode_cursor(deliveries_cursor))
    except ValueError as exc:
        return JSONResponse({"detail": f"bad cursor: {exc}"}, status_code=422)
    info = await asyncio.to_thread(queries.get_journey, store, journey_id)
    if info is None:
        return JSONResponse({"detail": f"no journey {journey_id!r}"}, status_code=404)
    drawn = await _drawn(cache, info, version)
    labels = view.node_labels(drawn) if drawn else {}
    panel = view.NodePanel(journey_id, node_id, labels.get(node_id, node_id), "store")
    step = views.stats_node_id(node_id)
    if store_cursor is None:
        await _waiting_from_temporal(panel, client, step, limit, version, waiting_at)
    if panel.waiting_source == "store":
        found = await asyncio.to_thread(
            run_pages.waiting_users, store, journey_id, step, limit=limit, cursor=store_cursor, version=version
        )
        panel.waiting, panel.waiting_next = found.users, found.next_cursor
    sends = await asyncio.to_thread(
        run_pages.node_deliveries, store, journey_id, step, limit=limit, cursor=delivery_cursor, version=version
    )
    panel.deliveries = sends.deliveries
    if sends.next_cursor is not None:
        at, last_id = sends.next_cursor
        panel.deliveries_next = run_pages.encode_cursor({"at": at.isoformat(), "id": last_id})
    numbers = await asyncio.to_thread(views.node_stats, store, journey_id, node_id, version)
    panel.outcomes, panel.failed = dict(numbers.outcomes), numbers.failed
    panel.can_replay = panel.can_operate = principal.can("operator")
    minimum = request.app.state.settings.split_test_min_per_variant
    tests = await asyncio.to_thread(split_tests.overview, store, journey_id, version, minimum)
    found_test = next((t for t in tests if t.node_id == node_id), None)
    panel.split_test = found_test.as_json() if found_test is not None else None
    return JSONResponse(panel.as_json(), headers={"Cache-Control": "no-store"})


def _delivery_cursor(value: dict[str, Any] | None) -> tuple[datetime, str] | None:
    """The deliveries page cursor ``(at, id)``; ValueError if it is not one."""
    if value is None:
        return None
    at, last_id = value.get("at"), value.get("id")
    if not isinstance(at, str) or not isinstance(last_id, str):
        raise ValueError("not a deliveries cursor")
    return datetime.fromisoformat(at), last_id  # ValueError when it is no time


async def _waiting_from_temporal(
    panel: view.NodePanel,
    client: Client | None,
    step: str,
    limit: int,
    version: int | None,
    cursor: dict[str, Any] | None,
) -> None:
    """Who waits at the step now, a page from Temporal visibility (its own
    page token in the cursor); left to the store when Temporal cannot say."""
    if client is None:
        return
    token_text = cursor.get("temporal") if cursor else None
    try:
        token = base64.urlsafe_b64decode(token_text) if isinstance(token_text, str) else None
        users, following = await visibility.waiting_page(client, panel.journey_id, step, limit, version, token)
    except Exception:  # noqa: BLE001 - the store still knows roughly who waits
        log.warning("visibility listing failed for %s/%s", panel.journey_id, step, exc_info=True)
        return
    panel.waiting, panel.waiting_source = users, "temporal"
    if following:
        panel.waiting_next = run_pages.encode_cursor({"temporal": base64.urlsafe_b64encode(following).decode()})


# ---------------------------------------------------------------- editor


@router.get("/editor", response_class=HTMLResponse)
async def editor(request: Request, store: StoreDep, journey: str | None = None) -> Response:
    principal = auth.page_principal(request)
    if principal is None:
        return auth.login_redirect(request)
    source, journey_id, name = STARTER, None, None
    if journey:
        version = await asyncio.to_thread(catalog.get_version, store, journey)
        if version is None:
            return _not_found(request, principal, f"No deployed journey {journey!r}.")
        source, journey_id = version.source, journey
        info = await asyncio.to_thread(queries.get_journey, store, journey)
        name = info.name if info else journey
    return _page(request, "editor.html", principal, source=source, journey_id=journey_id, name=name)


@router.get("/keys", response_class=HTMLResponse)
async def keys(request: Request, store: StoreDep) -> Response:
    """Admins make and revoke API keys here (``/v1/keys``)."""
    principal = auth.page_principal(request)
    if principal is None:
        return auth.login_redirect(request)
    if not principal.can("admin"):
        refused = _not_found(request, principal, "Only admins manage keys.")
        refused.status_code = 403
        return refused
    made = await asyncio.to_thread(api_keys.listing, store)
    return _page(request, "keys.html", principal, keys=list(reversed(made)))


def _not_found(request: Request, principal: Principal, message: str) -> HTMLResponse:
    response = _page(request, "not_found.html", principal, message=message)
    response.status_code = 404
    return response
