"""The FastAPI application: ``create_app(settings, client=..., store=...)``.

Whoever embeds the API (``journeys up``, tests) may pass an already connected
Temporal client and an open ``Store``; they are used as given and left open
on shutdown. Missing ones are made by the lifespan from the settings
(``DATABASE_URL``, ``TEMPORAL_ADDRESS``) and closed on shutdown. A Temporal
server that cannot be reached at startup leaves the API up (``/ready`` says
503, routes that need Temporal answer 503) rather than crash-looping, and
the redelivery sweep connects as soon as Temporal answers.

Shutdown is bounded whatever Temporal does: the sweep is cancelled, and the
deliveries to Temporal still under way get ``shutdown_grace_seconds``, then
are left to the sweep of the next start (``engine.dispatch``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import Any
from urllib.parse import unquote_plus

from fastapi import FastAPI
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from temporalio.client import Client

from api import openapi_doc, problems
from api.bodies import BodyLimits
from api.console.auth import LoginOriginGuard
from api.ingest import Ingestor
from api.keyring import KeyRing
from api.logs import setup_logging
from api.metrics import Metrics
from api.routes import ROUTERS
from api.routes import simulate as simulate_routes
from api.schemas import ProblemOut
from api.settings import ApiSettings, as_api_settings
from engine import catalog
from engine.dispatch import Bounds, Dispatcher
from engine.journey_cache import JourneyCache
from engine.schedules import requeue_old_schedules
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
    """Request-level middleware in one pure-ASGI class: metrics and a masked
    access log line (the query string URL-decoded first, so ``%40`` and ``+``
    cannot hide an email or a spaced phone from ``api.logs``). Bodies are
    ``api.bodies``'s, inside this one (so refused bodies are counted too)."""

    def __init__(self, app: ASGIApp, state: Any) -> None:
        self.app = app
        self.state = state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status_holder = {"status": 500}

        async def send_wrapper(message: Message) -> None:
            if message["type"] == "http.response.start":
                status_holder["status"] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        except Exception:
            status_holder["status"] = 500
            raise
        self._observe(scope, status_holder["status"], time.perf_counter() - started)

    def _observe(self, scope: Scope, status: int, seconds: float) -> None:
        route = scope.get("route")
        path = getattr(route, "path", None) or "unmatched"
        metrics: Metrics = self.state.metrics
        metrics.requests.labels(scope.get("method", "?"), path, str(status)).inc()
        metrics.latency.labels(path).observe(seconds)
        query = unquote_plus(scope.get("query_string", b"").decode("latin-1"))
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
            # journeys deployed before today's bounds (say nested deeper than
            # dsl.limits.MAX_DEPTH) are logged, not paused: a journey the
            # worker still runs is the operator's to stop
            recheck = asyncio.create_task(asyncio.to_thread(catalog.recheck_current, state.store))
            recheck.add_done_callback(_log_failure)
        state.own_client = False
        state.requeue = None
        if state.client is None and api_settings.temporal_address:
            await _connect(state)
        elif state.client is not None:
            _requeue_schedules(state)
        sweeper = asyncio.create_task(_sweep_forever(state)) if api_settings.redispatch_seconds > 0 else None
        try:
            yield
        finally:
            for task in (sweeper, state.requeue):
                if task is not None:
                    task.cancel()
                    await asyncio.gather(task, return_exceptions=True)
            if state.store is not None:
                # bounded: what is still under way is left to the next sweep
                await state.dispatcher.drain(api_settings.shutdown_grace_seconds)
            for task in list(state.stop_jobs.tasks):
                task.cancel()
            if own_store and state.store is not None:
                state.store.dispose()
                state.store = None
            if state.own_client:
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
    openapi_doc.install(app)
    for router in ROUTERS:
        app.include_router(router)
    app.include_router(simulate_routes.router)
    app.add_middleware(LoginOriginGuard)
    app.add_middleware(BodyLimits, state=state)
    app.add_middleware(_Plumbing, state=state)  # added last: the outermost
    return app


CONNECT_SECONDS = 5.0  # one attempt to reach Temporal (its client retries within it)


async def _connect(state: Any) -> bool:
    """Connect to ``temporal_address`` (the app's own client, closed with
    it), within ``CONNECT_SECONDS``; False when Temporal cannot be reached."""
    from engine.temporal import connect

    settings = state.settings
    try:
        async with asyncio.timeout(CONNECT_SECONDS):
            state.client = await connect(settings.temporal_address, settings.temporal_namespace)
    except Exception:  # noqa: BLE001 - the API stays up, says it is not ready, and tries again
        log.warning("could not connect to Temporal at %s; trying again later", settings.temporal_address, exc_info=True)
        return False
    state.own_client = True
    log.info("connected to Temporal at %s", settings.temporal_address)
    _requeue_schedules(state)
    return True


def _requeue_schedules(state: Any) -> None:
    """Once per process, when Temporal is first reached: audience schedules
    made before broadcasts had their own queue move to it
    (``engine.schedules.requeue_old_schedules``)."""
    if state.store is None or getattr(state, "requeue", None) is not None:
        return
    task = asyncio.create_task(requeue_old_schedules(state.client, state.store, task_queue=state.settings.task_queue))
    task.add_done_callback(_log_requeue_failure)
    state.requeue = task


def _log_requeue_failure(task: asyncio.Task[Any]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("moving old audience schedules to the broadcast queue failed", exc_info=task.exception())


async def _sweep_forever(state: Any) -> None:
    """Deliver events that were stored but never reached Temporal (see
    ``engine.dispatch``), every ``redispatch_seconds``; without a client yet
    (Temporal was down at start), connect first."""
    every = state.settings.redispatch_seconds
    while True:
        await asyncio.sleep(every)
        if state.store is None:
            continue
        if state.client is None and not (state.settings.temporal_address and await _connect(state)):
            continue
        try:
            await state.dispatcher.sweep(state.client, older_than=timedelta(seconds=every))
        except Exception:  # noqa: BLE001 - the next round tries again
            log.exception("sweep of undispatched events failed")


def _log_failure(task: asyncio.Task[Any]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("re-checking the deployed journeys failed", exc_info=task.exception())


def _wire(state: Any) -> None:
    """The services that need the store (read by ``api.deps``)."""
    state.cache = JourneyCache(state.store)
    settings = state.settings
    bounds = Bounds(
        answer_within=settings.ingest_answer_seconds,
        deliver_within=settings.delivery_deadline_seconds,
        sweep_batch=settings.redispatch_batch,
        sweep_concurrency=settings.redispatch_concurrency,
    )
    state.dispatcher = Dispatcher(state.store, settings, state.cache, state.metrics, bounds)
    state.ingestor = Ingestor(state.store, state.settings, state.dispatcher, state.metrics)
