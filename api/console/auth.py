"""Console sign-in: the operator's API key kept in an HttpOnly cookie.

The console has no users of its own: signing in means pasting an API key
(the same keys and roles as the API, ``JOURNEYS_API_KEYS``). The key goes
into a cookie the page's JavaScript cannot read (``HttpOnly``), sent only to
this site (``SameSite=Strict``), so a script injected into a page cannot
steal it.

The pages' JavaScript calls the ``/v1`` API with that cookie. The API honours
the cookie only together with the ``X-Journeys-Console`` header: browsers
never add a custom header to a cross-site request without a CORS preflight
(which this API does not grant), so another site cannot make a signed-in
browser deploy or stop anything (CSRF). ``cookie_key`` is that rule, written
to be called from ``api.deps`` when no ``Authorization``/``X-API-Key`` header
is present; ``CookieAuthMiddleware`` applies the same rule one layer lower,
for an app whose auth dependency does not call it yet.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from http.cookies import SimpleCookie
from typing import Any
from urllib.parse import quote

from fastapi import Request
from fastapi.responses import RedirectResponse, Response

from api.deps import Principal, resolve_api_key
from api.settings import ApiSettings

COOKIE_NAME = "journeys_key"
CONSOLE_HEADER = "X-Journeys-Console"
COOKIE_MAX_AGE = 12 * 3600  # a working day; then sign in again
LOGIN_PATH = "/console/login"


def cookie_key(request: Request) -> str | None:
    """The console cookie's key, if this request may use it (it carries the
    console header). For ``api.deps._presented_key`` as the last fallback."""
    if not request.headers.get(CONSOLE_HEADER):
        return None
    value = request.cookies.get(COOKIE_NAME, "").strip()
    return value or None


def page_principal(request: Request) -> Principal | None:
    """Who is looking at a console page (top-level navigation carries the
    cookie but no custom header; pages only read, so that is safe). Write
    keys are refused: they may send events and nothing else."""
    key = request.cookies.get(COOKIE_NAME, "").strip()
    if not key:
        return None
    settings: ApiSettings = request.app.state.settings
    principal = resolve_api_key(settings, key)
    if principal is None or principal.kind != "api":
        return None
    return principal


def safe_next(target: str | None) -> str:
    """Only ever redirect back into the console (no open redirect)."""
    if target and target.startswith("/console") and not target.startswith("//") and "\\" not in target:
        return target
    return "/console/journeys"


def login_redirect(request: Request) -> RedirectResponse:
    here = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return RedirectResponse(f"{LOGIN_PATH}?next={quote(here, safe='')}", status_code=303)


def set_key_cookie(response: Response, key: str, *, secure: bool) -> None:
    response.set_cookie(
        COOKIE_NAME,
        key,
        max_age=COOKIE_MAX_AGE,
        path="/",
        httponly=True,
        samesite="strict",
        secure=secure,
    )


def clear_key_cookie(response: Response) -> None:
    response.delete_cookie(COOKIE_NAME, path="/", httponly=True, samesite="strict")


Scope = MutableMapping[str, Any]
ASGIApp = Callable[[Scope, Callable[[], Awaitable[Any]], Callable[[Any], Awaitable[None]]], Awaitable[None]]


class CookieAuthMiddleware:
    """For ``/v1`` requests with the console header and cookie but no key
    header, present the cookie's key as ``Authorization: Bearer``. Only needed
    while ``api.deps`` does not call ``cookie_key`` itself."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope.get("type") == "http" and str(scope.get("path", "")).startswith("/v1/"):
            headers: list[tuple[bytes, bytes]] = list(scope.get("headers") or [])
            names = {name.lower() for name, _ in headers}
            if CONSOLE_HEADER.lower().encode() in names and not names & {b"authorization", b"x-api-key"}:
                key = _cookie_from(headers)
                if key:
                    scope = dict(scope)
                    scope["headers"] = [*headers, (b"authorization", b"Bearer " + key.encode("utf-8"))]
        await self.app(scope, receive, send)


def _cookie_from(headers: list[tuple[bytes, bytes]]) -> str | None:
    for name, value in headers:
        if name.lower() == b"cookie":
            jar: SimpleCookie = SimpleCookie()
            try:
                jar.load(value.decode("latin-1"))
            except Exception:  # noqa: BLE001 - a malformed cookie header is no key
                return None
            morsel = jar.get(COOKIE_NAME)
            if morsel is not None and morsel.value.strip():
                return morsel.value.strip()
    return None


def deps_accept_cookie() -> bool:
    """Whether ``api.deps`` already presents the console cookie as the key
    (probed with a request that carries only the cookie and the header)."""
    from starlette.requests import Request as StarletteRequest

    from api import deps

    probe = StarletteRequest(
        {
            "type": "http",
            "method": "GET",
            "path": "/v1/probe",
            "headers": [(b"cookie", f"{COOKIE_NAME}=probe".encode()), (CONSOLE_HEADER.lower().encode(), b"1")],
        }
    )
    return deps._presented_key(probe) == "probe"


def ensure_cookie_auth(app: Any) -> None:
    """Let the console's scripts reach ``/v1`` with the cookie: adds
    ``CookieAuthMiddleware`` unless ``api.deps`` does it already. Call before
    the app serves its first request."""
    if not deps_accept_cookie():
        app.add_middleware(CookieAuthMiddleware)
