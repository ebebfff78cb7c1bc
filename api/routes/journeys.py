"""Deploying journeys and moving them through their lifecycle.

The lifecycle (``draft → active ⇄ paused → stopped → archived``) is
``engine.lifecycle``'s; a move it refuses answers 409 with the current
status and the allowed ones. ``resume`` admits entries (a draft's first
activation, or after a pause; nothing dropped meanwhile is replayed);
``stop`` also cancels every running run through a Temporal batch
operation; ``archive`` needs no open run (and stops an active or paused
journey on the way). Redeploying keeps the status; a new version applies to
new entries only, running runs stay on the version they entered.
"""

from __future__ import annotations

import asyncio
import difflib
import logging
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Response
from fastapi.responses import PlainTextResponse
from temporalio.client import Client

from api.deps import (
    Admin,
    CacheDep,
    ClientDep,
    Operator,
    OptionalClientDep,
    SettingsDep,
    StopJobsDep,
    StoreDep,
    viewer,
)
from api.lookups import deployed_or_409, journey_or_404
from api.problems import Problem, diagnostic_item, error_item, not_found
from api.schemas import (
    DeployIn,
    DeployOut,
    DiffOut,
    ErrorItem,
    JourneyDetail,
    JourneyOut,
    StatusOut,
    StopOut,
    VersionOut,
    VersionSourceOut,
)
from api.settings import ApiSettings
from dsl import JourneyError, Registry, check, compile_source, parse
from dsl.errors import Diagnostic
from dsl.ids import slug
from dsl.ir import EventEntry, Journey
from dsl.render import to_mermaid, to_svg
from engine import catalog, lifecycle, queries, stats, stopping
from engine.catalog import JourneyInfo, StatusChange, VersionInfo
from engine.derived import profiles
from engine.journey_cache import Deployed, JourneyCache
from engine.node_numbers import diagram_counts, live_waiting, node_rows
from engine.schedules import ScheduleUnavailable, past_one_off, sync_current
from engine.store import Store
from engine.templates import list_templates
from engine.visibility import running_count

log = logging.getLogger("journeys.api")
router = APIRouter(prefix="/v1/journeys", tags=["journeys"], dependencies=[Depends(viewer)])


def _warnings(diags: list[Diagnostic]) -> list[ErrorItem]:
    return [ErrorItem(**diagnostic_item(d)) for d in diags if d.severity == "warning"]


def _entry(ir: Journey | None) -> tuple[str | None, str | None]:
    if ir is None:
        return None, None
    return ir.entry.kind, ir.entry.event if isinstance(ir.entry, EventEntry) else None


def _summary(info: JourneyInfo, version: VersionInfo | None, ir: Journey | None) -> JourneyOut:
    kind, event = _entry(ir)
    return JourneyOut(
        id=info.id,
        name=info.name,
        status=info.status,  # type: ignore[arg-type]
        current_version=info.current_version,
        hash=version.hash if version else None,
        entry=kind,
        entry_event=event,
    )


def _detail(store: Store, cache: JourneyCache, info: JourneyInfo, settings: ApiSettings) -> JourneyDetail:
    versions = catalog.list_versions(store, info.id)
    current = next((v for v in versions if v.version == info.current_version), None)
    deployed = cache.current(info) if current else None
    ir = deployed.ir if deployed else None
    warnings: list[ErrorItem] = []
    if current is not None:
        try:
            warnings = _warnings(check(parse(current.source), current.source, global_daily_limit=settings.cap_per_day))
        except Exception:  # noqa: BLE001 - stored source compiled once; warnings are a courtesy
            log.warning("could not re-check journey %s", info.id, exc_info=True)
    base = _summary(info, current, ir)
    return JourneyDetail(
        **base.model_dump(),
        description=ir.description if ir else None,
        source=current.source if current else "",
        versions=[
            VersionOut(version=v.version, hash=v.hash, status=v.status, created_at=v.created_at) for v in versions
        ],
        warnings=warnings,
    )


