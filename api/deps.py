"""Request dependencies: settings, store, Temporal client, the app's
services, and auth. Routes and console pages take what they need as typed
``Annotated`` parameters (``StoreDep``, ``CacheDep``…); this module is the
one place that reads ``app.state``.

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

from api.ingest import Ingestor
from api.keyring import KeyRing
from api.metrics import Metrics
from api.problems import Problem
from api.settings import ROLE_RANK, ApiSettings, Role
from engine.journey_cache import JourneyCache
from engine.stopping import StopJobs
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


def _opened(request: Request, name: str) -> Any:
    """An app service that exists once the store is open (503 until then)."""
    service = getattr(request.app.state, name, None)
    if service is None:
        raise Problem(503, "the database is not available yet")
    return service


async def get_store(request: Request) -> Store:
    return _opened(request, "store")


async def get_optional_store(request: Request) -> Store | None:
    """The store if open (readiness asks, and must not answer 503 problem JSON)."""
    return getattr(request.app.state, "store", None)


async def get_client(request: Request) -> Client:
    client = getattr(request.app.state, "client", None)
    if client is None:
        raise Problem(503, "Temporal is not connected; runs cannot be started or signalled right now")
    return client


async def get_optional_client(request: Request) -> Client | None:
    """The client when connected; routes that still answer without Temporal
    (from the store) take this one."""
    return getattr(request.app.state, "client", None)


async def get_cache(request: Request) -> JourneyCache:
    return _opened(request, "cache")


async def get_ingestor(request: Request) -> Ingestor:
    return _opened(request, "ingestor")


async def get_metrics(request: Request) -> Metrics:
    return request.app.state.metrics


async def get_stop_jobs(request: Request) -> StopJobs:
    return request.app.state.stop_jobs


async def get_keyring(request: Request) -> KeyRing:
    return request.app.state.keyring


SettingsDep = Annotated[ApiSettings, Depends(get_settings)]
StoreDep = Annotated[Store, Depends(get_store)]
OptionalStoreDep = Annotated[Store | None, Depends(get_optional_store)]
ClientDep = Annotated[Client, Depends(get_client)]
OptionalClientDep = Annotated[Client | None, Depends(get_optional_client)]
CacheDep = Annotated[JourneyCache, Depends(get_cache)]
IngestorDep = Annotated[Ingestor, Depends(get_ingestor)]
MetricsDep = Annotated[Metrics, Depends(get_metrics)]
StopJobsDep = Annotated[StopJobs, Depends(get_stop_jobs)]
KeyRingDep = Annotated[KeyRing, Depends(get_keyring)]


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


def resolve_api_key(request: Request, key: str) -> Principal | None:
    """Who a key is: a key from settings, else one an admin created through
    the API (the app's ``KeyRing``; unknown and revoked keys are None)."""
    state = request.app.state
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
        principal = resolve_api_key(request, key)
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

Operator = Annotated[Principal, Depends(operator)]
Admin = Annotated[Principal, Depends(admin)]


def ingest_principal(request: Request, body_write_key: str | None) -> Principal:
    """Write keys via HTTP Basic (what Segment libraries send) or ``writeKey``
    in the body; API keys of operators/admins may ingest too."""
    candidates = [basic_username(request), body_write_key]
    for candidate in candidates:
        if not candidate:
            continue
        found = resolve_api_key(request, candidate)
        if found is not None and found.kind == "write":
            return found
    key = presented_key(request)
    if key is not None:
        principal = resolve_api_key(request, key)
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
