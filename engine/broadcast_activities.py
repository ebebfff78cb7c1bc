"""Activities of ``AudienceBroadcastWorkflow``: select a page of the audience,
start a journey run for each user in it, commit progress.

One activity call does all three, so a page's user ids never enter Temporal
history (a million-user broadcast would otherwise carry them all) and a retry
simply redoes the page. A call goes on to the next pages (up to
``call_seconds``), selecting page k+1 while page k's starts finish, with one
bound on the starts in flight (``start_concurrency``); pages are still
committed one at a time, in order, each after all of its starts answered.
Redoing a page is safe:

- a run still open for (journey, user) is left as it is (``engine.starts``:
  the one starter, whose answer says whether this call started the run);
  counted as entered when its memo names this broadcast, else as skipped —
  one run per (journey, user) at a time;
- a run this broadcast started that has closed since is found in the runs
  table by its trigger event (``engine.broadcasts.marker``) and not started
  again, whatever the journey's re-entry rule;
- the progress row is committed with a compare-and-set on the page number,
  and a call stops at the first commit it did not make.

The re-entry rule itself (once / after a cool-down / always) is the journey
run's own ``begin_run``, from the store, exactly as for event entries.

Starting workflows needs a Temporal client: the one given at construction, else
the worker's own (``temporalio.activity.client()``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from datetime import datetime

from temporalio import activity
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.service import RPCError

from contracts import names
from contracts.broadcast import (
    BeginBroadcastRequest,
    BroadcastPageRequest,
    BroadcastProgress,
    FinishBroadcastRequest,
)
from contracts.runs import JourneyInput, UserEvent
from dsl.ir import AudienceEntry, Cond
from engine import broadcasts, lifecycle
from engine.activities import JourneyActivities
from engine.audience import AudiencePage, full_snapshot_fn, needs_full_snapshot, select_page
from engine.broadcast_backlog import RUNS_AHEAD, STALL_SECONDS, Backlog
from engine.settings import Settings
from engine.starts import memo_of, start_run
from engine.store import Store
from engine.store.models import Journey as JourneyRow
from engine.temporal import runs_task_queue

MEMO_KEY = "broadcast_id"
# Starts in flight per page activity: measured best for start_workflow from one
# process on the dev server (bench/broadcast_bench.py sweeps it).
START_CONCURRENCY = 64
# A page activity stops selecting new pages after this long, leaving the rest
# of the workflow's 10-minute start-to-close timeout to the (at most two) pages
# still in flight. Long on purpose: each return to the workflow is a round
# trip and an activity in its history. (It was also a workaround while the
# broadcast shared its task queue with the runs it starts: on 2 overloaded
# cores a 4k-user bench saw its next workflow task wait over 7 minutes behind
# their first workflow tasks. Broadcasts now have their own queue,
# ``engine.temporal.broadcast_task_queue``.)
CALL_SECONDS = 120.0
log = logging.getLogger("journeys.broadcast")


# The page activity heartbeats this often whatever it awaits. Its own reads
# run in threads (``asyncio.to_thread``): in a worker process whose journey
# activities keep the default executor busy, a read waiting for a thread while
# every start waited for ``Backlog.room`` went over the 60 s heartbeat timeout
# and the call was cancelled and redone (100k bench). The event loop beating
# says the worker is alive; a stuck read is bounded by the 10-minute timeout.
BEAT_SECONDS = 10.0


async def _beat() -> None:
    while True:
        activity.heartbeat()
        await asyncio.sleep(BEAT_SECONDS)


@dataclass
class _Page:
    """A selected page whose starts are running (or done)."""

    page: AudiencePage
    starts: asyncio.Task[tuple[int, int]]
    select_seconds: float
    launched: float  # perf_counter() when its starts were set going
    backlog: Backlog  # the call's runs not yet begun (shared by its pages)
    started: float = 0.0  # perf_counter() when its last start answered


class BroadcastActivities:
    """``BroadcastActivities(store, settings)``; register ``.all()`` on the worker
    next to ``JourneyActivities.all()``."""

    def __init__(
        self,
        store: Store,
        settings: Settings | None = None,
        *,
        client: Client | None = None,
        snapshots: JourneyActivities | None = None,
        start_concurrency: int = START_CONCURRENCY,
        call_seconds: float = CALL_SECONDS,
        runs_ahead: int = RUNS_AHEAD,
        stall_seconds: float = STALL_SECONDS,
    ) -> None:
        self.store = store
        self.settings = settings or Settings()
        self._client = client
        # Snapshots need no channel providers: only the store and derived rules.
        self._snapshots = snapshots or JourneyActivities(store, {}, self.settings)
        self._start_concurrency = start_concurrency
        self._call_seconds = call_seconds
        self._runs_ahead = runs_ahead
        self._stall_seconds = stall_seconds

    def _temporal(self) -> Client:
        return self._client or activity.client()

    @activity.defn(name=names.BROADCAST_BEGIN)
    async def begin(self, req: BeginBroadcastRequest) -> BroadcastProgress:
        return await asyncio.to_thread(
            broadcasts.begin,
            self.store,
            req.broadcast_id,
            journey_id=req.journey_id,
            version=req.version,
            trigger=req.trigger,
            page_size=req.page_size,
            now=req.now,
        )

    @activity.defn(name=names.BROADCAST_FINISH)
    async def finish(self, req: FinishBroadcastRequest) -> BroadcastProgress:
        return await asyncio.to_thread(
            broadcasts.finish, self.store, req.broadcast_id, status=req.status, reason=req.reason, now=req.now
        )

    @activity.defn(name=names.BROADCAST_PAGE)
    async def page(self, req: BroadcastPageRequest) -> BroadcastProgress:
        current = await asyncio.to_thread(broadcasts.get, self.store, req.broadcast_id)
        if current is None:
            raise KeyError(f"broadcast {req.broadcast_id} was never begun")
        if current.done or current.pages != req.pages:
            return current  # finished, or this page was committed by an attempt whose answer got lost
        entry = req.ir.entry
        if not isinstance(entry, AudienceEntry):
            return await self._halt(req, "journey has no audience entry")
        beating = asyncio.create_task(_beat())
        try:
            return await self._pages(req, entry.where, current)
        finally:
            beating.cancel()

    async def _pages(self, req: BroadcastPageRequest, cond: Cond, current: BroadcastProgress) -> BroadcastProgress:
        """Pages from ``current`` on, pipelined: page k+1 is selected and its
        starts queue up while page k's last starts are in flight and page k
        is committed, all pages sharing one bound on starts in flight
        (``start_concurrency``: back-pressure on the Temporal frontend).
        Pages are committed in order, each once every start of it has
        answered, so a crash anywhere redoes from the last commit.

        Stops after the audience's last page, at a halt (pages started are
        committed first), after ``call_seconds`` (the workflow calls again:
        its history grows by one activity per call, not per page), when the
        broadcast's workflow run is gone (a terminated or timed-out run's
        activity must not outlive it by more than the page in flight), or at
        a commit this call did not make (another attempt of the activity got
        there first: the stored row is returned and the workflow goes on from
        it). One page per call left the starts idle for the select, the
        commit, the drain of the page's last starts and the round trip to the
        next call (``bench/broadcast_bench.py`` prints the split).

        Starts also wait while ``runs_ahead`` of the runs this call started
        have not begun (``engine.broadcast_backlog``): the runs' queue stays
        short, so event-triggered runs on it are not held up by the whole
        audience's first tasks."""
        gate = asyncio.Semaphore(self._start_concurrency)
        backlog = Backlog(
            lambda ids: broadcasts.entered_by(self.store, req.journey_id, req.broadcast_id, ids),
            limit=self._runs_ahead,
            stall_seconds=self._stall_seconds,
        )
        stop_selecting = time.monotonic() + self._call_seconds
        progress = current
        pending: _Page | None = None  # selected, its starts running, not committed yet
        launched: list[asyncio.Task[tuple[int, int]]] = []
        try:
            while True:
                ahead: _Page | None = None
                halt: str | None = None
                if pending is None or (
                    not pending.page.done and time.monotonic() < stop_selecting and await self._still_current()
                ):
                    halt = await asyncio.to_thread(self._halt_reason, req.journey_id)
                    if halt is None:
                        cursor = pending.page.cursor if pending else progress.cursor
                        ahead = await self._launch(req, cond, cursor, progress.page_size, gate, backlog)
                        launched.append(ahead.starts)
                if pending is not None:
                    committed = await self._commit(req, pending, progress.pages)
                    if committed.done or (committed.pages, committed.cursor) != (
                        progress.pages + 1,
                        pending.page.cursor,
                    ):
                        return committed  # finished, or another attempt committed this page
                    progress = committed
                if halt is not None:
                    return await self._halt(req, halt)
                if ahead is None:
                    return progress
                pending = ahead
        finally:
            for task in launched:
                task.cancel()  # only ever not done on an early return or a cancelled call

    async def _launch(
        self,
        req: BroadcastPageRequest,
        cond: Cond,
        cursor: str | None,
        limit: int,
        gate: asyncio.Semaphore,
        backlog: Backlog,
    ) -> _Page:
        """Select the page after ``cursor`` and set its starts going."""
        t0 = time.perf_counter()
        page = await asyncio.to_thread(self._select, cond, cursor, limit, req.now)
        selected = time.perf_counter()
        starts = asyncio.create_task(self._enter(req, page.user_ids, gate, backlog))
        work = _Page(page, starts, selected - t0, selected, backlog)
        work.starts.add_done_callback(lambda _: setattr(work, "started", time.perf_counter()))
        return work

    async def _commit(self, req: BroadcastPageRequest, work: _Page, pages_before: int) -> BroadcastProgress:
        entered, skipped = await work.starts
        t0 = time.perf_counter()
        progress = await asyncio.to_thread(
            broadcasts.commit_page,
            self.store,
            req.broadcast_id,
            pages_before=pages_before,
            cursor=work.page.cursor,
            scanned=work.page.scanned,
            matched=len(work.page.user_ids),
            entered=entered,
            skipped=skipped,
            done=work.page.done,
            now=req.now,
        )
        log.info(
            "broadcast %s page %d: %d users, select %.1f ms, start %.1f ms, commit %.1f ms, not begun %d",
            req.broadcast_id,
            pages_before + 1,
            len(work.page.user_ids),
            1000 * work.select_seconds,
            1000 * (work.started - work.launched),
            1000 * (time.perf_counter() - t0),
            work.backlog.waiting,
        )
        return progress

    async def _halt(self, req: BroadcastPageRequest, reason: str) -> BroadcastProgress:
        return await asyncio.to_thread(
            broadcasts.finish, self.store, req.broadcast_id, status="halted", reason=reason, now=req.now
        )

    async def _still_current(self) -> bool:
        """Whether the workflow run that called this activity is still running
        (one describe per page; any doubt answers no: stopping is always safe)."""
        info = activity.info()
        try:
            desc = await self._temporal().get_workflow_handle(info.workflow_id, run_id=info.workflow_run_id).describe()
        except RPCError:
            return False
        return desc.status == WorkflowExecutionStatus.RUNNING

    def _halt_reason(self, journey_id: str) -> str | None:
        """Pausing, stopping or archiving a deployed journey stops its broadcasts
        at the next page ("no new entries"). A journey the catalog does not know
        (started straight from IR) is not checked."""
        with self.store.read() as s:
            row = s.get(JourneyRow, journey_id)
            if row is not None and row.status != lifecycle.ADMITTING:
                return f"journey {row.status}"
        return None

    def _select(self, cond: Cond, cursor: str | None, limit: int, now: datetime) -> AudiencePage:
        snapshot = full_snapshot_fn(self._snapshots, cond, now) if needs_full_snapshot(cond) else None
        return select_page(
            self.store,
            cond,
            after=cursor,
            limit=limit,
            snapshot=snapshot,
            now=now,
            rules=self._snapshots.settings.derived,
        )

    async def _enter(
        self, req: BroadcastPageRequest, user_ids: list[str], gate: asyncio.Semaphore, backlog: Backlog
    ) -> tuple[int, int]:
        """Start the journey for each user, at most ``gate`` starts in flight
        and each once ``backlog`` has room (both shared by the pages of a
        call); returns (entered, skipped)."""
        already = await asyncio.to_thread(broadcasts.entered_by, self.store, req.journey_id, req.broadcast_id, user_ids)
        todo = [u for u in user_ids if u not in already]
        client = self._temporal()
        # Broadcasts started by engine.schedules name the runs' queue; one
        # without it (started by hand, or before broadcasts had their own
        # queue) sends them to the queue it runs on, minus the broadcast suffix.
        task_queue = req.task_queue or runs_task_queue(activity.info().task_queue)
        trigger = UserEvent(
            id=broadcasts.marker(req.broadcast_id),
            name=broadcasts.MARKER_EVENT,
            properties={"broadcast_id": req.broadcast_id},
            occurred_at=req.now,
        )

        async def start(user_id: str) -> bool:
            async with gate:
                # inside the gate: at most start_concurrency pass it before their runs are counted
                await backlog.room()
                inp = JourneyInput(
                    journey_id=req.journey_id,
                    version=req.version,
                    hash=req.hash,
                    user_id=user_id,
                    ir=req.ir,
                    trigger_event=trigger,
                )
                started = await start_run(
                    client, task_queue, inp, signal_running=False, memo={MEMO_KEY: req.broadcast_id}
                )
                if started.started:
                    backlog.started(user_id)
                    return True
                # a run was going already: ours (an earlier attempt of this page) or another entry's
                return await memo_of(client, started.workflow_id, MEMO_KEY) == req.broadcast_id

        results = await asyncio.gather(*(start(u) for u in todo))
        entered = len(already) + sum(1 for r in results if r)
        return entered, len(user_ids) - entered

    def all(self) -> list:
        return [self.begin, self.page, self.finish]
