"""The console's user pages: finding a user by an identifier, and a user's
profile, runs and timeline (paged by ``until``), plus the JSON lookup the
editor's preview uses.

A module of its own with its own router (registered in ``api.routes``), so
the user pages stay out of ``api.console.pages``.
"""

from __future__ import annotations

import asyncio
from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from pydantic import AwareDatetime

from api.console import auth, view
from api.console.pages import _not_found, _page
from api.deps import CacheDep, StoreDep
from engine import queries, views

router = APIRouter(prefix="/console", include_in_schema=False)

# Runs shown on a user's page at once; older ones a page at a time by
# ``runs_until`` (a user can have thousands: a journey entering on every view).
RUNS_PAGE = 50


@router.get("/users", response_class=HTMLResponse)
async def users(request: Request, store: StoreDep, q: str = "") -> Response:
    principal = auth.page_principal(request)
    if principal is None:
        return auth.login_redirect(request)
    matches = await asyncio.to_thread(views.find_users, store, q) if q.strip() else []
    if len(matches) == 1:
        return RedirectResponse(f"/console/users/{matches[0].user_id}", status_code=303)
    return _page(request, "users.html", principal, q=q, matches=matches, searched=bool(q.strip()))


@router.get("/users/{user_id}", response_class=HTMLResponse)
async def user(
    request: Request,
    user_id: str,
    store: StoreDep,
    cache: CacheDep,
    until: Annotated[AwareDatetime | None, Query(description="older page of the timeline")] = None,
    runs_until: Annotated[AwareDatetime | None, Query(description="older page of the runs")] = None,
) -> Response:
    principal = auth.page_principal(request)
    if principal is None:
        return auth.login_redirect(request)
    profile = await asyncio.to_thread(queries.user_profile, store, user_id)
    if profile is None:
        return _not_found(request, principal, f"No user {user_id!r}.")
    runs, older_runs = await asyncio.to_thread(
        queries.user_runs_page, store, profile.id, limit=RUNS_PAGE, until=runs_until
    )
    timeline, older = await asyncio.to_thread(view.user_timeline, store, cache, profile.id, until=until)
    return _page(
        request,
        "user.html",
        principal,
        profile=profile,
        runs=runs,
        timeline=timeline,
        older=older.isoformat() if older else None,
        until=until,
        older_runs=older_runs.isoformat() if older_runs else None,
        runs_until=runs_until,
        q="",
    )


@router.get("/find-users")
async def find_users(request: Request, store: StoreDep, q: str = "") -> Response:
    """JSON for the editor's preview: the users an identifier names."""
    if auth.page_principal(request) is None:
        return JSONResponse({"detail": "sign in again"}, status_code=401)
    matches = await asyncio.to_thread(views.find_users, store, q)
    return JSONResponse([{"user_id": m.user_id, "kind": m.kind, "value": m.value} for m in matches])
