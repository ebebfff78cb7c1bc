"""Activities of ``AudienceBroadcastWorkflow``: select a page of the audience,
start a journey run for each user in it, commit progress.

One activity per page does all three so a page's user ids never enter Temporal
history (a million-user broadcast would otherwise carry them all) and a retry
simply redoes the page. Redoing is safe:

- a run still open for (journey, user) is left as it is (``engine.starts``:
  the one starter, whose answer says whether this call started the run);
  counted as entered when its memo names this broadcast, else as skipped —
  one run per (journey, user) at a time;
- a run this broadcast started that has closed since is found in the runs
  table by its trigger event (``engine.broadcasts.marker``) and not started
  again, whatever the journey's re-entry rule;
- the progress row is committed with a compare-and-set on the page number.

The re-entry rule itself (once / after a cool-down / always) is the journey
run's own ``begin_run``, from the store, exactly as for event entries.

Starting workflows needs a Temporal client: the one given at construction, else
the worker's own (``temporalio.activity.client()``).
"""

from __future__ import annotations

import asyncio
from datetime import datetime

from temporalio import activity
from temporalio.client import Client

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
from engine.settings import Settings
from engine.starts import memo_of, start_run
from engine.store import Store
from engine.store.models import Journey as JourneyRow

MEMO_KEY = "broadcast_id"


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
        start_concurrency: int = 16,
    ) -> None:
        self.store = store
        self.settings = settings or Settings()
        self._client = client
        # Snapshots need no channel providers: only the store and derived rules.
        self._snapshots = snapshots or JourneyActivities(store, {}, self.settings)
        self._start_concurrency = start_concurrency

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
        halt = await asyncio.to_thread(self._halt_reason, req.journey_id)
        if halt:
            return await asyncio.to_thread(
                broadcasts.finish, self.store, req.broadcast_id, status="halted", reason=halt, now=req.now
            )
        entry = req.ir.entry
        if not isinstance(entry, AudienceEntry):
            return await asyncio.to_thread(
                broadcasts.finish,
                self.store,
                req.broadcast_id,
                status="halted",
                reason="journey has no audience entry",
                now=req.now,
            )
        page = await asyncio.to_thread(self._select, entry.where, current.cursor, current.page_size, req.now)
        entered, skipped = await self._enter(req, page.user_ids)
        return await asyncio.to_thread(
            broadcasts.commit_page,
            self.store,
            req.broadcast_id,
            pages_before=req.pages,
            cursor=page.cursor,
            scanned=page.scanned,
            matched=len(page.user_ids),
            entered=entered,
            skipped=skipped,
            done=page.done,
            now=req.now,
        )

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

    async def _enter(self, req: BroadcastPageRequest, user_ids: list[str]) -> tuple[int, int]:
        """Start the journey for each user; returns (entered, skipped)."""
        already = await asyncio.to_thread(broadcasts.entered_by, self.store, req.journey_id, req.broadcast_id, user_ids)
        todo = [u for u in user_ids if u not in already]
        client = self._temporal()
        task_queue = req.task_queue or activity.info().task_queue
        gate = asyncio.Semaphore(self._start_concurrency)
        trigger = UserEvent(
            id=broadcasts.marker(req.broadcast_id),
            name=broadcasts.MARKER_EVENT,
            properties={"broadcast_id": req.broadcast_id},
            occurred_at=req.now,
        )

        async def start(user_id: str) -> bool:
            async with gate:
                inp = JourneyInput(
                    journey_id=req.journey_id,
                    version=req.version,
                    hash=req.hash,
                    user_id=user_id,
                    ir=req.ir,
                    trigger_event=trigger,
                )
                try:
                    started = await start_run(
                        client, task_queue, inp, signal_running=False, memo={MEMO_KEY: req.broadcast_id}
                    )
                    if started.started:
                        return True
                    # a run was going already: ours (an earlier attempt of this page) or another entry's
                    return await memo_of(client, started.workflow_id, MEMO_KEY) == req.broadcast_id
                finally:
                    activity.heartbeat()

        results = await asyncio.gather(*(start(u) for u in todo))
        entered = len(already) + sum(1 for r in results if r)
        return entered, len(user_ids) - entered

    def all(self) -> list:
        return [self.begin, self.page, self.finish]
