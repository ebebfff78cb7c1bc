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
browser deploy or stop anything (CSRF). ``api.deps.cookie_key`` is that rule,
the last fallback when no ``Authorization``/``X-API-Key`` header is present.

Sign-in itself is guarded too (login CSRF: another site's form could sign a
victim in with the *attacker's* key, and whatever the victim then types lands
in the attacker's account). ``LoginOriginGuard`` refuses a POST to the
sign-in or sign-out form whose ``Origin`` (or, without one, ``Referer``)
names another site than the ``Host`` it was sent to, with a 403 page.
Browsers send ``Origin`` on every cross-site form POST; a request with
neither header (curl, scripts) is not a browser acting for someone else, and
is let through.
"""

from __future__ import annotations

from html import escape
from urllib.parse import quote, urlsplit

from fastapi import Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

from api.deps import COOKIE_NAME, Principal, resolve_api_key

COOKIE_MAX_AGE = 12 * 3600  # a working day; then sign in again
LOGIN_PATH = "/console/login"
LOGOUT_PATH = "/console/logout"
GUARDED_FORMS = (LOGIN_PATH, LOGOUT_PATH)


def page_principal(request: Request) -> Principal | None:
    """Who is looking at a console page (top-level navigation carries the
    cookie but no custom header; pages only read, so that is safe). Write
    keys are refused: they may send events and nothing else."""
    key = request.cookies.get(COOKIE_NAME, "").strip()
    if not key:
        return None
    principal = resolve_api_key(request, key)
    if principal is None or principal.kind != "api":
        return None
    return principal


def safe_next(target: str | None) -> str:
    """Only ever redirect back into the console or the API docs (no open redirect)."""
    if target == "/docs":
        return target
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


def cross_site_origin(headers: dict[str, str]) -> str | None:
    """The foreign origin a form POST came from, or None when it is this
    site's own (``Origin``/``Referer`` host equal to ``Host``) or unknown
    (neither header: not a browser)."""
    host = headers.get("host", "").strip().lower()
    origin = headers.get("origin")
    if origin is None:
        referer = headers.get("referer")
        if not referer:
            return None
        origin = referer
    origin = origin.strip()
    if origin.lower() == "null":  # sandboxed frames, data: URLs: never ours
        return "null"
    parts = urlsplit(origin)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return origin[:200]
    return None if parts.netloc.lower() == host else f"{parts.scheme}://{parts.netloc}"[:200]


def cross_site_page(origin: str) -> HTMLResponse:
    body = (
        "<!doctype html><meta charset=utf-8><title>Sign-in refused</title>"
        "<h1>Sign-in refused</h1>"
        f"<p>This sign-in form was sent from another site ({escape(origin)}), not from this console. "
        f'Another site cannot sign you in or out. <a href="{LOGIN_PATH}">Sign in here</a> instead.</p>'
    )
    return HTMLResponse(body, status_code=403)


class LoginOriginGuard:
    """ASGI middleware: the cross-site check above, for the sign-in and
    sign-out form POSTs only."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope.get("method") == "POST" and scope.get("path") in GUARDED_FORMS:
            headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
            origin = cross_site_origin(headers)
            if origin is not None:
                await cross_site_page(origin)(scope, receive, send)
                return
        await self.app(scope, receive, send)