def _compile(body: DeployIn, store: Store, settings: ApiSettings) -> tuple[Journey, list[Diagnostic]]:
    registry = Registry(profiles=profiles(settings.derived))
    if body.check_references:
        registry.templates = {t.name for t in list_templates(store)}
        registry.pools = {p.name for p in queries.list_pools(store)}
        registry.priorities = {j: p for j, p in catalog.priorities(store).items() if j != body.id}
    warnings: list[Diagnostic] = []
    try:
        journey = compile_source(
            body.source, "<deploy>", registry=registry, global_daily_limit=settings.cap_per_day, warnings=warnings
        )
    except JourneyError as exc:
        errors = [diagnostic_item(d) for d in exc.diagnostics]
        n = len(exc.errors)
        first = exc.errors[0] if exc.errors else None
        where = f" (first at line {first.line}, column {first.column}: {first.message})" if first else ""
        raise Problem(
            422, f"the journey has {n} error{'s' if n != 1 else ''}{where}", kind="journey-invalid", errors=errors
        ) from None
    except RecursionError:
        raise Problem(
            422,
            "the journey is nested too deeply to compile",
            kind="journey-invalid",
            errors=[error_item("E000", "nested too deeply", line=1, column=1)],
        ) from None
    return journey, warnings


def _is_current(cache: JourneyCache, existing: JourneyInfo | None, journey: Journey) -> bool:
    """This text is the journey's current version already (a repeated deploy)."""
    deployed = cache.current(existing) if existing is not None else None
    return deployed is not None and deployed.version.hash == journey.content_hash()


def _refuse_past_one_off(journey: Journey) -> None:
    """A new version whose ``once at`` is already past would never fire: say
    so instead of deploying a broadcast that silently never runs (a repeated
    deploy of the current version is let through: its one-off may have run)."""
    past = past_one_off(journey)
    if past is not None:
        raise Problem(422, past.message, kind="journey-invalid", errors=[diagnostic_item(past)])


@router.post(
    "",
    response_model=DeployOut,
    status_code=201,
    summary="Deploy journey text (new version unless the compiled hash is unchanged)",
    responses={200: {"model": DeployOut, "description": "Unchanged: same hash as the current version"}},
)
async def deploy(
    body: DeployIn,
    response: Response,
    store: StoreDep,
    cache: CacheDep,
    client: OptionalClientDep,
    settings: SettingsDep,
    _: Operator,
) -> DeployOut:
    journey, warnings = await asyncio.to_thread(_compile, body, store, settings)
    journey_id = body.id or slug(journey.name)
    existing = await asyncio.to_thread(queries.get_journey, store, journey_id)
    if existing is not None and existing.status == "archived":
        raise Problem(409, f"journey {journey_id!r} is archived; deploy it under another id")
    if not await asyncio.to_thread(_is_current, cache, existing, journey):
        _refuse_past_one_off(journey)
    version = await asyncio.to_thread(
        catalog.publish,
        store,
        journey_id,
        name=journey.name,
        source=body.source,
        ir=journey.model_dump(mode="json"),
        hash=journey.content_hash(),
        draft=body.draft,
    )
    created = existing is None or existing.current_version != version.version
    response.status_code = 201 if created else 200
    info = await asyncio.to_thread(queries.get_journey, store, journey_id)
    assert info is not None
    # Every deploy (also an unchanged one, so a retry mends a failed sync)
    # brings the tag-audience schedule in line with the current version.
    await _sync_schedule(client, store, settings, journey_id, info.status)
    log.info("deployed journey %s v%s (%s)", journey_id, version.version, "new" if created else "unchanged")
    return DeployOut(
        journey=_detail(store, cache, info, settings),
        version=version.version,
        created=created,
        warnings=_warnings(warnings),
    )


@router.get("", response_model=list[JourneyOut], summary="List journeys")
def list_all(store: StoreDep, cache: CacheDep, include_archived: bool = False) -> list[JourneyOut]:
    out = []
    for info in catalog.list_journeys(store):
        if info.status == "archived" and not include_archived:
            continue
        deployed = cache.current(info)
        out.append(_summary(info, deployed.version if deployed else None, deployed.ir if deployed else None))
    return out


@router.get("/{journey_id}", response_model=JourneyDetail, summary="A journey: source, versions, status, warnings")
def get_one(journey_id: str, store: StoreDep, cache: CacheDep, settings: SettingsDep) -> JourneyDetail:
    info = queries.get_journey(store, journey_id)
    if info is None:
        raise not_found("journey", journey_id)
    return _detail(store, cache, info, settings)


VersionParam = Annotated[int | None, Query(ge=1, le=1_000_000)]


