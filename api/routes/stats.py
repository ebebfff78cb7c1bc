"""Per-node, per-variant and over-time numbers of a journey.

``?since=<ISO time>&bucket=1h`` adds a series of buckets (entries, sends,
suppressions, failures, conversions) from ``since`` to now (or ``until``);
``?start=<ISO time>&readouts=3h,6h,12h`` adds cumulative readouts at those
offsets after ``start`` — the SMS campaign's "how are we doing after 3, 6 and
12 hours" — in all and per variant; ``?broadcast=<id>`` instead measures them
from that broadcast's start, over the runs it entered. Both are capped at
1000 buckets / 20 readouts. ``?per_entry=friend_joined`` counts that event
per entered user after entry, per variant: a referral campaign's "new users
won / users reached".

Clicks on tracked links (``engine.tracked_links``) are beside them: per
node, the clicks and the messages clicked over those sent; per variant, the
clicks and the runs that clicked over those entered.

A journey with over ``stats.BIG_RUNS`` runs whose numbers nobody has counted
yet (in any API process: ``engine.shelf``) answers 503 with ``Retry-After``
while they are counted in the background, instead of holding the call for
the seconds that takes; once counted, they are served kept.

Conversions everywhere here are the goal judged from the stored events
(``engine.goals``): the user did the goal's event within its window after
entering, whether or not the run has ended.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import re
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, Depends, Query

from api.deps import CacheDep, OptionalClientDep, SettingsDep, StoreDep, viewer
from api.lookups import journey_or_404
from api.problems import Problem, error_item
from api.routes.splits import split_test_rows
from api.stats_schemas import (
    BucketOut,
    GoalOut,
    NodeStatsOut,
    PerEntryOut,
    ReadoutOut,
    StatsOut,
    SummaryOut,
    VariantOut,
)
from dsl.durations import parse_duration
from engine import broadcasts, experiments, goals, queries, stats
from engine.count_cache import Counting
from engine.node_numbers import live_waiting, node_rows, waiting_age
from engine.store import Store
from engine.store.types import utc, utcnow

router = APIRouter(prefix="/v1/journeys", tags=["stats"], dependencies=[Depends(viewer)])

T = TypeVar("T")
MAX_BUCKETS = 1000
COUNTING_RETRY_AFTER = 2  # seconds: a 100k journey's first counts take a few
MAX_DURATION = timedelta(days=366)
_DURATION_TEXT = re.compile(r"(\d{1,6}[wdhms])+")  # what ?bucket= and ?readouts= accept: 30m, 12h, 1d12h
_EARLIEST = datetime(1970, 1, 2)
_LATEST = datetime(2200, 1, 1)


def _time(name: str, value: datetime | None) -> datetime | None:
    if value is None:
        return None
    try:
        value = utc(value)
    except (OverflowError, ValueError):
        raise Problem(
            422, f"{name} is out of range", errors=[error_item("out_of_range", "out of range", field=f"query.{name}")]
        ) from None
    if not (utc(_EARLIEST) <= value <= utc(_LATEST)):
        raise Problem(
            422,
            f"{name} must be between 1970 and 2200",
            errors=[error_item("out_of_range", "out of range", field=f"query.{name}")],
        )
    return value


def duration(text: str) -> timedelta:
    """A query's duration in the language's words (``dsl.durations``): more
    than nothing and at most a year."""
    cleaned = text.strip()
    seconds = parse_duration(cleaned) if _DURATION_TEXT.fullmatch(cleaned) else 0
    if seconds <= 0:
        raise ValueError(f"{text!r} is not a duration like 30m, 1h, 12h or 2d")
    if seconds > MAX_DURATION.total_seconds():
        raise ValueError(f"{text!r} is longer than a year")
    return timedelta(seconds=seconds)


def _duration(name: str, text: str) -> timedelta:
    try:
        return duration(text)
    except ValueError as exc:
        raise Problem(422, str(exc), errors=[error_item("duration", str(exc), field=f"query.{name}")]) from None


@router.get("/{journey_id}/stats", response_model=StatsOut, summary="Node, variant, goal and over-time numbers")
async def journey_stats(
    journey_id: str,
    store: StoreDep,
    cache: CacheDep,
    client: OptionalClientDep,
    settings: SettingsDep,
    version: Annotated[int | None, Query(ge=1, le=1_000_000)] = None,
    since: datetime | None = None,
    until: datetime | None = None,
    bucket: Annotated[str, Query(max_length=16)] = "1h",
    start: datetime | None = None,
    readouts_: Annotated[str, Query(alias="readouts", max_length=200)] = "3h,6h,12h",
    broadcast: Annotated[
        str | None,
        Query(
            min_length=1,
            max_length=255,
            description="A broadcast of this journey: readouts are hours after its start, over the runs it entered",
        ),
    ] = None,
    per_entry: Annotated[
        str | None,
        Query(
            max_length=128,
            pattern=r"^[A-Za-z_][A-Za-z0-9_.:-]*$",
            description="An event name: how many of it the entered users did after entering, per entry and variant",
        ),
    ] = None,
) -> StatsOut:
    info = await journey_or_404(store, journey_id)
    since_t, until_t, start_t = _time("since", since), _time("until", until), _time("start", start)
    found = None
    if version is not None or info.current_version is not None:
        found = await asyncio.to_thread(cache.pinned, info, version)
        if found is None:
            raise Problem(404, f"journey {journey_id!r} has no version {version}", kind="version-not-found")
    warnings: list[str] = []
    # A big journey's first counts are not waited for (``stats.FIRST_WAIT``):
    # all of them begin at once, and the answer is a 503 until they are done.
    counting: list[Counting] = []
    counts, summary, admitted = await asyncio.gather(
        _quick(counting, stats.node_counts, store, journey_id, version),
        _quick(counting, stats.journey_summary, store, journey_id, version),
        _quick(counting, stats.admitted_per_variant, store, journey_id, version),
    )
    ir = found.ir if found else None
    if counts is None or summary is None or admitted is None:
        if ir is not None:  # visibility's first count begins too (kept store counts ask every node)
            await live_waiting(client, journey_id, ir, version, None, store, quick=True, begin_only=True)
        counting_for = max(c.seconds for c in counting)
        raise Problem(
            503,
            f"journey {journey_id!r} has over {stats.BIG_RUNS:,} runs and its numbers are being counted for the"
            f" first time ({counting_for:.1f} s so far); ask again in a moment",
            kind="counting",
            headers={"Retry-After": str(COUNTING_RETRY_AFTER)},
        )
    waiting, stored = None, None
    if ir is not None:
        stored = stats.if_fresh(counts, store, journey_id, version)
        waiting, warning = await live_waiting(client, journey_id, ir, version, stored, store, quick=True)
        if warning:
            warnings.append(warning)
    attribution = await asyncio.to_thread(stats.goal_attribution, store, journey_id, version)
    if attribution.incomplete:
        warnings.append(
            f"the goal's where was checked on the first {goals.MAX_WHERE_CANDIDATES} candidate events only:"
            " conversions may be undercounted"
        )
    variants = stats.variants_beside(admitted, attribution.per_variant())
    summary = dataclasses.replace(summary, converted=len(attribution.conversions))
    node_clicks = await asyncio.to_thread(stats.node_clicks, store, journey_id, version)
    variant_clicks = await asyncio.to_thread(stats.variant_clicks, store, journey_id, version)
    out = StatsOut(
        journey_id=journey_id,
        version=version,
        summary=SummaryOut.model_validate(summary),
        goal=GoalOut(
            event=ir.goal.event if ir and ir.goal else None,
            converted=summary.converted,
            conversion_rate=experiments.ratio(summary.converted, summary.entered),
        ),
        nodes=[_node_clicks(NodeStatsOut.model_validate(r), node_clicks) for r in node_rows(ir, counts, waiting)]
        if ir
        else [],
        variants=[
            _variant_clicks(VariantOut.model_validate(r), variant_clicks)
            for r in experiments.variant_rows(variants, experiments.holdout_variants(ir))
        ],
        counts_age_seconds=stats.oldest(
            stats.counts_age(store, journey_id, version),
            waiting_age(client, journey_id, ir, version, stored) if ir else None,
        ),
        warnings=warnings,
        split_tests=await asyncio.to_thread(
            split_test_rows, store, journey_id, version, settings.split_test_min_per_variant
        )
        if ir
        else [],
    )
    if per_entry is not None:
        counted = await asyncio.to_thread(stats.events_after_entry, store, journey_id, per_entry, version)
        out.per_entry = PerEntryOut.model_validate(experiments.per_entry(per_entry, variants, counted))
    now = utcnow()
    if since_t is not None:
        step = _duration("bucket", bucket)
        end = until_t or now
        if end <= since_t:
            raise Problem(422, "until must be after since")
        if (end - since_t) / step > MAX_BUCKETS:
            raise Problem(422, f"at most {MAX_BUCKETS} buckets: widen bucket or narrow the window")
        entered, _ = await asyncio.to_thread(queries.run_times, store, journey_id, since_t, end, version)
        deliveries = await asyncio.to_thread(queries.delivery_times, store, journey_id, since_t, end, version)
        converted = [c.at for c in attribution.conversions if since_t <= c.at < end]
        rows = experiments.buckets(since_t, end, step, entered, deliveries, converted)
        out.series = [BucketOut.model_validate(b) for b in rows]
    if start_t is not None or broadcast is not None:
        out.readouts = await _readouts(store, journey_id, version, start_t, broadcast, readouts_, attribution, now)
    return out


async def _quick(counting: list[Counting], count: Callable[..., T], *args: Any) -> T | None:
    """``count(*args, quick=True)`` in a thread; None (and the ``Counting``
    noted) while a big journey's first count goes on."""
    try:
        return await asyncio.to_thread(functools.partial(count, *args, quick=True))
    except Counting as still:
        counting.append(still)
        return None


