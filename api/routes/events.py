"""Segment-compatible ingest: ``/v1/track``, ``/v1/identify``, ``/v1/batch``
(plus ``/v1/page``, ``/v1/screen``, ``/v1/group``, ``/v1/alias`` and the
``/v1/t``, ``/v1/i`` short forms). Same bodies, same auth (HTTP Basic with the
write key as username, or ``writeKey`` in the body) and the same answer
(``{"success": true}``), so Segment's libraries point here unchanged.

A batch is validated whole before anything is stored (one bad message
refuses the batch with 400/422, like Segment), then processed in order.
"""

from __future__ import annotations

import json
import logging
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request

from api.deps import ClientDep, Principal, basic_scheme, ingest_principal
from api.ingest import Ingestor
from api.problems import Problem
from api.segment import Alias, Batch, Group, Identify, Page, Screen, SegmentOk, Track
from api.settings import ApiSettings

log = logging.getLogger("journeys.api")
router = APIRouter(prefix="/v1", tags=["events (Segment)"])


async def _body_write_key(request: Request) -> str | None:
    try:
        data: Any = json.loads(await request.body() or b"null")
    except (ValueError, UnicodeDecodeError):
        return None
    key = data.get("writeKey") if isinstance(data, dict) else None
    return key if isinstance(key, str) else None


async def write_access(request: Request, _basic: Annotated[object, Depends(basic_scheme)] = None) -> Principal:
    return ingest_principal(request, await _body_write_key(request))


Writer = Annotated[Principal, Depends(write_access)]


def _ingestor(request: Request) -> Ingestor:
    return request.app.state.ingestor


@router.post("/track", response_model=SegmentOk, summary="Segment track: something the user did")
@router.post("/t", response_model=SegmentOk, include_in_schema=False)
async def track(body: Track, request: Request, _: Writer, client: ClientDep) -> SegmentOk:
    await _ingestor(request).handle(body, client)
    return SegmentOk()


@router.post("/identify", response_model=SegmentOk, summary="Segment identify: who the user is (identifiers, traits)")
@router.post("/i", response_model=SegmentOk, include_in_schema=False)
async def identify(body: Identify, request: Request, _: Writer, client: ClientDep) -> SegmentOk:
    await _ingestor(request).handle(body, client)
    return SegmentOk()


@router.post("/page", response_model=SegmentOk, summary="Segment page (stored as event `page`)")
@router.post("/p", response_model=SegmentOk, include_in_schema=False)
async def page(body: Page, request: Request, _: Writer, client: ClientDep) -> SegmentOk:
    await _ingestor(request).handle(body, client)
    return SegmentOk()


@router.post("/screen", response_model=SegmentOk, summary="Segment screen (stored as event `screen`)")
@router.post("/s", response_model=SegmentOk, include_in_schema=False)
async def screen(body: Screen, request: Request, _: Writer, client: ClientDep) -> SegmentOk:
    await _ingestor(request).handle(body, client)
    return SegmentOk()


@router.post("/group", response_model=SegmentOk, summary="Segment group (accepted, not modelled)")
@router.post("/g", response_model=SegmentOk, include_in_schema=False)
async def group(body: Group, request: Request, _: Writer, client: ClientDep) -> SegmentOk:
    await _ingestor(request).handle(body, client)
    return SegmentOk()


@router.post("/alias", response_model=SegmentOk, summary="Segment alias: two ids are one person")
@router.post("/a", response_model=SegmentOk, include_in_schema=False)
async def alias(body: Alias, request: Request, _: Writer, client: ClientDep) -> SegmentOk:
    await _ingestor(request).handle(body, client)
    return SegmentOk()


@router.post("/batch", response_model=SegmentOk, summary="Segment batch: many messages, each with a `type`")
@router.post("/import", response_model=SegmentOk, include_in_schema=False)
async def batch(body: Batch, request: Request, _: Writer, client: ClientDep) -> SegmentOk:
    settings: ApiSettings = request.app.state.settings
    if len(body.batch) > settings.max_batch_events:
        raise Problem(422, f"at most {settings.max_batch_events} messages per batch (got {len(body.batch)})")
    ingestor = _ingestor(request)
    for msg in body.batch:
        if body.context and hasattr(msg, "context"):
            msg.context = {**body.context, **msg.context}
        await ingestor.handle(msg, client)
    return SegmentOk()