@router.get(
    "/{journey_id}/versions/{version}", response_model=VersionSourceOut, summary="One version's source (any version)"
)
async def version_source(
    journey_id: str, version: Annotated[int, Path(ge=1, le=1_000_000)], store: StoreDep
) -> VersionSourceOut:
    await journey_or_404(store, journey_id)
    found = await asyncio.to_thread(catalog.get_version, store, journey_id, version)
    if found is None:
        raise Problem(404, f"journey {journey_id!r} has no version {version}", kind="version-not-found")
    return VersionSourceOut(
        journey_id=journey_id,
        version=found.version,
        hash=found.hash,
        status=found.status,
        created_at=found.created_at,
        source=found.source,
    )


@router.get("/{journey_id}/diff", response_model=DiffOut, summary="Unified diff of two versions' sources")
async def diff(
    journey_id: str,
    store: StoreDep,
    from_: Annotated[int | None, Query(alias="from", ge=1, le=1_000_000)] = None,
    to: VersionParam = None,
) -> DiffOut:
    info = await journey_or_404(store, journey_id)
    if info.current_version is None:
        raise Problem(409, f"journey {journey_id!r} has no deployed version")
    to_v = to or info.current_version
    from_v = from_ or max(1, to_v - 1)
    a = await asyncio.to_thread(catalog.get_version, store, journey_id, from_v)
    b = await asyncio.to_thread(catalog.get_version, store, journey_id, to_v)
    if a is None or b is None:
        missing = from_v if a is None else to_v
        raise Problem(404, f"journey {journey_id!r} has no version {missing}", kind="version-not-found")
    text = "".join(
        difflib.unified_diff(
            a.source.splitlines(keepends=True),
            b.source.splitlines(keepends=True),
            fromfile=f"{journey_id}@v{from_v}",
            tofile=f"{journey_id}@v{to_v}",
        )
    )
    return DiffOut(journey_id=journey_id, from_version=from_v, to_version=to_v, diff=text)


async def _version_ir(cache: JourneyCache, store: Store, journey_id: str, version: int | None) -> Deployed:
    info = await journey_or_404(store, journey_id)
    if version is None:
        return await deployed_or_409(cache, info)
    found = await asyncio.to_thread(cache.pinned, info, version)
    if found is None:
        raise Problem(404, f"journey {journey_id!r} has no version {version}", kind="version-not-found")
    return found


@router.get(
    "/{journey_id}/graph.svg",
    summary="The journey as an SVG diagram, optionally with live counts",
    response_class=Response,
    responses={200: {"content": {"image/svg+xml": {}}}},
)
async def graph_svg(
    journey_id: str,
    store: StoreDep,
    cache: CacheDep,
    client: OptionalClientDep,
    counts: bool = False,
    version: VersionParam = None,
) -> Response:
    ir = (await _version_ir(cache, store, journey_id, version)).ir
    numbers = None
    if counts:
        node_counts = await asyncio.to_thread(stats.node_counts, store, journey_id, version)
        stored = stats.if_fresh(node_counts, store, journey_id, version)
        waiting, _ = await live_waiting(client, journey_id, ir, version, stored, store)
        numbers = diagram_counts(node_rows(ir, node_counts, waiting))
    svg = await asyncio.to_thread(to_svg, ir, numbers)
    return Response(svg, media_type="image/svg+xml")


@router.get(
    "/{journey_id}/graph.mmd",
    summary="The journey as a Mermaid flowchart",
    response_class=PlainTextResponse,
)
async def graph_mermaid(
    journey_id: str, store: StoreDep, cache: CacheDep, version: VersionParam = None
) -> PlainTextResponse:
    deployed = await _version_ir(cache, store, journey_id, version)
    return PlainTextResponse(to_mermaid(deployed.ir))


async def _move(store: Store, journey_id: str, path: list[str]) -> StatusChange:
    """The lifecycle move (one the lifecycle refuses raises
    ``IllegalTransition``, answered 409 by ``api.problems``)."""
    try:
        return await asyncio.to_thread(catalog.change_status, store, journey_id, path)
    except KeyError:
        raise not_found("journey", journey_id) from None


async def _sync_schedule(
    client: Client | None, store: Store, settings: ApiSettings, journey_id: str, status: str
) -> None:
    """The audience schedule in line with the journey (``engine.schedules``),
    or 503: syncing is idempotent, the caller retries."""
    try:
        await sync_current(client, store, journey_id, status, task_queue=settings.task_queue)
    except ScheduleUnavailable as exc:
        raise Problem(503, f"{exc}; retry") from exc


