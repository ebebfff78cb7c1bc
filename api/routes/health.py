"""Liveness and readiness: the only routes without a key (probes carry none)."""

from __future__ import annotations

import asyncio
import logging

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from sqlalchemy import text
from temporalio.client import Client

from api.deps import OptionalClientDep, OptionalStoreDep
from api.schemas import HealthOut, ReadyOut
from engine.store import Store

log = logging.getLogger("journeys.api")
router = APIRouter(tags=["health"])


@router.get("/health", response_model=HealthOut, summary="The process is up")
async def health() -> HealthOut:
    return HealthOut(status="ok")


def _db_ok(store: Store | None) -> bool:
    if store is None:
        return False
    try:
        with store.engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        return True
    except Exception:  # noqa: BLE001 - any failure means not ready
        log.warning("readiness: database unreachable", exc_info=True)
        return False


async def _temporal_ok(client: Client | None) -> bool:
    if client is None:
        return False
    try:
        await asyncio.wait_for(client.service_client.check_health(), timeout=3)
        return True
    except Exception:  # noqa: BLE001
        log.warning("readiness: Temporal unreachable", exc_info=True)
        return False


@router.get(
    "/ready",
    response_model=ReadyOut,
    summary="Database and Temporal are reachable",
    responses={503: {"model": ReadyOut, "description": "Not ready"}},
)
async def ready(store: OptionalStoreDep, client: OptionalClientDep) -> JSONResponse:
    db = await asyncio.to_thread(_db_ok, store)
    temporal = await _temporal_ok(client)
    body = ReadyOut(status="ready" if db and temporal else "not ready", database=db, temporal=temporal)
    return JSONResponse(body.model_dump(), status_code=200 if db and temporal else 503)