def _node_clicks(row: NodeStatsOut, found: dict[str, stats.ClickCounts]) -> NodeStatsOut:
    counts = found.get(row.node_id)
    if counts is None:
        return row
    rate = min(1.0, experiments.ratio(counts.clicked, row.sent + row.pending))
    return row.model_copy(update={"clicks": counts.clicks, "clicked": counts.clicked, "click_rate": rate})


def _variant_clicks(row: VariantOut, found: dict[str | None, stats.ClickCounts]) -> VariantOut:
    counts = found.get(row.variant)
    if counts is None:
        return row
    rate = min(1.0, experiments.ratio(counts.clicked, row.entered))
    return row.model_copy(update={"clicks": counts.clicks, "clicked": counts.clicked, "click_rate": rate})


async def _readouts(
    store: Store,
    journey_id: str,
    version: int | None,
    start: datetime | None,
    broadcast_id: str | None,
    labels_text: str,
    attribution: goals.Attribution,
    now: datetime,
) -> list[ReadoutOut]:
    """Readouts after a typed start (every run entered from then on), or after
    a broadcast's start (only the runs that broadcast entered)."""
    labels = [p.strip() for p in labels_text.split(",") if p.strip()]
    if not labels or len(labels) > 20:
        raise Problem(422, "readouts takes 1 to 20 durations, e.g. 3h,6h,12h")
    offsets = [(label, _duration("readouts", label)) for label in labels]
    if broadcast_id is not None:
        if start is not None:
            raise Problem(
                422,
                "give start or broadcast, not both: a broadcast's readouts start when it started",
                errors=[error_item("conflict", "start and broadcast both given", field="query.broadcast")],
            )
        found = await asyncio.to_thread(broadcasts.get, store, broadcast_id)
        if found is None or found.journey_id != journey_id:
            raise Problem(404, f"journey {journey_id!r} has no broadcast {broadcast_id!r}", kind="broadcast-not-found")
        start = found.started_at
        attribution = await asyncio.to_thread(goals.attribute, store, journey_id, version, broadcast_id=broadcast_id)
    assert start is not None
    last = start + max(o for _, o in offsets)
    entered = await asyncio.to_thread(
        goals.entries, store, journey_id, version, broadcast_id=broadcast_id, since=start, until=last
    )
    deliveries = await asyncio.to_thread(
        goals.deliveries, store, journey_id, start, last, version, broadcast_id=broadcast_id
    )
    rows = experiments.readouts(
        start,
        offsets,
        now,
        [(e.entered_at, e.variant) for e in entered],
        deliveries,
        [(c.at, c.variant) for c in attribution.conversions],
    )
    return [ReadoutOut.model_validate(r) for r in rows]
