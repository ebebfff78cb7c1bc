"""The OpenAPI description says what is sent: every error answer is
``application/problem+json`` with the ``ProblemOut`` schema.

FastAPI documents error responses as ``application/json`` (and 422 with its
own ``HTTPValidationError`` shape), while ``api.problems`` answers every error
as a problem document. Rather than repeat ``responses=`` on every route, the
generated description is rewritten once: each 4xx/5xx response of each
operation gets the problem media type and schema, and the errors any route can
answer whatever it does (a body over the limit, an encoding we do not take,
Temporal or the database not reachable yet) are listed on every operation.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from api.problems import PROBLEM_JSON

PROBLEM_REF = {"$ref": "#/components/schemas/ProblemOut"}

# Answered by the request plumbing before (or besides) any route's own logic.
EVERY_ROUTE: dict[str, str] = {
    "400": "Malformed request (JSON, compression, or invalid Unicode such as a lone surrogate)",
    "413": "Request body larger than `max_body_bytes` (raw or decompressed); `limit_bytes` names the limit",
    "415": "Content-Encoding other than gzip or deflate",
    "422": "Invalid input (field errors in `errors`)",
    "503": "The database or Temporal is not reachable right now; retry",
}
_FASTAPI_ONLY = ("HTTPValidationError", "ValidationError")


def _problem_content() -> dict[str, Any]:
    return {PROBLEM_JSON: {"schema": PROBLEM_REF}}


def problem_responses(schema: dict[str, Any]) -> dict[str, Any]:
    """Rewrite (in place, and return) a generated description as above."""
    for item in schema.get("paths", {}).values():
        for method, operation in item.items():
            if method not in ("get", "put", "post", "delete", "patch", "head", "options"):
                continue
            responses: dict[str, Any] = operation.setdefault("responses", {})
            for status, description in EVERY_ROUTE.items():
                responses.setdefault(status, {"description": description})
            for status, response in responses.items():
                if status == "default" or status[:1] in ("4", "5"):
                    response["content"] = _problem_content()
    components = schema.get("components", {}).get("schemas", {})
    text = repr(schema.get("paths", {}))
    for name in _FASTAPI_ONLY:
        if name in components and f"#/components/schemas/{name}'" not in text:
            del components[name]
    return schema


def install(app: FastAPI) -> None:
    """``app.openapi()`` returns the rewritten description (built once)."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(
                title=app.title,
                version=app.version,
                description=app.description,
                routes=app.routes,
                tags=app.openapi_tags,
                servers=app.servers,
            )
            app.openapi_schema = problem_responses(schema)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
