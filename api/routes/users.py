"""A user's profile, runs and timeline; tags and per-channel consent.

Paths take a user id as the store knows it (merged ids keep resolving to the
surviving user); ``/v1/users/lookup?kind=phone&value=…`` finds one by an
identifier. Unknown users answer 404 here — nothing on these routes creates
a user (ingest and run starts do).
"""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Body, Depends, Query, Request, Response
from pydantic import AwareDatetime
from temporalio.client import Client

from api.deps import Operator, OptionalClientDep, StoreDep, viewer
from api.lookups import user_or_404
from api.problems import not_found
from api.schemas import (
    Channel,
    ConsentIn,
    ConsentOut,
    IdentityKind,
    IdentityValue,
    LookupOut,
    NameStr,
    RunOut,
    TagsIn,
    TagsOut,
    TimelineItemOut,
    UserIdStr,
    UserOut,
)
from engine import consent, queries, run_signals
from engine import timeline as timelines
from engine.store import Store
from engine.tags import change_tags

router = APIRouter(prefix="/v1/users", tags=["users"], dependencies=[Depends(viewer)])


@router.get("/lookup", response_model=LookupOut, summary="Find a user by an identifier")
async def lookup(kind: IdentityKind, value: Annotated[IdentityValue, Query()], store: StoreDep) -> LookupOut:
    uid = await asyncio.to_thread(queries.lookup, store, kind, value)
    if uid is None:
        raise not_found("user with identity", f"{kind}")
    return LookupOut(user_id=uid)


@router.get("/{user_id}", response_model=UserOut, summary="Profile: identities, attributes, tags, stage, RFM, consent")
async def profile(user_id: UserIdStr, store: StoreDep) -> UserOut:
    found = await asyncio.to_thread(queries.user_profile, store, user_id)
    if found is None:
        raise not_found("user", user_id)
    return UserOut.model_validate(found)


Until = Annotated[AwareDatetime | None, Query(description="Only what happened at or before this time (the older page)")]


def _link_older(request: Request, response: Response, older: datetime | None) -> None:
    """Point at the older page (``Link: <…?until=…>; rel="next"``) when there is one."""
    if older is not None:
        next_url = request.url.include_query_params(until=older.isoformat())
        response.headers["Link"] = f'<{next_url}>; rel="next"'


@router.get("/{user_id}/runs", response_model=list[RunOut], summary="The user's runs, newest first, a page at a time")
async def runs(
    user_id: UserIdStr,
    store: StoreDep,
    request: Request,
    response: Response,
    limit: Annotated[int, Query(ge=1, le=1000)] = 200,
    until: Until = None,
) -> list[RunOut]:
    """The newest ``limit`` runs entered at or before ``until``; a ``Link``
    header points at the older page as on the timeline."""
    uid = await user_or_404(store, user_id)
    rows, older = await asyncio.to_thread(queries.user_runs_page, store, uid, limit=limit, until=until)
    _link_older(request, response, older)
    return [RunOut.model_validate(r) for r in rows]


@router.get(
    "/{user_id}/timeline",
    response_model=list[TimelineItemOut],
    summary="Every step, wait, send (with suppression reasons) and coupon, oldest first",
)
async def timeline(
    user_id: UserIdStr,
    store: StoreDep,
    request: Request,
    response: Response,
    journey_id: Annotated[str | None, Query(max_length=128)] = None,
    limit: Annotated[int, Query(ge=1, le=2000)] = 200,
    until: Until = None,
) -> list[TimelineItemOut]:
    """The newest ``limit`` entries at or before ``until``. When older ones
    exist, a ``Link: <…?until=…>; rel="next"`` header points at them. A page
    costs the same for a user with 10k events as for one with 10 (each
    source read ``limit + 1`` deep by its index; ``bench/store_bench.py``)."""
    uid = await user_or_404(store, user_id)
    items, older = await asyncio.to_thread(
        timelines.user_timeline_page, store, uid, journey_id=journey_id, limit=limit, until=until
    )
    _link_older(request, response, older)
    return [TimelineItemOut.model_validate(i) for i in items]


@router.post(
    "/{user_id}/tags",
    response_model=TagsOut,
    summary="Add tags (source defaults to `api`); the user's running runs hear it at once (`tag_added`)",
)
async def add(user_id: UserIdStr, body: TagsIn, store: StoreDep, client: OptionalClientDep, _: Operator) -> TagsOut:
    uid = await user_or_404(store, user_id)
    change = await asyncio.to_thread(change_tags, store, uid, list(body.tags), source=body.source, add=True)
    await _tell_runs(store, client, uid, change.changed)
    return TagsOut(user_id=uid, changed=change.changed, tags=change.tags)


@router.delete(
    "/{user_id}/tags/{tag}",
    response_model=TagsOut,
    summary="Remove one tag; the user's running runs hear it at once (`tag_removed`)",
)
async def remove(
    user_id: UserIdStr, tag: NameStr, store: StoreDep, client: OptionalClientDep, _: Operator, source: NameStr = "api"
) -> TagsOut:
    uid = await user_or_404(store, user_id)
    change = await asyncio.to_thread(change_tags, store, uid, [tag], source=source, add=False)
    await _tell_runs(store, client, uid, change.changed)
    return TagsOut(user_id=uid, changed=change.changed, tags=change.tags)


async def _tell_runs(store: Store, client: Client | None, uid: str, changed: list[str]) -> None:
    """Send the change to the user's runs now (``exit when tag``); without
    Temporal, or if it fails, the API's sweep sends it."""
    if changed and client is not None:
        await run_signals.deliver(store, client, user_id=uid)


async def _consent(store: Store, user_id: str, channel: str, opted_out: bool, body: ConsentIn | None) -> ConsentOut:
    uid = await user_or_404(store, user_id)
    source = (body.source if body else None) or "api"
    await asyncio.to_thread(consent.opt_out, store, uid, channel, opted_out=opted_out, source=source)
    profile = await asyncio.to_thread(queries.user_profile, store, uid)
    assert profile is not None
    row = next(c for c in profile.consents if c.channel == channel)
    return ConsentOut.model_validate(row)


@router.post("/{user_id}/opt-out/{channel}", response_model=ConsentOut, summary="Opt the user out of a channel")
async def opt_out(
    user_id: UserIdStr, channel: Channel, store: StoreDep, _: Operator, body: Annotated[ConsentIn | None, Body()] = None
) -> ConsentOut:
    return await _consent(store, user_id, channel, True, body)


@router.post("/{user_id}/opt-in/{channel}", response_model=ConsentOut, summary="Opt the user back in to a channel")
async def opt_in(
    user_id: UserIdStr, channel: Channel, store: StoreDep, _: Operator, body: Annotated[ConsentIn | None, Body()] = None
) -> ConsentOut:
    return await _consent(store, user_id, channel, False, body)
