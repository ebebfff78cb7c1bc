"""The FastAPI application: ``create_app(settings, client=..., store=...)``.

Whoever embeds the API (``journeys up``, tests) may pass an already connected
Temporal client and an open ``Store``; they are used as given and left open
on shutdown. Missing ones are made by the lifespan from the settings
(``DATABASE_URL``, ``TEMPORAL_ADDRESS``) and closed on shutdown. A Temporal
server that cannot be reached at startup leaves the API up (``/ready`` says
503, routes that need Temporal answer 503) rather than crash-looping.
"""

from __future__ import annotations

import asyncio
import gzip
import logging
import time
import zlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import Any

from fastapi import FastAPI
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from temporalio.client import Client

from api import problems
from api.ingest import Ingestor
from api.keyring import KeyRing
from api.logs import setup_logging
from api.metrics import Metrics
from api.routes import ROUTERS
from api.schemas import ProblemOut
from api.settings import ApiSettings, as_api_settings
from engine.dispatch import Dispatcher
from engine.journey_cache import JourneyCache
from engine.settings import Settings
from engine.stopping import StopJobs
from engine.store import Store

log = logging.getLogger("journeys.api")
access_log = logging.getLogger("journeys.api.access")

DESCRIPTION = """\
Deploy customer journeys written in the journeys language, start and stop
them, send events the way Segment does, and watch every user's timeline and
every node's numbers.

**Auth**: `Authorization: Bearer <api key>` (or `X-API-Key`) with a role —
admin, operator (deploy/start/stop/edit) or viewer (read only). The Segment
routes take a write key as HTTP Basic username. Errors are
`application/problem+json` (RFC 7807).
"""


class _Plumbing:
    """Request-level middleware in one pure-ASGI class: body size limit,
    gzip request bodies (Segment libraries can send them), metrics and a
    masked access log line."""

    def __init__(self, app: ASGIApp, state: Any) -> None:
        self.app = app
        self.state = state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        settings: ApiSettings = self.state.settings
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        started = time.perf_counter()
        status_holder = {"status": 500}

        async def send_wrapper(message: Message) -> None:
            if message["type"] == "http.response.start":
                status_holder["status"] = message["status"]
            await send(message)

        try:
            length = int(headers.get("content-length") or 0)
        except ValueError:
            length = 0
        if length > settings.max_body_bytes:
            response = problems.problem_response(413, f"request body larger than {settings.max_body_bytes} bytes")
            await response(scope, receive, send_wrapper)
        elif headers.get("content-encoding", "").lower() == "gzip":
            await self._gunzip(scope, receive, send_wrapper, settings.max_body_bytes)
        else:
            try:
                await self.app(scope, receive, send_wrapper)
            except Exception:
                status_holder["status"] = 500
                raise
        self._observe(scope, status_holder["status"], time.perf_counter() - started)

    async def _gunzip(self, scope: Scope, receive: Receive, send: Send, limit: int) -> None:
        chunks = []
        more = True
        while more:
            message = await receive()
            chunks.append(message.get("body", b""))
            more = message.get("more_body", False)
        try:
            body = gzip.decompress(b"".join(chunks))
        except (OSError, EOFError, zlib.error):
            await problems.problem_response(400, "the request body is not valid gzip")(scope, receive, send)
            return
        if len(body) > limit:
            await problems.problem_response(413, f"request body larger than {limit} bytes")(scope, receive, send)
            return
        new_headers = [(k, v) for k, v in scope["headers"] if k.lower() not in (b"content-encoding", b"content-length")]
        new_headers.append((b"content-length", str(len(body)).encode()))
        sent = False

        async def replay() -> Message:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app({**scope, "headers": new_headers}, replay, send)

    def _observe(self, scope: Scope, status: int, seconds: float) -> None:
        route = scope.get("route")
        path = getattr(route, "path", None) or "unmatched"
        metrics: Metrics = self.state.metrics
        metrics.requests.labels(scope.get("method", "?"), path, str(status)).inc()
        metrics.latency.labels(path).observe(seconds)
        query = scope.get("query_string", b"").decode("latin-1")
        access_log.info(
            "%s %s%s %s",
            scope.get("method"),
            scope.get("path"),
            f"?{query}" if query else "",
            status,
            extra={"status": status, "route": path, "ms": round(seconds * 1000, 1)},
        )


