"""Tag-audience broadcasts: run one now, watch their progress, see the schedule.

A journey with ``entry audience where ... every day at 10:00`` (or ``once at``)
broadcasts on its Temporal Schedule (``engine.schedules``, kept in step with
deploy/pause/stop by ``sync_audience_schedule``). ``POST .../broadcasts``
starts one more broadcast now, e.g. for a test batch or after changing tags.
Each broadcast is an ``AudienceBroadcastWorkflow`` whose progress row the
store keeps page by page, so the GET routes read the database, not Temporal.

``POST /v1/journeys/audience/preview`` answers, before anything runs, how
many users the audience selects now and who the first of them are (by id),
each with the condition's parts and whether they hold for that user: the
broadcast's own SQL bounds and page selection (``engine.audience``), read
only. For journey text (saved or not) or a deployed journey. Bounds, all
checked before the store is read: the text (``API_SOURCE_CHARS``), the
sample (``MAX_SAMPLE``), the users checked one by one when SQL cannot
decide them (``MAX_CHECKS``: beyond it the count is a range, ``exact``
false), the candidates scanned for the sample (``MAX_SCAN``), and
``MAX_PREVIEWS`` at once in this process (one more is a 503 with
``Retry-After``: each counts the whole user table).
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from api.deps import CacheDep, ClientDep, Operator, SettingsDep, StoreDep, viewer
from api.lookups import deployed_or_409, journey_or_404
from api.problems import Problem, not_found
from api.routes.simulate import journey_of
from api.schemas import API_SOURCE_CHARS, JourneyIdStr
from api.slots import Slots
from contracts.broadcast import DEFAULT_PAGE_SIZE, BroadcastProgress
from dsl.ir import AudienceEntry, CompareCond, iter_conds
from dsl.render_text import describe_cond
from dsl.render_text import describe_schedule as schedule_words
from engine import broadcasts, lifecycle
from engine.activities import JourneyActivities
from engine.audience import DERIVED_PREFIXES, count_audience, explain, full_snapshot_fn, leaf_words, sample_audience
from engine.schedules import describe_schedule, schedule_id, start_broadcast
from engine.settings import Settings
from engine.store import Store

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


MAX_SAMPLE = 100
DEFAULT_SAMPLE = 20
MAX_CHECKS = 500  # undecided users snapshotted one by one (about 10 ms each) before the count becomes a range
MAX_SCAN = 2000  # candidates the sample may scan
MAX_PREVIEWS = 2  # at once in this process
RETRY_AFTER = "5"


class AudiencePreviewIn(BaseModel):
    """The journey whose audience to preview: ``source`` or a deployed
    ``journey_id`` (its current version, or ``version``)."""

    model_config = ConfigDict(extra="forbid")
    source: Annotated[str, StringConstraints(min_length=1, max_length=API_SOURCE_CHARS)] | None = Field(
        None, description="Journey text (saved or not); or give journey_id"
    )
    journey_id: JourneyIdStr | None = Field(None, description="A deployed journey instead of source")
    version: int | None = Field(None, ge=1, le=2**31 - 1, description="Its version (default: the current one)")
    sample_size: int = Field(DEFAULT_SAMPLE, ge=0, le=MAX_SAMPLE, description="How many matching users to list")


class ConditionCheck(BaseModel):
    condition: str = Field(description="A part of the audience's condition, in the operator's words")
    holds: bool = Field(description="Whether it holds for the user now (a part under `not` matches when false)")


class AudienceMember(BaseModel):
    user_id: str
    tags: list[str] = Field(description="The user's tags (stage/RFM are their own fields)")
    stage: str | None = Field(description="Lifecycle stage now, derived as the journey's conditions see it")
    rfm: str | None
    attributes: dict[str, Any] = Field(description="The attributes the condition compares, as stored")
    why: list[ConditionCheck]


class AudiencePreviewOut(BaseModel):
    journey: str
    where: str = Field(description="The audience's condition in words")
    schedule: str
    at: datetime = Field(description="The moment stage, RFM and windows were judged at")
    count: int = Field(description="Users selected now (when exact is false: those surely selected)")
    exact: bool = Field(description="False when too many users needed checking one by one: see at_most")
    at_most: int = Field(description="Users that may be selected (equals count when exact)")
    checked: int = Field(description="Users SQL could not decide, checked one by one")
    sample: list[AudienceMember] = Field(description="The first sample_size selected users, by id")
    took_ms: int


PREVIEWS = Slots(MAX_PREVIEWS)


def _refused(detail: str) -> Problem:
    return Problem(422, detail, title="Preview refused", kind="preview-refused")


def _preview(store: Store, settings: Settings, body: AudiencePreviewIn) -> AudiencePreviewOut:
    """Compile, then count and sample at one ``now``, with the snapshots a
    broadcast judges undecided users by (and the sample's parts by)."""
    if (body.source is None) == (body.journey_id is None):
        raise _refused("give the journey's source or a deployed journey_id (one of them)")
    if body.journey_id is None and body.version is not None:
        raise _refused("version goes with journey_id")
    ir = journey_of(store, body.source, body.journey_id, body.version)
    entry = ir.entry
    if not isinstance(entry, AudienceEntry):
        raise _refused(
            f"the journey enters {'on event' if entry.kind == 'event' else 'by the API'}, not by audience: "
            "only an `entry audience where …` journey has an audience to preview"
        )
    began = time.perf_counter()
    now = datetime.now(UTC)
    cond = entry.where
    snapshot = full_snapshot_fn(JourneyActivities(store, {}, settings), cond, now)
    rules = settings.derived
    counted = count_audience(store, cond, now=now, rules=rules, snapshot=snapshot, max_checks=MAX_CHECKS)
    ids = (
        sample_audience(store, cond, now=now, size=body.sample_size, rules=rules, snapshot=snapshot, max_scan=MAX_SCAN)
        if body.sample_size
        else []
    )
    fields = list(
        dict.fromkeys(c.field for c in iter_conds(cond) if isinstance(c, CompareCond) and c.subject == "user")
    )
    sample = []
    for uid in ids:
        snap = snapshot(uid)
        sample.append(
            AudienceMember(
                user_id=uid,
                tags=sorted(t for t in snap.tags if not t.startswith(DERIVED_PREFIXES)),
                stage=snap.stage,
                rfm=snap.rfm,
                attributes={f: snap.attributes[f] for f in fields if f in snap.attributes},
                why=[ConditionCheck(condition=leaf_words(leaf), holds=holds) for leaf, holds in explain(cond, snap)],
            )
        )
    return AudiencePreviewOut(
        journey=ir.name,
        where=describe_cond(cond),
        schedule=schedule_words(entry.schedule),
        at=now,
        count=counted.count,
        exact=counted.exact,
        at_most=counted.at_most,
        checked=counted.checked,
        sample=sample,
        took_ms=round((time.perf_counter() - began) * 1000),
    )


@router.post(
    "/audience/preview",
    response_model=AudiencePreviewOut,
    summary="How many users an audience entry selects now, and the first of them with why (nothing started)",
)
async def preview_audience(body: AudiencePreviewIn, store: StoreDep, settings: SettingsDep) -> AudiencePreviewOut:
    if not PREVIEWS.take():
        raise Problem(
            503,
            f"{MAX_PREVIEWS} audience previews already running in this process; try again in a few seconds",
            kind="preview-busy",
            headers={"Retry-After": RETRY_AFTER},
        )
    try:
        return await asyncio.to_thread(_preview, store, settings, body)
    finally:
        PREVIEWS.give()


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
