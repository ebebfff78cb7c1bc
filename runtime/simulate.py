"""``simulate``: a journey's IR run on the real interpreter and the real engine
activities in Temporal's time-skipping test server, for test users, with
scripted events, against throwaway stores and an outbox that records
instead of sending.

One time-skipping server per call (or the caller's, for a session of
tests), and all cases run side by side on its one clock: the server's
clock only moves forward, so cases that ran one after another could not
all start at the same local time. Each case gets its own SQLite store
(migrated, seeded: ``runtime.simulate_seed``), its own outbox, its own
worker on its own task queue and its own journey id, so coupon stock and
caps of one case never leak into another. The run is started the way
production starts it: an event entry is stored and handed to
``engine.dispatch`` (the entry's ``where`` decides, signal-with-start
through ``engine.starts``); an API entry is started by
``engine.starts.start_run`` at the start. An audience entry is first
judged by the broadcast's own selection (``engine.audience.select_page``
on the case's store, at the start, by the service's stage/RFM rules): a
test user it does not select is "not entered", and the reason says each
part of the condition with yes or no, as the audience preview does; one
it selects is started like an API entry. Scripted events are
stored and dispatched the same way when the clock reaches them; the clock
is moved with ``env.sleep`` to each event in turn and then to the horizon,
and runs still going there are terminated (nothing more is recorded).

An event is stored with ``engine.events.ingest_event`` (on the test
user's id, at the simulated time, so stage/RFM and ``count`` see it then)
and delivered by ``Dispatcher.deliver`` (the user's open runs, the journey
when it enters on it), which is what ``Dispatcher.ingest`` does after
storing; ingest itself takes identifiers only and the wall clock.

A loop that waits a minute each time runs thousands of steps a simulated
day, about 180 a second of wall time here, long before a horizon of months
is reached. ``max_steps`` bounds the step records of all cases together:
while the clock moves, a watcher counts them in the cases' stores every
``STEP_POLL_SECONDS`` of wall time and stops the simulation (the runs
terminated) with ``TooManySteps``, which names the case, its most visited
step and how far the clock got; the count is taken once more at the end,
so whether a simulation is refused does not depend on how fast the machine
is, only when it is noticed.

Measured on this machine (2 shared cores): the server starts in about
0.14 s and sleeps 30 days in 2-5 ms; migrating a store costs 70-150 ms, so
it is done once per process and copied; waiting for a run's start by a
status query cost 130 ms a case against 30 ms reading the store. One case
of the 30-day reference journey takes 0.45-0.6 s on a running server
(``bench/simulate_bench.py`` prints the figures of its run).
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import shutil
import tempfile
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from sqlalchemy import func, select
from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import AddSearchAttributesRequest
from temporalio.api.testservice.v1 import SleepRequest
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.service import RPCError
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from contracts.runs import RunStatus, UserEvent, workflow_id
from contracts.search_attributes import ALL as SEARCH_ATTRIBUTES
from dsl import compile_source, format_journey
from dsl.ir import AudienceEntry, EventEntry, Journey, Schedule, iter_steps
from engine import catalog
from engine.activities import JourneyActivities
from engine.audience import explain, full_snapshot_fn, leaf_words, select_page
from engine.channels import build_providers
from engine.channels.outbox import Outbox
from engine.dispatch import Dispatcher, Outcome
from engine.events import ingest_event
from engine.journey_cache import JourneyCache
from engine.queries import user_runs
from engine.schedules import once_moment
from engine.settings import Settings
from engine.starts import run_input, start_run
from engine.store import Store
from engine.store.models import StepRecord
from engine.temporal import start_time_skipping
from runtime.simulate_model import (
    DEFAULT_HORIZON,
    MAX_CASES,
    MAX_HORIZON,
    NOT_SELECTED,
    Case,
    ScriptedEvent,
    SimulationResult,
    World,
    parse_moment,
)
from runtime.simulate_read import offset_text, read_case
from runtime.simulate_seed import case_settings, seed_store
from runtime.simulate_variants import forcing_client, resolve_variants, variant_matrix
from runtime.worker import build_worker
from workflows.localtime import zone

DEFAULT_START_TIME = (9, 0)  # Monday 09:00 in the journey's zone: the same weekday and hour in every run
START_LEAD = timedelta(hours=1)  # the default start is at least this far ahead: setting up never runs into it
AUDIENCE_LOOK = 2  # users the simulated selection pages for: the case's store holds one
BEGIN_POLLS = 500
STEP_POLL_SECONDS = 0.2  # wall time between counts of the steps taken, with max_steps
SLEEP_RPC_TIMEOUT = timedelta(hours=1)  # one move of the clock, in wall time: the callers bound their own


class TooManySteps(ValueError):
    """The cases took more steps than the simulation allows (a loop that
    waits too little): the message says where and how far the clock got."""


@dataclass
class _CaseRun:
    """Everything one case owns while the clock runs."""

    index: int
    case: Case
    client: Client  # starts carry the case's forced variants (``forcing_client``)
    forced: dict[str, str]
    journey_id: str
    store: Store
    settings: Settings
    outbox: Outbox
    worker: Worker
    dispatcher: Dispatcher
    activities: JourneyActivities
    user_id: str
    events: list[tuple[datetime, ScriptedEvent]] = field(default_factory=list)
    entered: bool = False
    not_selected: str | None = None  # why the audience did not select the test user


def default_start(now: datetime, timezone: ZoneInfo, schedule: Schedule | None = None) -> datetime:
    """When the cases start unless told: the first Monday 09:00 local at
    least ``START_LEAD`` after ``now``; for an audience entry its schedule's
    first broadcast after that (``every day at 10:00``: the next 10:00;
    ``every monday at 09:30``: the next Monday 09:30; ``once at``: that
    moment; a ``ValueError`` when it is less than ``START_LEAD`` ahead), so quiet hours,
    ``wait until`` and the timeline's clock times are the ones the real
    broadcast's runs meet."""
    earliest = (now + START_LEAD).astimezone(timezone)
    hour, minute = DEFAULT_START_TIME
    weekday: int | None = 0
    if schedule is not None:
        hour, minute = (int(part) for part in schedule.time.split(":"))
        weekday = schedule.weekday if schedule.every == "week" else None
        if schedule.every == "once" and schedule.date:
            once = _real(once_moment(schedule, timezone))
            if once <= earliest:
                raise ValueError(
                    f"the audience broadcasts once at {schedule.date} {schedule.time}, which is not an hour ahead "
                    f"of the simulation clock ({now.isoformat(timespec='minutes')}): give a start"
                )
            return once
    day = earliest.replace(hour=hour, minute=minute, second=0, microsecond=0)
    if weekday is not None:
        day += timedelta(days=(weekday - day.weekday()) % 7)
    if _real(day) <= earliest:
        day += timedelta(days=1 if weekday is None else 7)
    return _real(day)


