"""Tag-audience broadcasts: run one now, watch their progress, see the schedule.

A journey with ``entry audience where ... every day at 10:00`` (or ``once at``)
broadcasts on its Temporal Schedule (``engine.schedules``, kept in step with
deploy/pause/stop by ``sync_audience_schedule``). ``POST .../broadcasts``
starts one more broadcast now, e.g. for a test batch or after changing tags.
Each broadcast is an ``AudienceBroadcastWorkflow`` whose progress row the
store keeps page by page, so the GET routes read the database, not Temporal.
"""

from __future__ import annotations

import asyncio
from datetime import datetime

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, Field

from api.deps import CacheDep, ClientDep, Operator, SettingsDep, StoreDep, viewer
from api.lookups import deployed_or_409, journey_or_404
from api.problems import Problem, not_found
from contracts.broadcast import DEFAULT_PAGE_SIZE, BroadcastProgress
from dsl.ir import AudienceEntry
from engine import broadcasts, lifecycle
from engine.schedules import describe_schedule, schedule_id, start_broadcast

router = APIRouter(prefix="/v1/journeys", tags=["broadcasts"], dependencies=[Depends(viewer)])


class BroadcastIn(BaseModel):
    page_size: int = Field(DEFAULT_PAGE_SIZE, ge=1, le=5000, description="users selected and entered per page")


class BroadcastStarted(BaseModel):
    broadcast_id: str = Field(description="also the broadcast workflow's id")
    journey_id: str
    version: int


class BroadcastOut(BroadcastProgress):
    admitted: int = Field(0, description="runs this broadcast started that the re-entry rule admitted")
    refused: int = Field(0, description="runs this broadcast started that the re-entry rule refused")


class ScheduleOut(BaseModel):
    schedule_id: str
    paused: bool
    note: str | None = None
    time_zone: str | None = None
    next_runs: list[datetime] = Field(default_factory=list)
    recent_broadcasts: list[str] = Field(default_factory=list)


@router.post(
    "/{journey_id}/broadcasts",
    response_model=BroadcastStarted,
    status_code=202,
    summary="Broadcast now to everyone the audience entry selects",
)
async def run_now(
    journey_id: str,
    store: StoreDep,
    cache: CacheDep,
    client: ClientDep,
    settings: SettingsDep,
    _: Operator,
    body: BroadcastIn | None = None,
) -> BroadcastStarted:
    info = await journey_or_404(store, journey_id)
    if info.status != lifecycle.ADMITTING:
        raise Problem(409, f"journey {journey_id!r} is {info.status}; broadcasts run only while it is active")
    deployed = await deployed_or_409(cache, info)
    if not isinstance(deployed.ir.entry, AudienceEntry):
        raise Problem(409, f"journey {journey_id!r} enters on {deployed.ir.entry.kind}, not by audience")
    page_size = (body or BroadcastIn()).page_size
    wid = await start_broadcast(
        client, settings.task_queue, deployed.version, deployed.ir, trigger="api", page_size=page_size
    )
    return BroadcastStarted(broadcast_id=wid, journey_id=journey_id, version=deployed.version.version)


@router.get("/{journey_id}/broadcasts", response_model=list[BroadcastProgress], summary="The journey's broadcasts")
async def list_broadcasts(
    journey_id: str, store: StoreDep, limit: int = Query(50, ge=1, le=500)
) -> list[BroadcastProgress]:
    await journey_or_404(store, journey_id)
    return await asyncio.to_thread(broadcasts.list_for_journey, store, journey_id, limit=limit)


@router.get(
    "/{journey_id}/broadcasts/{broadcast_id}",
    response_model=BroadcastOut,
    summary="A broadcast's progress: pages, users scanned, matched, entered, skipped",
)
async def get_broadcast(journey_id: str, broadcast_id: str, store: StoreDep) -> BroadcastOut:
    await journey_or_404(store, journey_id)
    progress = await asyncio.to_thread(broadcasts.get, store, broadcast_id)
    if progress is None or progress.journey_id != journey_id:
        raise not_found("broadcast", broadcast_id)
    outcomes = await asyncio.to_thread(broadcasts.entry_outcomes, store, journey_id, broadcast_id)
    return BroadcastOut(**progress.model_dump(), **outcomes)


@router.get(
    "/{journey_id}/schedule", response_model=ScheduleOut, summary="The audience entry's schedule and next fire times"
)
async def get_schedule(journey_id: str, store: StoreDep, client: ClientDep) -> ScheduleOut:
    await journey_or_404(store, journey_id)
    view = await describe_schedule(client, journey_id)
    if view is None:
        raise not_found("schedule", schedule_id(journey_id))
    return ScheduleOut(**view.__dict__)
