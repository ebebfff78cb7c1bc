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
"""

from __future__ import annotations

from urllib.parse import quote

from fastapi import Request
from fastapi.responses import RedirectResponse, Response

from api.deps import COOKIE_NAME, Principal, resolve_api_key

COOKIE_MAX_AGE = 12 * 3600  # a working day; then sign in again
LOGIN_PATH = "/console/login"


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
