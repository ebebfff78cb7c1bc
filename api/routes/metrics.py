"""Prometheus scrape endpoint (needs a key like every other route: configure
the scrape job with ``authorization: {credentials: <viewer key>}``)."""

from __future__ import annotations

from fastapi import APIRouter, Depends
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.concurrency import run_in_threadpool

from api.deps import MetricsDep, viewer

router = APIRouter(tags=["metrics"], dependencies=[Depends(viewer)])


@router.get("/metrics", summary="Prometheus metrics", response_class=Response)
async def metrics(counters: MetricsDep) -> Response:
    data = await run_in_threadpool(generate_latest, counters.registry)
    return Response(data, media_type=CONTENT_TYPE_LATEST)
