"""Temporal Schedules for tag-audience entries.

``entry audience where ... every day at 10:00`` / ``every monday at 09:30`` /
``once at 2026-12-01 10:00`` becomes one Temporal Schedule per journey, in the
journey's time zone, whose action starts ``AudienceBroadcastWorkflow`` with the
journey's current version. Temporal keeps time (and survives our restarts);
the broadcast's workflow id is ``broadcast:<journey>`` plus the fire time that
Temporal appends, so each fire is its own broadcast with its own progress row.

:func:`sync_audience_schedule` is the one call the service makes on every
change of a journey (deploy, pause, resume, stop, archive); it is idempotent:

- active journey with an audience entry → schedule created, or updated to the
  new version/IR/time and unpaused;
- paused → schedule paused (fires while paused are skipped, not caught up
  later: resuming does not flood users with what came due meanwhile);
- draft (nothing fires before its first activation), stopped / archived, or
  the new version has another kind of entry → deleted (or never made).

Overlap policy SKIP: a daily broadcast still running at the next fire is not
doubled. Catch-up window ``CATCHUP``: if the Temporal server was down at fire
time, the broadcast still runs when it is back within that window.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from temporalio.client import (
    Client,
    Schedule,
    ScheduleActionStartWorkflow,
    ScheduleAlreadyRunningError,
    ScheduleCalendarSpec,
    ScheduleHandle,
    SchedulePolicy,
    ScheduleRange,
    ScheduleSpec,
    ScheduleState,
    ScheduleUpdate,
    ScheduleUpdateInput,
)
from temporalio.service import RPCError, RPCStatusCode

from contracts.broadcast import DEFAULT_PAGE_SIZE, BroadcastInput, broadcast_workflow_id
from contracts.names import BROADCAST_WORKFLOW
from dsl.errors import Diagnostic
from dsl.ir import AudienceEntry, Journey
from dsl.ir import Schedule as IrSchedule
from engine import catalog
from engine.catalog import VersionInfo
from engine.store import Store
from engine.temporal import TASK_QUEUE, broadcast_task_queue

log = logging.getLogger("journeys.schedules")
CATCHUP = timedelta(hours=6)
SyncResult = Literal["created", "updated", "deleted", "absent"]


def schedule_id(journey_id: str) -> str:
    return f"audience:{journey_id}"


def calendar_for(schedule: IrSchedule) -> ScheduleCalendarSpec:
    """The IR's schedule as a Temporal calendar (IR weekday 0 = Monday;
    Temporal's day_of_week 0 = Sunday)."""
    hour, minute = (int(x) for x in schedule.time.split(":"))
    fields: dict[str, object] = {"hour": [ScheduleRange(hour)], "minute": [ScheduleRange(minute)]}
    if schedule.every == "week":
        if schedule.weekday is None:
            raise ValueError("a weekly schedule needs a weekday")
        fields["day_of_week"] = [ScheduleRange((schedule.weekday + 1) % 7)]
    elif schedule.every == "once":
        if not schedule.date:
            raise ValueError("a one-off schedule needs a date")
        year, month, day = (int(x) for x in schedule.date.split("-"))
        fields.update(year=[ScheduleRange(year)], month=[ScheduleRange(month)], day_of_month=[ScheduleRange(day)])
    return ScheduleCalendarSpec(**fields)  # type: ignore[arg-type]


def one_off_time(ir: Journey) -> datetime | None:
    """When a ``once at`` audience entry fires (aware, in the journey's time
    zone); None for any other entry."""
    entry = ir.entry
    if not isinstance(entry, AudienceEntry) or entry.schedule.every != "once" or not entry.schedule.date:
        return None
    try:
        return once_moment(entry.schedule, ZoneInfo(ir.timezone))
    except (ValueError, ZoneInfoNotFoundError):  # the language checker reports these (E227, …)
        return None


def once_moment(schedule: IrSchedule, zone: ZoneInfo) -> datetime:
    """A ``once at`` schedule's date and time in ``zone`` (``ValueError``
    for an impossible one)."""
    return datetime.fromisoformat(f"{schedule.date}T{schedule.time}").replace(tzinfo=zone)


