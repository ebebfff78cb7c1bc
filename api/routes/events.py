"""Segment-compatible ingest: ``/v1/track``, ``/v1/identify``, ``/v1/batch``
(plus ``/v1/page``, ``/v1/screen``, ``/v1/group``, ``/v1/alias`` and the
``/v1/t``, ``/v1/i`` short forms). Same bodies, same auth (HTTP Basic with the
write key as username, or ``writeKey`` in the body) and the same answer
(``{"success": true}``), so Segment's libraries point here unchanged.

A batch is validated whole before anything is stored (one bad message
refuses the batch with 400/422, like Segment), then processed in order.

The answer never waits on Temporal for more than ``ingest_answer_seconds``
(a batch: for all its messages together). Messages are stored before
Temporal is asked, so a stored message is accepted: ``200`` when what it
means reached Temporal within that time (or was refused by it: the sweep
delivers it), ``202`` with the same body when the delivery was still under
way: it goes on in the background, and the sweep makes what does not get
through (``engine.dispatch``). An API that has not reached Temporal since it
started answers ``503`` without storing (the sender retries; the sweep
connects as soon as Temporal answers).
"""

# No ``from __future__ import annotations``: each route's body type is the
# message model given to ``_one_message``, and FastAPI must see the class.

import asyncio
import json
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request, Response
from pydantic import BaseModel

from api.deps import IngestorDep, OptionalClientDep, Principal, SettingsDep, basic_scheme, ingest_principal
from api.problems import Problem
from api.segment import Alias, Batch, Group, Identify, Page, Screen, SegmentOk, Track

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

# (path, short path, body, summary) of the routes that take one message
MESSAGES: list[tuple[str, str, type[BaseModel], str]] = [
    ("/track", "/t", Track, "Segment track: something the user did"),
    ("/identify", "/i", Identify, "Segment identify: who the user is (identifiers, traits)"),
    ("/page", "/p", Page, "Segment page (stored as event `page`)"),
    ("/screen", "/s", Screen, "Segment screen (stored as event `screen`)"),
    ("/group", "/g", Group, "Segment group (accepted, not modelled)"),
    ("/alias", "/a", Alias, "Segment alias: two ids are one person"),
]


ACCEPTED = {
    202: {
        "model": SegmentOk,
        "description": "Stored; its delivery to Temporal was still under way when answered: it goes on in the "
        "background, and the redelivery sweep makes what does not get through",
    }
}


def _one_message(model: type[BaseModel]):  # noqa: ANN202 - a route handler for that body type
    async def handle(
        body: model,  # type: ignore[valid-type]
        _: Writer,
        client: OptionalClientDep,  # never connected yet: stored, 202, the sweep delivers it
        ingestor: IngestorDep,
        response: Response,
    ) -> SegmentOk:
        if (await ingestor.handle(body, client)).deferred:
            response.status_code = 202
        return SegmentOk()

    handle.__name__ = model.__name__.lower()
    return handle


for path, short, model, summary in MESSAGES:
    handler = _one_message(model)
    router.add_api_route(path, handler, methods=["POST"], response_model=SegmentOk, summary=summary, responses=ACCEPTED)
    router.add_api_route(
        short, handler, methods=["POST"], response_model=SegmentOk, include_in_schema=False, responses=ACCEPTED
    )


@router.post(
    "/batch", response_model=SegmentOk, summary="Segment batch: many messages, each with a `type`", responses=ACCEPTED
)
@router.post("/import", response_model=SegmentOk, include_in_schema=False, responses=ACCEPTED)
async def batch(
    body: Batch,
    _: Writer,
    client: OptionalClientDep,
    ingestor: IngestorDep,
    settings: SettingsDep,
    response: Response,
) -> SegmentOk:
    if len(body.batch) > settings.max_batch_events:
        raise Problem(422, f"at most {settings.max_batch_events} messages per batch (got {len(body.batch)})")
    # one bound for the whole batch: past it, the rest is stored and delivered
    # in the background (in order per user), not waited for message by message
    wait_until = asyncio.get_running_loop().time() + settings.ingest_answer_seconds
    deferred = False
    for msg in body.batch:
        if body.context and hasattr(msg, "context"):
            msg.context = {**body.context, **msg.context}
        deferred = (await ingestor.handle(msg, client, wait_until=wait_until)).deferred or deferred
    if deferred:
        response.status_code = 202
    return SegmentOk()