@router.post("/{journey_id}/pause", response_model=StatusOut, summary="Stop admitting new entries; running runs go on")
async def pause(
    journey_id: str, store: StoreDep, client: OptionalClientDep, settings: SettingsDep, _: Operator
) -> StatusOut:
    change = await _move(store, journey_id, ["paused"])
    await _sync_schedule(client, store, settings, journey_id, "paused")
    return StatusOut(
        id=journey_id,
        status="paused",
        previous_status=change.previous,
        note="no new entries; events that would have started a run are dropped until resumed",
    )


@router.post(
    "/{journey_id}/resume",
    response_model=StatusOut,
    summary="Admit entries: a draft's first activation, or after a pause (nothing dropped is replayed)",
)
async def resume(
    journey_id: str, store: StoreDep, client: OptionalClientDep, settings: SettingsDep, _: Operator
) -> StatusOut:
    change = await _move(store, journey_id, ["active"])
    await _sync_schedule(client, store, settings, journey_id, "active")
    return StatusOut(
        id=journey_id,
        status="active",
        previous_status=change.previous,
        note="entries are admitted from now on; entries dropped while not active are not replayed",
    )


def _stop_out(journey_id: str, status: str, progress: stopping.StopProgress | None, running: int | None) -> StopOut:
    if progress is None:
        return StopOut(
            journey_id=journey_id, status=status, job_id=None, method="none", state="none", running_now=running
        )
    return StopOut(
        journey_id=journey_id,
        status=status,
        job_id=progress.job_id,
        method=progress.method,  # type: ignore[arg-type]
        state=progress.state,
        total=progress.total,
        completed=progress.completed,
        failed=progress.failed,
        error=progress.error,
        running_now=running,
    )


@router.post(
    "/{journey_id}/stop",
    response_model=StopOut,
    status_code=202,
    summary="No new entries, and cancel every running run in bulk (Temporal batch operation)",
    description=(
        "Stopping a stopped journey again starts a new cancel job (runs a failed or queued job left). When "
        "Temporal refuses the job, the journey is stopped all the same and the job is queued (method "
        "`queued`, the refusal in `error`) and retried in the background."
    ),
)
async def stop(
    journey_id: str, store: StoreDep, settings: SettingsDep, client: ClientDep, jobs: StopJobsDep, _: Operator
) -> StopOut:
    info = await journey_or_404(store, journey_id)
    if info.status != "stopped":
        await _move(store, journey_id, ["stopped"])
    await _sync_schedule(client, store, settings, journey_id, "stopped")
    progress = await stopping.start_stop(client, journey_id, jobs)
    log.info("stopping journey %s: job %s (%s)", journey_id, progress.job_id, progress.method)
    return _stop_out(journey_id, "stopped", progress, None)


@router.get("/{journey_id}/stop", response_model=StopOut, summary="Progress of the journey's latest stop")
async def stop_progress(
    journey_id: str,
    store: StoreDep,
    client: ClientDep,
    jobs: StopJobsDep,
    job_id: Annotated[str | None, Query(max_length=200)] = None,
) -> StopOut:
    info = await journey_or_404(store, journey_id)
    progress = await stopping.describe(client, journey_id, jobs, job_id)
    if job_id is not None and progress is None:
        raise Problem(404, f"no stop job {job_id!r} for journey {journey_id!r}", kind="job-not-found")
    try:
        running = await running_count(client, journey_id)
    except Exception:  # noqa: BLE001 - progress still answers
        running = None
    return _stop_out(journey_id, info.status, progress, running)


@router.post("/{journey_id}/archive", response_model=StatusOut, summary="Archive a journey with no open runs (admin)")
async def archive(
    journey_id: str, store: StoreDep, client: OptionalClientDep, settings: SettingsDep, _: Admin
) -> StatusOut:
    info = await journey_or_404(store, journey_id)
    if info.status == "archived":
        return StatusOut(id=journey_id, status="archived", previous_status="archived", note="already archived")
    open_runs = await asyncio.to_thread(queries.count_open_runs, store, journey_id)
    if open_runs:
        raise Problem(409, f"journey {journey_id!r} still has {open_runs} open run(s); stop it first")
    change = await _move(store, journey_id, lifecycle.path_to_archive(info.status))
    await _sync_schedule(client, store, settings, journey_id, "archived")
    return StatusOut(id=journey_id, status="archived", previous_status=change.previous, note="read-only from now on")
