"""Starting a journey for users by API, and ending one user's run.

Only journeys whose entry is ``entry api`` can be started here: event
journeys start on their event (``/v1/track``) and audience journeys by the
broadcast, so an API call can never bypass a trigger's ``where``. The
re-entry rule is enforced by the run itself (``begin_run``), so starting a
user who may not re-enter answers ``started`` but the run ends "refused"
(visible in the user's runs with the reason).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Annotated

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, Field

from api.deps import CacheDep, ClientDep, MetricsDep, Operator, SettingsDep, StoreDep, viewer
from api.lookups import deployed_or_409, journey_or_404, user_or_404
from api.problems import Problem, error_item
from api.schemas import CancelOut, RunOut, StartedRun, StartRunsIn, StartRunsOut, UserIdStr
from contracts.runs import workflow_id
from engine import lifecycle, queries, run_pages
from engine.events import resolve_users
from engine.starts import cancel_run, run_input, start_run

log = logging.getLogger("journeys.api")
router = APIRouter(prefix="/v1/journeys", tags=["runs"], dependencies=[Depends(viewer)])

_CONCURRENCY = 20
DEFAULT_PAGE = 50


class RunPageOut(BaseModel):
    journey_id: str
    runs: list[RunOut]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next (older) page; null on the last page")


@router.get(
    "/{journey_id}/runs",
    response_model=RunPageOut,
    summary="A page of the journey's runs, newest first (of one node, still open, of one version)",
    description=(
        f"At most {run_pages.MAX_PAGE} runs a page (`limit`, default {DEFAULT_PAGE}); `next_cursor` "
        "fetches the next page. A journey with 100k runs waiting is never answered whole."
    ),
)
async def list_runs(
    journey_id: str,
    store: StoreDep,
    limit: Annotated[int, Query(ge=1, le=run_pages.MAX_PAGE)] = DEFAULT_PAGE,
    cursor: Annotated[str | None, Query(min_length=1, max_length=400, description="`next_cursor` of a page")] = None,
    node: Annotated[str | None, Query(min_length=1, max_length=128, description="Runs that reached this node")] = None,
    open: Annotated[bool, Query(description="Only runs still going")] = False,  # noqa: A002 - the query's word
    version: Annotated[int | None, Query(ge=1, le=1_000_000)] = None,
) -> RunPageOut:
    try:
        after = run_pages.run_cursor(run_pages.decode_cursor(cursor))
    except ValueError as exc:
        raise Problem(
            422, f"cursor: {exc}", errors=[error_item("cursor", "pass back a page's next_cursor", field="query.cursor")]
        ) from None
    await journey_or_404(store, journey_id)
    page = await asyncio.to_thread(
        run_pages.journey_runs,
        store,
        journey_id,
        limit=limit,
        cursor=after,
        node_id=node,
        open_only=open,
        version=version,
    )
    return RunPageOut(
        journey_id=journey_id, runs=[RunOut.model_validate(r) for r in page.runs], next_cursor=page.next_cursor
    )


@router.post(
    "/{journey_id}/runs",
    response_model=StartRunsOut,
    status_code=202,
    summary="Start the journey for one user or a list (journeys with `entry api`)",
)
async def start_runs(
    journey_id: str,
    body: StartRunsIn,
    store: StoreDep,
    cache: CacheDep,
    client: ClientDep,
    settings: SettingsDep,
    metrics: MetricsDep,
    _: Operator,
) -> StartRunsOut:
    total = (1 if body.user_id else 0) + len(body.user_ids) + len(body.identities)
    if total == 0:
        raise Problem(422, "name at least one user: user_id, user_ids or identities")
    if total > settings.max_start_users:
        raise Problem(422, f"at most {settings.max_start_users} users per request (got {total})")
    info = await journey_or_404(store, journey_id)
    if info.status != lifecycle.ADMITTING:
        raise Problem(409, f"journey {journey_id!r} is {info.status}; runs can only start while it is active")
    deployed = await deployed_or_409(cache, info)
    if deployed.ir.entry.kind != "api":
        raise Problem(
            409,
            f"journey {journey_id!r} enters on {deployed.ir.entry.kind}, not by API; "
            "event journeys start from /v1/track, audience journeys from their schedule",
        )
    ids = ([body.user_id] if body.user_id else []) + list(body.user_ids)
    identifiers = [(i.kind, i.value) for i in body.identities]
    users = await asyncio.to_thread(resolve_users, store, ids, identifiers, rules=settings.derived)
    gate = asyncio.Semaphore(_CONCURRENCY)

    async def one(uid: str) -> StartedRun:
        async with gate:
            started = await start_run(client, settings.task_queue, run_input(deployed.version, deployed.ir, uid))
        metrics.run_started(journey_id, "api")
        return StartedRun(user_id=uid, workflow_id=started.workflow_id, run_id=started.run_id, started=started.started)

    runs = await asyncio.gather(*(one(u) for u in users))
    return StartRunsOut(journey_id=journey_id, version=deployed.version.version, runs=list(runs))


@router.delete(
    "/{journey_id}/runs/{user_id}", response_model=CancelOut, status_code=202, summary="Cancel one user's running run"
)
async def cancel(journey_id: str, user_id: UserIdStr, store: StoreDep, client: ClientDep, _: Operator) -> CancelOut:
    await journey_or_404(store, journey_id)
    uid = await user_or_404(store, user_id)
    runs = await asyncio.to_thread(queries.open_runs, store, uid, journey_id)
    targets = list(dict.fromkeys([r.workflow_id for r in runs]))
    if not targets:
        # Started a moment ago and not registered yet: try the canonical id.
        targets = [workflow_id(journey_id, uid)]
    cancelled = [
        wid
        for wid, ok in zip(targets, await asyncio.gather(*(cancel_run(client, w) for w in targets)), strict=True)
        if ok
    ]
    if not cancelled:
        raise Problem(404, f"user {user_id!r} has no running run of journey {journey_id!r}", kind="run-not-found")
    return CancelOut(
        journey_id=journey_id,
        user_id=uid,
        workflow_id=cancelled[0],
        cancelled=True,
        detail="cancellation requested; the run records 'cancelled' when it has stopped",
    )
