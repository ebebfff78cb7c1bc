"""The API's routers, mounted in this order by ``api.app.create_app``.

To add an area, write ``api/routes/<area>.py`` with a module-level
``router = APIRouter(...)`` and append its import and name to ``ROUTERS``.
"""

from __future__ import annotations

from fastapi import APIRouter

from api.console import router as console_router
from api.console.channel_codes import router as channel_codes_console_router
from api.console.user_pages import router as user_pages_console_router
from api.routes import (
    audience,
    callbacks,
    channel_codes,
    check,
    docs,
    edit,
    events,
    health,
    journeys,
    keys,
    links,
    metrics,
    pools,
    replays,
    runs,
    splits,
    stats,
    templates,
    users,
)

ROUTERS: list[APIRouter] = [
    health.router,
    journeys.router,
    runs.router,
    stats.router,
    splits.router,
    events.router,
    callbacks.router,
    channel_codes.router,
    users.router,
    templates.router,
    pools.router,
    replays.router,
    metrics.router,
    audience.router,
    check.router,
    edit.router,
    docs.router,
    keys.router,
    links.router,
    console_router,
    channel_codes_console_router,
    user_pages_console_router,
]