def _real(local: datetime) -> datetime:
    """A local time as the clock shows it: one skipped by a DST change
    (02:30 on a spring-forward night) moves on to the hour after."""
    return local.astimezone(UTC).astimezone(local.tzinfo)


def journey_zone(journey: Journey) -> ZoneInfo:
    return zone(None, journey.timezone)


async def simulate(
    journey: str | Journey,
    cases: Sequence[Case],
    *,
    world: World | None = None,
    start: datetime | str | None = None,
    horizon: timedelta = DEFAULT_HORIZON,
    env: WorkflowEnvironment | None = None,
    name: str = "journey",
    matrix: bool = False,
    max_steps: int | None = None,
) -> SimulationResult:
    """Run every case from ``start`` (default: :func:`default_start`) to
    ``start + horizon`` and read back what happened. ``journey`` is text (checked like a deploy) or an IR. A case's
    ``variants`` force its splits (``runtime.simulate_variants``; an unknown
    split or variant is a ``ValueError`` before anything starts); with
    ``matrix`` each case is run once per variant of every split, and
    ``never_reached`` says what no copy reached. With ``max_steps``, more
    step records than that over all cases is ``TooManySteps``."""
    if max_steps is not None and max_steps < 1:
        raise ValueError("max_steps must be at least 1")
    if not cases:
        raise ValueError("no cases to simulate")
    if len(cases) > MAX_CASES:
        raise ValueError(f"{len(cases)} cases: at most {MAX_CASES} in one simulation")
    if not timedelta(0) < horizon <= MAX_HORIZON:
        raise ValueError(f"the horizon must be more than 0 and at most {MAX_HORIZON.days}d")
    ir = compile_source(journey, name) if isinstance(journey, str) else journey
    source = journey if isinstance(journey, str) else format_journey(ir)
    cases = _forced_cases(ir, cases, matrix)
    world = world or World()
    # A `once at` broadcast months ahead would move a shared server's clock
    # there for every later caller (it only moves forward): its own server.
    once = start is None and isinstance(ir.entry, AudienceEntry) and ir.entry.schedule.every == "once"
    own_env = env is None or once
    env = await start_time_skipping() if own_env else env
    try:
        return await _simulate_on(env, ir, source, list(cases), world, start, horizon, name, max_steps)
    finally:
        if own_env:
            await env.shutdown()