def create_app(
    settings: Settings | None = None, *, client: Client | None = None, store: Store | None = None
) -> FastAPI:
    """The API; ``client``/``store`` given here are used as-is and not closed."""
    api_settings = as_api_settings(settings) if settings is not None else ApiSettings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        state = app.state
        # again: a server (uvicorn) may have configured its loggers since create_app
        setup_logging(api_settings.log_level, json_lines=api_settings.log_json)
        own_store = state.store is None
        if own_store:
            state.store = Store.from_settings(api_settings)
            await asyncio.to_thread(state.store.migrate)
            _wire(state)
        own_client = False
        if state.client is None and api_settings.temporal_address:
            from engine.temporal import connect

            try:
                state.client = await connect(api_settings.temporal_address, api_settings.temporal_namespace)
                own_client = True
            except Exception:  # noqa: BLE001 - the API stays up and says it is not ready
                log.exception("could not connect to Temporal at %s", api_settings.temporal_address)
        sweeper = asyncio.create_task(_sweep_forever(state)) if api_settings.redispatch_seconds > 0 else None
        try:
            yield
        finally:
            if sweeper is not None:
                sweeper.cancel()
                await asyncio.gather(sweeper, return_exceptions=True)
            if state.store is not None:
                await state.dispatcher.flush_marks()
            for task in list(state.stop_jobs.tasks):
                task.cancel()
            if own_store and state.store is not None:
                state.store.dispose()
                state.store = None
            if own_client:
                state.client = None

    app = FastAPI(
        title="journeys",
        version="1",
        description=DESCRIPTION,
        lifespan=lifespan,
        # served by api.routes.docs, behind a key
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
        responses={
            400: {"model": ProblemOut, "description": "Malformed request"},
            401: {"model": ProblemOut, "description": "Missing or unknown key"},
            403: {"model": ProblemOut, "description": "The key's role does not allow this"},
            404: {"model": ProblemOut, "description": "Not found"},
            409: {"model": ProblemOut, "description": "Conflicts with the current state"},
            422: {"model": ProblemOut, "description": "Invalid input (journey language errors in `errors`)"},
        },
    )
    state = app.state
    state.settings = api_settings
    state.store = store
    state.client = client
    state.stop_jobs = StopJobs()
    state.keyring = KeyRing(state)
    state.metrics = Metrics(state)
    if store is not None:
        _wire(state)
    setup_logging(api_settings.log_level, json_lines=api_settings.log_json)
    problems.install(app)
    for router in ROUTERS:
        app.include_router(router)
    app.add_middleware(_Plumbing, state=state)
    return app


async def _sweep_forever(state: Any) -> None:
    """Deliver events that were stored but never reached Temporal (see
    ``engine.dispatch``), every ``redispatch_seconds``."""
    every = state.settings.redispatch_seconds
    while True:
        await asyncio.sleep(every)
        if state.client is None or state.store is None:
            continue
        try:
            await state.dispatcher.sweep(state.client, older_than=timedelta(seconds=every))
        except Exception:  # noqa: BLE001 - the next round tries again
            log.exception("sweep of undispatched events failed")


def _wire(state: Any) -> None:
    """The services that need the store (read by ``api.deps``)."""
    state.cache = JourneyCache(state.store)
    state.dispatcher = Dispatcher(state.store, state.settings, state.cache, state.metrics)
    state.ingestor = Ingestor(state.store, state.settings, state.dispatcher, state.metrics)