def past_one_off(ir: Journey, now: datetime | None = None) -> Diagnostic | None:
    """E240 when a ``once at`` time is already past: Temporal schedules look
    forward, so it would never fire. Checked when a new version is deployed
    (and by the editor's check), not by the language checker: it depends on
    the clock."""
    fires = one_off_time(ir)
    if fires is None:
        return None
    now = (now or datetime.now(UTC)).astimezone(fires.tzinfo)
    if fires > now:
        return None
    span = getattr(ir.entry, "span", None)
    return Diagnostic(
        "E240",
        f"once at {fires:%Y-%m-%d %H:%M} is already past (it is {now:%Y-%m-%d %H:%M} in {ir.timezone}): "
        "this broadcast would never run",
        span.line if span else 1,
        span.column if span else 1,
        hint="pick a later time, or start the broadcast now with POST /v1/journeys/<id>/broadcasts",
    )


async def start_broadcast(
    client: Client, task_queue: str, version: VersionInfo, ir: Journey, *, trigger: str, page_size: int
) -> str:
    """Broadcast the deployed version now (``trigger`` says who asked);
    answers the broadcast's workflow id. ``task_queue`` is the journey runs'
    queue; the broadcast itself runs on ``broadcast_task_queue(task_queue)``."""
    wid = broadcast_workflow_id(version.journey_id, uuid.uuid4().hex[:12])
    inp = BroadcastInput(
        journey_id=version.journey_id,
        version=version.version,
        hash=version.hash,
        ir=ir,
        trigger=trigger,
        page_size=page_size,
        task_queue=task_queue,
    )
    await client.start_workflow(BROADCAST_WORKFLOW, inp, id=wid, task_queue=broadcast_task_queue(task_queue))
    return wid


def build_schedule(
    journey_id: str,
    version: int,
    hash: str,
    ir: Journey,
    *,
    paused: bool = False,
    task_queue: str = TASK_QUEUE,
    page_size: int = DEFAULT_PAGE_SIZE,
) -> Schedule:
    """The journey's schedule: its fires start the broadcast on the broadcast
    queue of ``task_queue``, and the runs it starts go to ``task_queue``."""
    entry = ir.entry
    if not isinstance(entry, AudienceEntry):
        raise ValueError(f"journey {journey_id} has no audience entry")
    inp = BroadcastInput(
        journey_id=journey_id,
        version=version,
        hash=hash,
        ir=ir,
        trigger="schedule",
        page_size=page_size,
        task_queue=task_queue,
    )
    return Schedule(
        action=ScheduleActionStartWorkflow(
            BROADCAST_WORKFLOW,
            inp,
            id=f"broadcast:{journey_id}",
            task_queue=broadcast_task_queue(task_queue),
        ),
        spec=ScheduleSpec(calendars=[calendar_for(entry.schedule)], time_zone_name=ir.timezone),
        policy=SchedulePolicy(catchup_window=CATCHUP),
        state=ScheduleState(paused=paused, note=f"journey {journey_id} v{version}"),
    )


async def sync_audience_schedule(
    client: Client,
    journey_id: str,
    version: int,
    hash: str,
    ir: Journey | None,
    *,
    status: str = "active",
    task_queue: str = TASK_QUEUE,
    page_size: int = DEFAULT_PAGE_SIZE,
) -> SyncResult:
    """Make the journey's schedule match its current version and status."""
    sid = schedule_id(journey_id)
    wanted = ir is not None and isinstance(ir.entry, AudienceEntry) and status in ("active", "paused")
    if not wanted:
        return "deleted" if await _delete(client.get_schedule_handle(sid)) else "absent"
    assert ir is not None
    paused = status == "paused"
    schedule = build_schedule(journey_id, version, hash, ir, paused=paused, task_queue=task_queue, page_size=page_size)
    try:
        await client.create_schedule(sid, schedule)
        return "created"
    except ScheduleAlreadyRunningError:
        pass
    handle = client.get_schedule_handle(sid)

    def replace(_: ScheduleUpdateInput) -> ScheduleUpdate:
        return ScheduleUpdate(schedule=schedule)

    await handle.update(replace)
    desc = await handle.describe()
    if desc.schedule.state.paused != paused:
        note = f"journey {journey_id} {status}"
        await (handle.pause(note=note) if paused else handle.unpause(note=note))
    return "updated"


