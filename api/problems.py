"""RFC 7807 problem details for every error the API answers.

One shape for everything (``application/problem+json``): ``type``, ``title``,
``status``, ``detail`` and, when there are several things wrong, ``errors`` —
each ``{code, severity, message, line, column, hint, field}``. Journey
language diagnostics fill line/column/hint; request validation fills
``field`` (e.g. ``body.user_ids.0``); a lifecycle move the journey cannot
make (``engine.lifecycle.IllegalTransition``) is a 409 naming
``current_status``, ``requested`` and ``allowed``; Temporal refusing a call
(``RPCError``) is a 503 to retry; a stored value that cannot be encoded
(``UnicodeEncodeError``: a lone surrogate from before ingest refused them)
is a 409 naming the repair command. Unexpected exceptions are
logged with their traceback and answered with a bare 500 that reveals
nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic_core import PydanticSerializationError
from sqlalchemy.exc import DataError
from starlette.exceptions import HTTPException as StarletteHTTPException
from temporalio.service import RPCError

from dsl.errors import Diagnostic
from engine.lifecycle import IllegalTransition

log = logging.getLogger("journeys.api")

PROBLEM_JSON = "application/problem+json"
TYPE_BASE = "https://journeys.dev/problems/"


class Problem(Exception):
    """Raise anywhere in a route to answer with a problem document."""

    def __init__(
        self,
        status: int,
        detail: str,
        *,
        title: str | None = None,
        kind: str | None = None,
        errors: Iterable[Mapping[str, Any]] | None = None,
        headers: Mapping[str, str] | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.title = title or HTTPStatus(status).phrase
        self.kind = kind or _slug(self.title)
        self.errors = [dict(e) for e in errors] if errors is not None else None
        self.headers = dict(headers or {})
        self.extra = extra


def not_found(what: str, ident: str) -> Problem:
    return Problem(404, f"{what} {ident!r} not found", kind=f"{what.replace(' ', '-')}-not-found")


def _slug(text: str) -> str:
    return "-".join(text.lower().replace("'", "").split())


def error_item(
    code: str,
    message: str,
    *,
    severity: str = "error",
    line: int | None = None,
    column: int | None = None,
    hint: str | None = None,
    field: str | None = None,
) -> dict[str, Any]:
    return {
        "code": code,
        "severity": severity,
        "message": message,
        "line": line,
        "column": column,
        "hint": hint,
        "field": field,
    }


def diagnostic_item(d: Diagnostic) -> dict[str, Any]:
    return error_item(d.code, d.message, severity=d.severity, line=d.line, column=d.column, hint=d.hint)


def problem_response(
    status: int,
    detail: str,
    *,
    title: str | None = None,
    kind: str | None = None,
    errors: list[dict[str, Any]] | None = None,
    headers: Mapping[str, str] | None = None,
    instance: str | None = None,
    extra: Mapping[str, Any] | None = None,
) -> JSONResponse:
    title = title or HTTPStatus(status).phrase
    body: dict[str, Any] = {
        "type": TYPE_BASE + (kind or _slug(title)),
        "title": title,
        "status": status,
        "detail": detail,
    }
    if instance:
        body["instance"] = instance
    if errors is not None:
        body["errors"] = errors
    if extra:
        body.update({k: v for k, v in extra.items() if k not in body})
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON, headers=dict(headers or {}))


def _field(loc: Iterable[Any]) -> str:
    return ".".join(str(p) for p in loc)


def validation_items(errors: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for e in errors:
        out.append(
            error_item(
                str(e.get("type", "invalid")), str(e.get("msg", "invalid value")), field=_field(e.get("loc", ()))
            )
        )
    return out


async def _on_problem(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, Problem)
    return problem_response(
        exc.status,
        exc.detail,
        title=exc.title,
        kind=exc.kind,
        errors=exc.errors,
        headers=exc.headers,
        instance=request.url.path,
        extra=exc.extra,
    )


async def _on_validation(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = list(exc.errors())
    if any(e.get("type") == "json_invalid" for e in errors):
        bad = next(e for e in errors if e.get("type") == "json_invalid")
        reason = (bad.get("ctx") or {}).get("error", "malformed JSON")
        return problem_response(
            400, f"the request body is not valid JSON: {reason}", kind="malformed-json", instance=request.url.path
        )
    items = validation_items(errors)
    summary = "; ".join(f"{i['field']}: {i['message']}" for i in items[:5])
    return problem_response(
        422, f"invalid request: {summary}", kind="validation-error", errors=items, instance=request.url.path
    )


async def _on_http(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    detail = exc.detail if isinstance(exc.detail, str) else HTTPStatus(exc.status_code).phrase
    if exc.status_code == 404 and detail == "Not Found":
        detail = f"no route {request.method} {request.url.path}"
    if exc.status_code == 405:
        detail = f"method {request.method} is not allowed on {request.url.path}"
    return problem_response(exc.status_code, detail, headers=exc.headers, instance=request.url.path)


async def _on_data_error(request: Request, exc: Exception) -> JSONResponse:
    log.warning("database refused a value on %s %s: %s", request.method, request.url.path, type(exc).__name__)
    return problem_response(
        422,
        "a value was refused by the database (too long, out of range or invalid characters)",
        instance=request.url.path,
    )


async def _on_illegal_transition(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, IllegalTransition)
    return problem_response(
        409,
        str(exc),
        kind="illegal-transition",
        instance=request.url.path,
        extra={"current_status": exc.current, "requested": exc.wanted, "allowed": exc.allowed},
    )


async def _on_temporal(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RPCError)
    log.warning("Temporal refused %s %s: %s %s", request.method, request.url.path, exc.status.name, exc.message)
    return problem_response(
        503,
        f"Temporal refused the request or could not be reached ({exc.status.name}); retry",
        kind="temporal-unavailable",
        instance=request.url.path,
    )


async def _on_unencodable(request: Request, exc: Exception) -> JSONResponse:
    """A stored value that no encoder takes: a lone surrogate kept from before
    ingest refused them (``api.bodies``). Every answer about that record would
    fail the same way, so say what it is and what repairs it. Pydantic wraps
    the encoder's error when it serialises a response model."""
    if isinstance(exc, PydanticSerializationError) and "UnicodeEncodeError" not in str(exc):
        return await _on_unexpected(request, exc)
    log.warning("a stored value holds invalid Unicode on %s %s", request.method, request.url.path)
    return problem_response(
        409,
        "a stored value holds invalid Unicode (a lone surrogate, stored before ingest refused them); "
        "`journeys repair-unicode` rewrites such rows",
        kind="invalid-stored-unicode",
        instance=request.url.path,
    )


async def _on_unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.exception("unhandled error on %s %s", request.method, request.url.path)
    return problem_response(500, "internal error; the details are in the server log", instance=request.url.path)


def install(app: FastAPI) -> None:
    app.add_exception_handler(Problem, _on_problem)
    app.add_exception_handler(RequestValidationError, _on_validation)
    app.add_exception_handler(StarletteHTTPException, _on_http)
    app.add_exception_handler(DataError, _on_data_error)
    app.add_exception_handler(IllegalTransition, _on_illegal_transition)
    app.add_exception_handler(RPCError, _on_temporal)
    app.add_exception_handler(UnicodeEncodeError, _on_unencodable)
    app.add_exception_handler(PydanticSerializationError, _on_unencodable)
    app.add_exception_handler(Exception, _on_unexpected)
