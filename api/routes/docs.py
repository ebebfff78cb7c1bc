"""The API's own documentation, behind a key like every route but health.

``/openapi.json`` and the Swagger UI at ``/docs`` answer an API key of any
role (``Authorization: Bearer`` or ``X-API-Key``) or a signed-in console
cookie; reading them changes nothing, so the cookie needs no CSRF header here
(and another site cannot read the answer: no CORS). Without either, ``/docs``
sends the browser to the console sign-in and comes back; ``/openapi.json``
answers 401. Write keys are refused: they may send events and nothing else.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse

from api.console.auth import LOGIN_PATH, page_principal
from api.deps import Principal, presented_key, resolve_api_key
from api.problems import Problem

router = APIRouter(include_in_schema=False)
OPENAPI_PATH = "/openapi.json"
DOCS_PATH = "/docs"


def docs_reader(request: Request) -> Principal | None:
    key = presented_key(request)
    principal = resolve_api_key(request, key) if key else page_principal(request)
    return principal if principal is not None and principal.kind == "api" else None


@router.get(OPENAPI_PATH)
async def openapi(request: Request) -> JSONResponse:
    if docs_reader(request) is None:
        raise Problem(401, "an API key is required to read the API description (Authorization: Bearer <key>)")
    return JSONResponse(request.app.openapi())


@router.get(DOCS_PATH, response_model=None)
async def docs(request: Request) -> HTMLResponse | RedirectResponse:
    if docs_reader(request) is None:
        return RedirectResponse(f"{LOGIN_PATH}?next={DOCS_PATH}", status_code=303)
    return get_swagger_ui_html(openapi_url=OPENAPI_PATH, title="journeys API")
