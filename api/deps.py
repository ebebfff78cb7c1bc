"""Request dependencies: settings, store, Temporal client, and auth.

Auth model: API keys carry a role (admin ⊇ operator ⊇ viewer) and are sent
as ``Authorization: Bearer <key>`` or ``X-API-Key: <key>``; Segment write
keys (HTTP Basic username, or ``writeKey`` in the body) can call the ingest
routes and nothing else. Keys are compared in constant time and never logged.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.security import APIKeyHeader, HTTPBasic, HTTPBearer
from temporalio.client import Client

from api.problems import Problem
from api.settings import ROLE_RANK, ApiSettings, Role
from engine.store import Store

bearer_scheme = HTTPBearer(auto_error=False, description="API key with a role: `Authorization: Bearer <key>`")
api_key_scheme = APIKeyHeader(name="X-API-Key", auto_error=False, description="API key with a role")
basic_scheme = HTTPBasic(auto_error=False, description="Segment write key as the username, empty password")


@dataclass(frozen=True)
class Principal:
    kind: str  # "api" | "write"
    role: Role | None
    key_id: str  # a short digest of the key, safe to log

    def can(self, role: Role) -> bool:
        return self.role is not None and ROLE_RANK[self.role] >= ROLE_RANK[role]


def key_id(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()[:8]


# Dependencies are ``async def`` although nothing here awaits: FastAPI runs a
# plain ``def`` dependency in its thread pool, a hand-off per dependency per
# request that cost more than the work (every ingested event pays it).


async def get_settings(request: Request) -> ApiSettings:
    return request.app.state.settings


async def get_store(request: Request) -> Store:
    store = getattr(request.app.state, "store", None)
    if store is None:
        raise Problem(503, "the database is not available yet")
    return store


async def get_client(request: Request) -> Client:
    client = getattr(request.app.state, "client", None)
    if client is None:
        raise Problem(503, "Temporal is not connected; runs cannot be started or signalled right now")
    return client


SettingsDep = Annotated[ApiSettings, Depends(get_settings)]
StoreDep = Annotated[Store, Depends(get_store)]
ClientDep = Annotated[Client, Depends(get_client)]


def _match(candidate: str, keys: list[str]) -> str | None:
    found = None
    for key in keys:
        if hmac.compare_digest(candidate.encode("utf-8"), key.encode("utf-8")):
            found = key
    return found


# The console keeps the operator's key in an HttpOnly cookie (api.console.auth).
# The API honours it only together with the console header: browsers never add
# a custom header to a cross-site request without a CORS preflight (which this
# API does not grant), so another site cannot act with a signed-in browser.
COOKIE_NAME = "journeys_key"
CONSOLE_HEADER = "X-Journeys-Console"


def cookie_key(request: Request) -> str | None:
    """The console cookie's key, if this request may use it."""
    if not request.headers.get(CONSOLE_HEADER):
        return None
    value = request.cookies.get(COOKIE_NAME, "").strip()
    return value or None


def presented_key(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    api_key = request.headers.get("x-api-key")
    if api_key and api_key.strip():
        return api_key.strip()
    return cookie_key(request)


def basic_username(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "basic" or not value.strip():
        return None
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    return decoded.partition(":")[0] or None


def resolve_api_key(state: Any, key: str) -> Principal | None:
    """Who a key is: a key from settings, else one an admin created through
    the API (``state.keyring``; unknown and revoked keys are None)."""
    settings: ApiSettings = state.settings
    matched = _match(key, list(settings.api_keys))
    if matched is not None:
        return Principal("api", settings.api_keys[matched], key_id(key))
    if _match(key, list(settings.write_keys)) is not None:
        return Principal("write", None, key_id(key))
    ring = getattr(state, "keyring", None)
    role = ring.role(key) if ring is not None else None
    if role == "write":
        return Principal("write", None, key_id(key))
    if role is not None:
        return Principal("api", role, key_id(key))  # type: ignore[arg-type]
    return None


_UNAUTHORIZED = {"WWW-Authenticate": 'Bearer realm="journeys"'}


def require(role: Role):
    """A dependency that lets through API keys of ``role`` or higher."""

    async def check(
        request: Request,
        _bearer: Annotated[object, Depends(bearer_scheme)] = None,
        _header: Annotated[object, Depends(api_key_scheme)] = None,
    ) -> Principal:
        key = presented_key(request)
        if key is None:
            raise Problem(
                401, "an API key is required (Authorization: Bearer <key> or X-API-Key)", headers=_UNAUTHORIZED
            )
        principal = resolve_api_key(request.app.state, key)
        if principal is None:
            raise Problem(401, "unknown API key", headers=_UNAUTHORIZED)
        if principal.kind == "write":
            raise Problem(403, "write keys can only send events (/v1/track, /v1/identify, /v1/batch)")
        if not principal.can(role):
            raise Problem(403, f"this key's role is {principal.role}; {role} or higher is needed")
        request.state.principal = principal
        return principal

    check.__name__ = f"require_{role}"
    return check


viewer = require("viewer")
operator = require("operator")
admin = require("admin")

Viewer = Annotated[Principal, Depends(viewer)]
Operator = Annotated[Principal, Depends(operator)]
Admin = Annotated[Principal, Depends(admin)]


def ingest_principal(request: Request, body_write_key: str | None) -> Principal:
    """Write keys via HTTP Basic (what Segment libraries send) or ``writeKey``
    in the body; API keys of operators/admins may ingest too."""
    state = request.app.state
    candidates = [basic_username(request), body_write_key]
    for candidate in candidates:
        if not candidate:
            continue
        found = resolve_api_key(state, candidate)
        if found is not None and found.kind == "write":
            return found
    key = presented_key(request)
    if key is not None:
        principal = resolve_api_key(state, key)
        if principal is not None and principal.kind == "api":
            if principal.can("operator"):
                return principal
            raise Problem(403, "viewer keys cannot send events")
        if principal is not None:
            return principal
    if any(candidates) or key:
        raise Problem(401, "unknown write key", headers={"WWW-Authenticate": 'Basic realm="journeys"'})
    raise Problem(
        401,
        "a write key is required (HTTP Basic with the write key as username, or writeKey in the body)",
        headers={"WWW-Authenticate": 'Basic realm="journeys"'},
    )