def _forced_cases(ir: Journey, cases: Sequence[Case], matrix: bool) -> list[Case]:
    """The cases to run, each one's forced variants checked against the
    journey (and, with ``matrix``, one copy per variant of every split)."""
    for case in cases:
        try:
            resolve_variants(ir, case.variants)
        except ValueError as exc:
            raise ValueError(f"case {case.name!r}: {exc}") from None
    if not matrix:
        return list(cases)
    expanded = variant_matrix(ir, cases)
    if len(expanded) > MAX_CASES:
        raise ValueError(
            f"the variant matrix makes {len(expanded)} cases of {len(cases)}: at most {MAX_CASES} in one simulation"
        )
    return expanded


async def _simulate_on(
    env: WorkflowEnvironment,
    ir: Journey,
    source: str,
    cases: list[Case],
    world: World,
    start_at: datetime | str | None,
    horizon: timedelta,
    name: str,
    max_steps: int | None = None,
) -> SimulationResult:
    await register_search_attributes(env.client)
    now = await env.get_current_time()
    if start_at is None:
        schedule = ir.entry.schedule if isinstance(ir.entry, AudienceEntry) else None
        start = default_start(now, journey_zone(ir), schedule)
    else:
        start = parse_moment(start_at, now) if isinstance(start_at, str) else start_at
        if start.tzinfo is None:
            raise ValueError("the start needs a UTC offset, e.g. 2027-01-04T09:00+08:00")
        if start <= now:
            raise ValueError(
                f"the start {start.isoformat()} is not after the simulation clock's {now.isoformat()}: "
                "the time-skipping server's clock only moves forward"
            )
    end = start + horizon
    with tempfile.TemporaryDirectory(prefix="journeys-sim-") as tmp:
        blank = _migrated_store(Path(tmp))
        runs = [
            _prepare(env.client, ir, source, case, index, world, Path(tmp), blank, start)
            for index, case in enumerate(cases)
        ]
        guard = _StepGuard(max_steps, runs, start, end) if max_steps is not None else None
        try:
            async with contextlib.AsyncExitStack() as stack:
                for run in runs:
                    await stack.enter_async_context(run.worker)
                await _advance_to(env, start)
                try:
                    # side by side: every case enters as close to the start as it can
                    await asyncio.gather(*(_enter(ir, run, start) for run in runs))
                    await asyncio.gather(*(_wait_begun(env.client, run) for run in runs))
                    schedule = sorted(
                        ((at, run.index, n, event) for run in runs for n, (at, event) in enumerate(run.events)),
                        key=lambda item: (item[0], item[1], item[2]),
                    )
                    for at, index, number, event in schedule:
                        await _advance_to(env, at, guard)
                        await _deliver(runs[index], event, at, number)
                    await _advance_to(env, end, guard)
                    if guard is not None:
                        await guard.check(env)
                except TooManySteps:
                    for run in runs:  # nothing of a stopped simulation goes on running
                        await _stop(env.client, run)
                    raise
                waiting = {run.index: await _finish(env.client, run) for run in runs}
            results = [
                read_case(
                    run.store,
                    run.outbox,
                    ir,
                    run.case,
                    run.journey_id,
                    run.user_id,
                    start,
                    end,
                    waiting[run.index],
                    not_selected=run.not_selected,
                ).model_copy(update={"variants": run.forced})
                for run in runs
            ]
        finally:
            for run in runs:
                run.store.dispose()
    nodes = [step.id for step in iter_steps(ir.steps)]
    reached = {node for result in results for node, count in result.visits.items() if count}
    return SimulationResult(
        journey=ir.name,
        start=start,
        horizon=end,
        cases=results,
        nodes=nodes,
        never_reached=[node for node in nodes if node not in reached],
    )


async def register_search_attributes(client: Client) -> None:
    """The journey search attributes on the test server, which starts
    without them: production's ``start_run`` sets them on every start."""
    kinds = {key.name: IndexedValueType.ValueType(key.indexed_value_type) for key in SEARCH_ATTRIBUTES}
    request = AddSearchAttributesRequest(namespace=client.namespace, search_attributes=kinds)
    with contextlib.suppress(RPCError):  # registered already (a shared environment)
        await client.operator_service.add_search_attributes(request)


_BLANK: list[Path] = []  # the migrated file of this process, made once


