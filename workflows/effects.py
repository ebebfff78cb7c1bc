"""Everything the run asks of the engine besides its records: side effects
(begin, send, coupon, tags) and reads of the user (snapshots), called by
their registered names (``contracts.names``: this layer imports
nothing of ``engine/``).

This module must stay free of side effects.
"""

from __future__ import annotations

from typing import Any, TypeVar
from zoneinfo import ZoneInfo

from temporalio import workflow

from contracts import names
from contracts.activities import EventCountQuery, UserSnapshot, UserSnapshotRequest
from contracts.conditions import count_queries
from workflows.activity_options import ACTIVITY_RETRY, LOCAL_TIMEOUT, SIDE_EFFECT_DEADLINE, SIDE_EFFECT_TIMEOUT
from workflows.goals_exits import check_user_exits
from workflows.localtime import zone
from workflows.run import Run

_R = TypeVar("_R")


async def effect(run: Run, name: str, result_type: type[_R] | None, request: Any, *, deadline: bool = True) -> _R:
    """Run a side effect. On the local-effects revision it is a local
    activity: no round trip through the server, and its result is a marker
    in the next workflow task completion. Idempotency keys make either kind
    safe to retry after a crash. ``deadline`` bounds how long retries may go
    on (sends and coupons give up after an hour and record a failure)."""
    execute = workflow.execute_local_activity if run.local_effects else workflow.execute_activity
    return await execute(
        name,
        request,
        result_type=result_type,
        start_to_close_timeout=SIDE_EFFECT_TIMEOUT,
        schedule_to_close_timeout=SIDE_EFFECT_DEADLINE if deadline else None,
        retry_policy=ACTIVITY_RETRY,
    )


async def snapshot(
    run: Run, templates: list[str] | None = None, counts: list[EventCountQuery] | None = None
) -> UserSnapshot:
    """The user as the engine knows them now; exit rules on the user are
    checked on every snapshot (an exit raises ``Exited``)."""
    exit_counts = [q for rule in run.inp.ir.exits for q in count_queries(rule.cond)]
    user = await workflow.execute_local_activity(
        names.USER_SNAPSHOT,
        UserSnapshotRequest(
            user_id=run.inp.user_id,
            now=workflow.now(),
            event_counts=(counts or []) + exit_counts,
            templates=templates or [],
        ),
        result_type=UserSnapshot,
        start_to_close_timeout=LOCAL_TIMEOUT,
        retry_policy=ACTIVITY_RETRY,
    )
    check_user_exits(run, user)
    return user


async def user_zone(run: Run) -> ZoneInfo:
    """The user's time zone (else the journey's), read from a snapshot."""
    user = await snapshot(run)
    return zone(user.timezone, run.inp.ir.timezone)
