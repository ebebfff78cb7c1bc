"""Replaying a journey's failed sends (``engine.replays``): the operator's
answer to a vendor outage that outlasted the retry deadline, or a broken
template fixed since. Operators and admins, as for pausing or resuming a
journey: a replay sends messages."""

from __future__ import annotations

import asyncio
from typing import Annotated

from fastapi import APIRouter, Depends
from pydantic import BaseModel, ConfigDict, Field

from api.deps import Operator, SettingsDep, StoreDep, operator
from api.lookups import journey_or_404
from engine import replays

router = APIRouter(prefix="/v1/journeys", tags=["deliveries"], dependencies=[Depends(operator)])


class ReplayIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    node_id: str | None = Field(default=None, max_length=128, description="only this step's failed sends")
    version: int | None = Field(default=None, ge=1, description="only this version's")
    limit: Annotated[int, Field(ge=1, le=replays.MAX_REPLAY)] = replays.MAX_REPLAY


class ReplayOut(BaseModel):
    requested: int = Field(description="failed sends marked for replay: the worker sends them within seconds")
    capped: int = Field(description="failed sends a frequency cap stops now: left failed")
    not_replayable: int = Field(description="failed sends recorded before requests were kept, or without a channel")
    more: bool = Field(description="there are more failed sends than this request marked: ask again")


@router.post(
    "/{journey_id}/deliveries/replay",
    response_model=ReplayOut,
    summary="Replay a journey's failed sends with their original idempotency keys",
)
async def replay_failed(
    journey_id: str, body: ReplayIn, store: StoreDep, settings: SettingsDep, _: Operator
) -> ReplayOut:
    await journey_or_404(store, journey_id)
    done = await asyncio.to_thread(
        replays.request, store, settings, journey_id, node_id=body.node_id, version=body.version, limit=body.limit
    )
    return ReplayOut(requested=done.requested, capped=done.capped, not_replayable=done.not_replayable, more=done.more)