def _migrated_store(tmp: Path) -> Path:
    """A migrated SQLite file that every case's store is copied from:
    migrating costs 70-150 ms a store, copying the file well under 1 ms.
    Made once per process (and removed with it)."""
    if _BLANK and _BLANK[0].exists():
        return _BLANK[0]
    folder = Path(tempfile.mkdtemp(prefix="journeys-sim-schema-"))
    atexit.register(shutil.rmtree, folder, True)
    path = folder / "blank.db"
    blank = Store(f"sqlite:///{path}")
    blank.migrate()
    blank.dispose()
    _BLANK[:] = [path]
    return path


def _prepare(
    client: Client,
    ir: Journey,
    source: str,
    case: Case,
    index: int,
    world: World,
    tmp: Path,
    blank: Path,
    start: datetime,
) -> _CaseRun:
    task_queue = f"simulate-{uuid.uuid4().hex[:12]}"
    database = tmp / f"case-{index}.db"
    shutil.copyfile(blank, database)
    settings = case_settings(world, database, task_queue)
    store = Store(settings.database_url)
    journey_id = f"sim-{index}"
    try:
        user_id = seed_store(store, settings, ir, journey_id, source, world, case, start)
    except ValueError as exc:
        raise ValueError(f"case {case.name!r}: {exc}") from exc
    outbox = Outbox()
    activities = JourneyActivities(store, build_providers(settings.channels, outbox=outbox), settings)
    worker = build_worker(client, activities.all(), task_queue, max_concurrent_activities=4)
    events = [(parse_moment(e.at, start), e) for e in case.events]
    for at, event in events:
        if at < start:
            raise ValueError(f"case {case.name!r}: event {event.name!r} at {event.at} is before the start")
    dispatcher = Dispatcher(store, settings, JourneyCache(store))
    forced = resolve_variants(ir, case.variants)
    return _CaseRun(
        index,
        case,
        forcing_client(client, forced),
        forced,
        journey_id,
        store,
        settings,
        outbox,
        worker,
        dispatcher,
        activities,
        user_id,
        events,
    )


async def _advance_to(env: WorkflowEnvironment, moment: datetime, guard: _StepGuard | None = None) -> None:
    """Move the server's clock to ``moment``; timers due on the way fire in
    order, and the server holds the clock while their work runs. With a
    ``guard``, the steps taken are counted while the clock moves, and the
    move is given up (``TooManySteps``) when they are too many."""
    gap = moment - await env.get_current_time()
    if gap <= timedelta(0):
        return
    if guard is None:
        await _sleep(env, gap)
        return
    sleeping = asyncio.ensure_future(_sleep(env, gap))
    try:
        while not sleeping.done():
            await asyncio.wait({sleeping}, timeout=STEP_POLL_SECONDS)
            if not sleeping.done():
                await guard.check(env)
        sleeping.result()
    finally:
        if not sleeping.done():
            sleeping.cancel()
            with contextlib.suppress(asyncio.CancelledError, RPCError):
                await sleeping


async def _sleep(env: WorkflowEnvironment, gap: timedelta) -> None:
    """``env.sleep`` with a deadline of ``SLEEP_RPC_TIMEOUT``: the SDK's
    call has the client's default of 30 s, so a skip whose timers keep the
    worker busy longer (many cases, a tight loop) failed as ``RPCError:
    Timeout expired`` instead of reaching the caller's own bounds."""
    if not env.supports_time_skipping:
        await env.sleep(gap)
        return
    request = SleepRequest()
    request.duration.FromTimedelta(gap)
    await env.client.test_service.unlock_time_skipping_with_sleep(request, timeout=SLEEP_RPC_TIMEOUT)


@dataclass
class _StepGuard:
    """``max_steps`` over the step records of every case's store."""

    limit: int
    runs: list[_CaseRun]
    start: datetime
    end: datetime

    def _counts(self) -> list[int]:
        out = []
        for run in self.runs:
            with run.store.read() as s:
                out.append(int(s.execute(select(func.count()).select_from(StepRecord)).scalar_one()))
        return out

    def _busiest_node(self, run: _CaseRun) -> tuple[str, int]:
        query = (
            select(StepRecord.node_id, func.count())
            .group_by(StepRecord.node_id)
            .order_by(func.count().desc(), StepRecord.node_id)
            .limit(1)
        )
        with run.store.read() as s:
            row = s.execute(query).first()
        return (str(row[0]), int(row[1])) if row else ("?", 0)

    async def check(self, env: WorkflowEnvironment) -> None:
        counts = await asyncio.to_thread(self._counts)
        if sum(counts) <= self.limit:
            return
        worst = max(range(len(counts)), key=lambda i: counts[i])
        node, times = await asyncio.to_thread(self._busiest_node, self.runs[worst])
        reached = min(await env.get_current_time(), self.end) - self.start
        horizon = offset_text(int((self.end - self.start).total_seconds()))[1:]
        raise TooManySteps(
            f"the simulation took over {self.limit} steps by {offset_text(int(reached.total_seconds()))} "
            f"of {horizon} (case {self.runs[worst].case.name!r}: {counts[worst]}, {times} of them at {node}): "
            "a loop that waits too little? wait longer in the loop, or simulate a shorter for or fewer cases"
        )


