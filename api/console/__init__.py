"""The operators' console, served by the API app under ``/console``.

``router`` is appended to ``api.routes.ROUTERS`` like any API area. Sign-in
and how the pages' scripts reach ``/v1`` are in ``api.console.auth``; the
pages in ``api.console.pages``; what they add to engine reads (labels,
badges, the node panel) in ``api.console.view``.
"""

from __future__ import annotations

from api.console.pages import router

__all__ = ["router"]