async def _delete(handle: ScheduleHandle) -> bool:
    try:
        await handle.delete()
        return True
    except RPCError as err:
        if err.status == RPCStatusCode.NOT_FOUND:
            return False
        raise


class ScheduleUnavailable(RuntimeError):
    """The schedule could not be brought in line (Temporal unreachable or
    refusing); syncing is idempotent, so the caller retries."""


async def sync_current(
    client: Client | None, store: Store, journey_id: str, status: str, *, task_queue: str = TASK_QUEUE
) -> None:
    """Create, update, pause or delete the journey's schedule to match its
    current version and ``status`` (called on every deploy and lifecycle
    move; a no-op for journeys without an audience entry and no schedule)."""
    version = await asyncio.to_thread(catalog.get_version, store, journey_id)
    if version is None:
        return
    ir = Journey.model_validate(version.ir)
    if client is None:
        if isinstance(ir.entry, AudienceEntry):
            raise ScheduleUnavailable("Temporal is not reachable: the audience schedule could not be set")
        return
    try:
        await sync_audience_schedule(
            client, journey_id, version.version, version.hash, ir, status=status, task_queue=task_queue
        )
    except Exception as exc:  # noqa: BLE001 - any failure: the caller retries (idempotent)
        log.exception("could not sync the schedule of journey %s", journey_id)
        raise ScheduleUnavailable(f"the audience schedule could not be updated ({type(exc).__name__})") from exc


async def requeue_old_schedules(client: Client, store: Store, *, task_queue: str = TASK_QUEUE) -> list[str]:
    """Schedules made before broadcasts had their own queue start them on the
    runs' queue, where a broadcast's own steps wait behind the runs it starts
    (7 minutes at 4k users). The service calls this once it reaches Temporal,
    so they move at its start instead of at each journey's next deploy: one
    ``describe`` per active or paused audience journey, an update only for a
    schedule whose broadcast goes elsewhere. A missing schedule is left to
    the next deploy or lifecycle move (creating one here could fire a
    broadcast nobody asked for today). Answers the journeys moved."""
    wanted = broadcast_task_queue(task_queue)
    moved: list[str] = []
    for info in await asyncio.to_thread(catalog.list_journeys, store):
        if info.status not in ("active", "paused"):
            continue
        version = await asyncio.to_thread(catalog.get_version, store, info.id)
        ir = Journey.model_validate(version.ir) if version is not None else None
        if version is None or ir is None or not isinstance(ir.entry, AudienceEntry):
            continue
        try:
            desc = await client.get_schedule_handle(schedule_id(info.id)).describe()
        except RPCError as err:
            if err.status == RPCStatusCode.NOT_FOUND:
                continue
            raise
        action = desc.schedule.action
        if isinstance(action, ScheduleActionStartWorkflow) and action.task_queue == wanted:
            continue
        await sync_audience_schedule(
            client, info.id, version.version, version.hash, ir, status=info.status, task_queue=task_queue
        )
        log.info("moved the schedule of journey %s to %s", info.id, wanted)
        moved.append(info.id)
    return moved


@dataclass(frozen=True)
class ScheduleView:
    schedule_id: str
    paused: bool
    note: str | None
    time_zone: str | None
    next_runs: list[datetime]  # the next five fire times
    recent_broadcasts: list[str]  # workflow ids of the latest broadcasts it started


async def describe_schedule(client: Client, journey_id: str) -> ScheduleView | None:
    """The journey's schedule as Temporal holds it; None when it has none."""
    sid = schedule_id(journey_id)
    try:
        desc = await client.get_schedule_handle(sid).describe()
    except RPCError as err:
        if err.status == RPCStatusCode.NOT_FOUND:
            return None
        raise
    return ScheduleView(
        schedule_id=sid,
        paused=desc.schedule.state.paused,
        note=desc.schedule.state.note,
        time_zone=desc.schedule.spec.time_zone_name,
        next_runs=list(desc.info.next_action_times[:5]),
        recent_broadcasts=[a.action.workflow_id for a in desc.info.recent_actions if hasattr(a.action, "workflow_id")],
    )