async def _enter(ir: Journey, run: _CaseRun, start: datetime) -> None:
    if isinstance(ir.entry, EventEntry):
        trigger = ScriptedEvent(at="0", name=ir.entry.event, properties=dict(run.case.entry))
        outcome = await _deliver(run, trigger, start, "entry")
        run.entered = bool(outcome.started)
        return
    if isinstance(ir.entry, AudienceEntry):
        run.not_selected = await asyncio.to_thread(_not_selected, ir.entry, run, start)
        if run.not_selected is not None:
            return
    version = catalog.get_version(run.store, run.journey_id)
    assert version is not None
    inp = run_input(version, ir, run.user_id)
    await start_run(run.client, run.settings.task_queue, inp)
    run.entered = True


def _not_selected(entry: AudienceEntry, run: _CaseRun, at: datetime) -> str | None:
    """None when the broadcast's own page selection at ``at`` takes the test
    user; else why not, each part of the condition with yes or no."""
    cond = entry.where
    snapshot = full_snapshot_fn(run.activities, cond, at)
    rules = run.settings.derived
    page = select_page(run.store, cond, after=None, limit=AUDIENCE_LOOK, snapshot=snapshot, now=at, rules=rules)
    if run.user_id in page.user_ids:
        return None
    parts = "; ".join(
        f"{leaf_words(leaf)}: {'yes' if holds else 'no'}" for leaf, holds in explain(cond, snapshot(run.user_id))
    )
    return f"{NOT_SELECTED} ({parts})"


async def _deliver(run: _CaseRun, event: ScriptedEvent, at: datetime, number: int | str) -> Outcome:
    """Store the event as ingest does and hand it to the dispatcher: to the
    user's open runs, and to the journey when it enters on it."""
    event_id = f"sim-{number}"
    stored = await asyncio.to_thread(
        ingest_event,
        run.store,
        event_id=event_id,
        name=event.name,
        user_id=run.user_id,
        properties=event.properties,
        occurred_at=at,
        rules=run.settings.derived,
        now=at,
    )
    outcome = Outcome(user_id=stored.user_id, new=stored.new)
    user_event = UserEvent(id=event_id, name=event.name, properties=dict(event.properties), occurred_at=at)
    await run.dispatcher.deliver(run.client, stored.user_id, user_event, outcome)
    if not outcome.complete:
        raise RuntimeError(f"case {run.case.name!r}: event {event.name!r} could not be delivered")
    if outcome.started:
        run.entered = True
    return outcome


async def _wait_begun(client: Client, run: _CaseRun) -> None:
    """Until the run has been let in or refused (its row in the store's runs
    table): an event at +0 must find it among the user's open runs, as a
    real event a moment later would. Read from the store, not by a query:
    a query is a round trip through the worker (about 25 ms here)."""
    if not run.entered:
        return
    for _ in range(BEGIN_POLLS):
        runs = await asyncio.to_thread(user_runs, run.store, run.user_id)
        if any(r.journey_id == run.journey_id for r in runs):
            return
        await asyncio.sleep(0.002)
    raise RuntimeError(f"case {run.case.name!r}: the run never began")


async def _stop(client: Client, run: _CaseRun) -> None:
    """End the case's run if it is still going (a simulation given up)."""
    if not run.entered:
        return
    handle = client.get_workflow_handle(workflow_id(run.journey_id, run.user_id))
    with contextlib.suppress(RPCError):
        if (await handle.describe()).status == WorkflowExecutionStatus.RUNNING:
            await handle.terminate(reason="simulation stopped: too many steps")


async def _finish(client: Client, run: _CaseRun) -> str | None:
    """Where a run still going at the horizon waits (it is then terminated,
    so nothing of it outlives the call); None when it had ended."""
    if not run.entered:
        return None
    handle = client.get_workflow_handle(workflow_id(run.journey_id, run.user_id))
    description = await handle.describe()
    if description.status != WorkflowExecutionStatus.RUNNING:
        return None
    status: RunStatus = await handle.query("status", result_type=RunStatus)
    await handle.terminate(reason="simulation horizon")
    return status.waiting or status.node or "?"
