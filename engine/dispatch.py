"""From a stored user event to the runs it concerns: signalled to the user's
open runs, and starting the active journeys that enter on it.

Order of work for an ingested event (``Dispatcher.ingest``): store it
(``engine.events.ingest_event``: once per id, on the right person, derived
tags refreshed); only if it was not dispatched yet, signal it to the user's
open runs (the store's runs table knows them; a run that finished meanwhile
is ignored) and start the active journeys whose ``entry event <name>
[where …]`` matches (signal-with-start through ``engine.starts``, so the
trigger is the run's first signal and a run already going just receives
it). A duplicate of a dispatched event does nothing at all — otherwise a
``reentry always`` journey would be entered twice.

Paused, stopped, draft and archived journeys start nothing; entries that
arrive while a journey is paused are dropped, not queued, so resuming does
not flood users with what came due meanwhile.

Nothing is lost between the store and Temporal: the event is stored as
undispatched and marked dispatched only once every signal and start it
needed was accepted. If the process dies in between, or Temporal refuses or
cannot be reached, the event stays undispatched: a resend of the same id
delivers it (instead of being ignored as a duplicate), and ``sweep`` — run
every ``redispatch_seconds`` by the API — delivers what is older than that.
Delivering twice is harmless: runs drop event ids they have seen and
``engine.runs.begin`` enters a journey once per (journey, user, event).
Marks are written in batches a quarter of a second later (one statement for
all the events dispatched meanwhile), so the request path has one write, not
two; a crash before the batch is written only means those events are swept
again. The mark keeps what happened (``Event.outcome``: the runs signalled,
the runs started, the journeys whose start was left to the person's run
already going), which the user's timeline shows.

Run signals (``engine.run_signals``: a merge ending a duplicate run, tag
changes heard by the user's runs) queued by the store change of an ingest
are sent right after it, before the event; the sweep sends those left over.
Every new user's first event queues one (its derived stage tag), so they
cost the hot path nothing extra but a query: read with the event's targets
(one read transaction for the user's open runs), marked sent with the
batched event marks (one write transaction for both).

Bounded waits on Temporal (``Bounds``; ``api.settings`` sets them). The event
is stored before anything asks Temporal, so once it is stored it is
accepted: its delivery (the signals an ingest queued, then the event) runs as
a task of its own, which the ingest waits for at most ``answer_within``
(a Segment batch: that long for all its messages); past that the caller
answers anyway (``Outcome.deferred``, ``202`` at the API) and the task goes
on, up to ``deliver_within``, then gives up and leaves the event to the
sweep. (Temporal's client retries an unreachable server for about ten
seconds per call: inline, that was each event's answer time.) A user's
deliveries run in the order they were ingested, each after the one before.
``drain`` gives the deliveries in flight a grace period at shutdown and
cancels the rest, which stay undispatched. The sweep drains a backlog page
after page (``sweep_batch`` events), delivering up to ``sweep_concurrency``
users at once (a user's events in order), and stops a round early while
Temporal is unreachable or refuses everything.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol

from sqlalchemy.orm import Session
from temporalio.client import Client
from temporalio.service import RPCError

from contracts.conditions import count_queries, evaluate, needs_user
from contracts.runs import UserEvent, workflow_id
from dsl.ir import EventEntry
from engine import queries, run_signals
from engine.events import IngestResult, PendingEvent, ingest_event, mark_dispatched_in, undispatched
from engine.journey_cache import Deployed, JourneyCache
from engine.settings import Settings
from engine.starts import run_input, signal_event, start_run
from engine.store import Store
from engine.store.types import utcnow

log = logging.getLogger("journeys.dispatch")

MARK_DELAY_SECONDS = 0.25
RECENT_DISPATCHED = 10_000  # delivered event ids remembered (a resend soon after is a duplicate)


class DispatchCounters(Protocol):
    """Where the dispatcher counts what it did (the API's Prometheus metrics)."""

    def event(self, kind: str, outcome: str) -> None: ...
    def signal(self, outcome: str) -> None: ...
    def run_started(self, journey_id: str, trigger: str) -> None: ...


class NoCounters:
    def event(self, kind: str, outcome: str) -> None:
        pass

    def signal(self, outcome: str) -> None:
        pass

    def run_started(self, journey_id: str, trigger: str) -> None:
        pass


@dataclass
class Outcome:
    user_id: str | None = None
    new: bool = False
    signalled: list[str] = field(default_factory=list)
    started: list[str] = field(default_factory=list)
    gone: list[str] = field(default_factory=list)  # open in the store, finished on Temporal
    joined: list[str] = field(default_factory=list)  # journeys entered on it left to the person's running run
    complete: bool = True  # every signal and start it needed was accepted
    # answered before its delivery finished: still under way in the
    # background, or left to the sweep (no Temporal client)
    deferred: bool = False

    def record(self) -> dict[str, Any]:
        """What the store keeps of it (``Event.outcome``)."""
        return {"signalled": self.signalled, "started": self.started, "gone": self.gone, "joined": self.joined}


@dataclass(frozen=True)
class Bounds:
    """How long the dispatcher waits on Temporal (see the module doc)."""

    answer_within: float = 2.0  # an ingest waits this long for its delivery
    deliver_within: float = 30.0  # a delivery gives up after this; the sweep retries
    sweep_batch: int = 500  # events per page of the sweep
    sweep_concurrency: int = 16  # users delivered at once by the sweep
    health_within: float = 3.0  # the sweep's "is Temporal there" check


@dataclass(frozen=True)
class Targets:
    """Where an event goes: the user's open runs (workflow ids) and the
    active journeys it enters."""

    runs: list[str]
    journeys: list[Deployed]
    run_journeys: dict[str, str] = field(default_factory=dict)  # workflow id -> journey id


class Dispatcher:
    """One per process (its batched marks are per process); ``client`` is
    passed per call since the API may connect to Temporal later than it
    starts."""

    def __init__(
        self,
        store: Store,
        settings: Settings,
        cache: JourneyCache,
        counters: DispatchCounters | None = None,
        bounds: Bounds | None = None,
    ) -> None:
        self.store = store
        self.settings = settings
        self.cache = cache
        self.counters: DispatchCounters = counters or NoCounters()
        self.bounds = bounds or Bounds()
        self._jobs: set[asyncio.Task[None]] = set()  # deliveries under way
        self._last_job: dict[str, asyncio.Task[None]] = {}  # user id -> their latest delivery
        self._in_flight: set[str] = set()  # ids of the events those deliver
        self._dispatched: dict[str, dict[str, Any]] = {}  # event id -> what dispatch did
        # ids this process delivered lately, marked or not: a resend read
        # while its mark was being written is still a duplicate
        self._recent: OrderedDict[str, None] = OrderedDict()
        self._signals_sent: list[int] = []  # run signals sent, their mark not written yet
        self._signals_marking: frozenset[int] = frozenset()  # ... being written now
        self._marker: asyncio.Task[None] | None = None
        self._marks_lock = asyncio.Lock()  # flush_marks one write at a time (see there)

    async def ingest(
        self,
        client: Client | None,
        *,
        event_id: str,
        name: str,
        identifiers: Iterable[tuple[str, str]],
        properties: dict[str, Any],
        occurred_at: datetime | None,
        kind: str = "track",
        wait_until: float | None = None,
    ) -> Outcome:
        """Store the event and, unless it was dispatched already, dispatch it,
        waiting for that until ``wait_until`` (the event loop's clock; default
        ``answer_within`` from now) at most. Without a client (Temporal not
        connected yet) the event is stored and left to the sweep."""

        skip = self._signals_in_hand()

        def store_and_look_up() -> tuple[IngestResult, Targets | None, list[run_signals.PendingSignal] | None]:
            # One hop to a worker thread for the write and the reads that
            # follow it (each hop is a wait for a thread under load).
            stored = ingest_event(
                self.store,
                event_id=event_id,
                name=name,
                identifiers=identifiers,
                properties=properties,
                occurred_at=occurred_at,
                rules=self.settings.derived,
                dispatch=True,
            )
            if stored.dispatched:
                return stored, None, None
            found, pending = self._look_up(stored.user_id, name, signals=stored.signals, skip=skip)
            return stored, found, pending

        result, found, pending = await asyncio.to_thread(store_and_look_up)
        # dispatched: marked in the store, or about to be (the batched mark)
        dispatched = result.dispatched or (not result.new and event_id in self._recent)
        self.counters.event(kind, "new" if result.new else "duplicate" if dispatched else "redelivered")
        outcome = Outcome(user_id=result.user_id, new=result.new)
        if event_id in self._in_flight:  # a resend while its first delivery is under way
            dispatched = True
            outcome.deferred = True
        if dispatched and not result.signals:
            return outcome
        event = (
            None
            if dispatched
            else UserEvent(id=event_id, name=name, properties=dict(properties), occurred_at=occurred_at)
        )
        if client is None:
            outcome.complete = event is None
            outcome.deferred = True
            return outcome
        uid = result.user_id

        async def deliver() -> None:
            if result.signals:
                if pending is None:
                    await self.deliver_signals(client, uid)
                else:
                    await self._send_signals(client, pending)
            if event is not None:
                await self.dispatch(client, uid, event, outcome, found)

        job = self._start(uid, deliver, outcome, event_id if event is not None else None, kind)
        outcome.deferred = outcome.deferred or not await self._wait_for(job, wait_until)
        return outcome

    async def signal_user(self, client: Client | None, user_id: str, *, wait_until: float | None = None) -> bool:
        """Send a user's queued run signals (after an identify or alias that
        merged users or changed tags) with the bounds of an ingest; False
        when the answer cannot wait for them (sent in the background, or by
        the sweep)."""
        if client is None:
            return False

        async def deliver() -> None:
            await self.deliver_signals(client, user_id)

        return await self._wait_for(
            self._start(user_id, deliver, Outcome(user_id=user_id), None, "identify"), wait_until
        )

    # -- deliveries as tasks: bounded, in order per user --------------------

    def _start(
        self,
        user_id: str,
        deliver: Callable[[], Awaitable[None]],
        outcome: Outcome,
        event_id: str | None,
        kind: str,
    ) -> asyncio.Task[None]:
        """Run ``deliver`` as a task after the user's previous delivery, the
        whole within ``deliver_within``; a delivery past it is cancelled and
        its event left undispatched (the sweep's)."""
        previous = self._last_job.get(user_id)

        async def job() -> None:
            try:
                async with asyncio.timeout(self.bounds.deliver_within):
                    if previous is not None and not previous.done():
                        await asyncio.wait({previous})  # waits without cancelling it
                    await deliver()
            except TimeoutError:
                outcome.complete = False
                if event_id is not None:
                    self.counters.event(kind, "undispatched")
                log.warning(
                    "delivery to Temporal%s gave up after %.0f s; the sweep delivers it",
                    f" of event {event_id}" if event_id else "",
                    self.bounds.deliver_within,
                )
            except Exception:  # noqa: BLE001 - the event stays undispatched: the sweep's
                outcome.complete = False
                log.exception("delivery to Temporal failed; the sweep delivers it")

        task = asyncio.create_task(job(), name=f"deliver-{user_id}")
        self._jobs.add(task)
        self._last_job[user_id] = task
        if event_id is not None:
            self._in_flight.add(event_id)

        def done(t: asyncio.Task[None]) -> None:
            self._jobs.discard(t)
            if self._last_job.get(user_id) is t:
                del self._last_job[user_id]
            if event_id is not None:
                self._in_flight.discard(event_id)

        task.add_done_callback(done)
        return task

    async def _wait_for(self, job: asyncio.Task[None], wait_until: float | None) -> bool:
        """Wait for a delivery until ``wait_until`` (or ``answer_within``);
        True when it finished. A caller cancelled meanwhile (the client went
        away) leaves the delivery going."""
        loop = asyncio.get_running_loop()
        timeout = self.bounds.answer_within if wait_until is None else wait_until - loop.time()
        if timeout > 0 and not job.done():
            await asyncio.wait({job}, timeout=timeout)
        return job.done()

    @property
    def in_flight(self) -> frozenset[str]:
        """Ids of the events whose delivery is under way in this process."""
        return frozenset(self._in_flight)

    async def drain(self, grace: float) -> int:
        """At shutdown: give the deliveries under way ``grace`` seconds, then
        cancel the rest (their events stay undispatched: the sweep delivers
        them after the restart), then write the pending marks. Returns how
        many were cancelled."""
        late: set[asyncio.Task[None]] = set()
        if self._jobs:
            _, late = await asyncio.wait(set(self._jobs), timeout=max(grace, 0))
            for task in late:
                task.cancel()
            if late:
                await asyncio.wait(late, timeout=1.0)  # a cancelled call returns at once
                log.warning("shutdown: %d deliveries to Temporal left to the sweep", len(late))
        await self.flush_marks()
        return len(late)

    def targets(self, user_id: str, event_name: str) -> Targets:
        return self._look_up(user_id, event_name, signals=False)[0]

    def _look_up(
        self, user_id: str, event_name: str, *, signals: bool, skip: frozenset[int] = frozenset()
    ) -> tuple[Targets, list[run_signals.PendingSignal] | None]:
        """The event's targets and, when the ingest queued run signals, the
        user's unsent ones, in one read transaction: the user's open runs
        (which both need), the journeys entering on the event and the
        signals used to be three, the signals' on a thread hop of its own,
        on every new user's event (whose stage tag queues one)."""
        pending = None
        with self.store.read() as s:
            runs = queries.open_runs_in(s, user_id)
            journeys = self.cache.event_triggered_in(s, event_name)
            if signals:
                pairs = tuple(dict.fromkeys((r.workflow_id, r.journey_id) for r in runs))
                pending = run_signals.unsent_in(s, user_id=user_id, skip=skip, open_runs={user_id: pairs})
        targets = Targets(
            list(dict.fromkeys(r.workflow_id for r in runs)),
            journeys,
            {r.workflow_id: r.journey_id for r in runs},
        )
        return targets, pending

    def _signals_in_hand(self) -> frozenset[int]:
        """Run signals this process sent whose mark is not committed yet."""
        return frozenset(self._signals_sent) | self._signals_marking

    async def _send_signals(self, client: Client, pending: list[run_signals.PendingSignal]) -> int:
        """Send signals read with an ingest's targets; their marks go with the
        batched event marks (a signal sent twice is harmless, see
        ``engine.run_signals``), not in a write transaction of their own."""
        sent = [signal.id for signal in pending if await run_signals.send(client, signal)]  # in order
        if sent:
            self._signals_sent.extend(sent)
            self._schedule_marks()
        return len(sent)

    async def deliver_signals(self, client: Client, user_id: str | None = None) -> int:
        """Send the run signals still queued (of one user, else all): after an
        ingest or an identify that merged users or changed derived tags."""
        try:
            return await run_signals.deliver(self.store, client, user_id=user_id)
        except Exception:  # noqa: BLE001 - the sweep sends them later
            log.exception("could not send run signals; the sweep will")
            return 0

    async def dispatch(
        self, client: Client, user_id: str, event: UserEvent, outcome: Outcome, targets: Targets | None = None
    ) -> None:
        """Deliver, then remember that it was delivered (only if it all was)."""
        await self.deliver(client, user_id, event, outcome, targets)
        if not outcome.complete:
            self.counters.event("track", "undispatched")
            return
        self._dispatched[event.id] = outcome.record()
        self._recent[event.id] = None
        if len(self._recent) > RECENT_DISPATCHED:
            self._recent.popitem(last=False)
        self._schedule_marks()

    def _schedule_marks(self) -> None:
        if self._marker is None or self._marker.done():
            self._marker = asyncio.create_task(self._mark_soon())

    async def _mark_soon(self) -> None:
        # until nothing is left: marks added while a flush was being written
        # would otherwise wait for the next event (or the sweep)
        while True:
            await asyncio.sleep(MARK_DELAY_SECONDS)
            try:
                await self.flush_marks()
            except Exception:  # noqa: BLE001 - unmarked events are swept again later
                log.exception("could not mark events dispatched; the sweep will deliver them again")
            if not self._dispatched and not self._signals_sent:
                return

    async def flush_marks(self) -> None:
        """Write the pending dispatched marks (events and run signals, one
        write transaction) now; also at shutdown. One write at a time: a
        caller returns only after the marks taken by a write already under
        way (the batched marker's) are committed too, so "flushed" means
        every mark made before the call is in the store."""
        async with self._marks_lock:
            done, self._dispatched = self._dispatched, {}
            sent, self._signals_sent = self._signals_sent, []
            if not done and not sent:
                return
            self._signals_marking = self._signals_marking | frozenset(sent)
            try:
                await asyncio.to_thread(self._write_marks, done, sent)
            finally:
                self._signals_marking = self._signals_marking - frozenset(sent)

    def _write_marks(self, done: dict[str, dict[str, Any]], sent: list[int]) -> None:
        at = utcnow()

        def work(s: Session) -> None:
            mark_dispatched_in(s, list(done), at, done)
            run_signals.mark_sent_in(s, sent, at)

        self.store.transact(work)

    async def sweep(self, client: Client, *, older_than: timedelta, limit: int | None = None) -> int:
        """Deliver events stored at least ``older_than`` ago and never
        dispatched (the process died, or Temporal was down), page after page
        of ``limit`` (default ``sweep_batch``) until none is left or Temporal
        takes none of a page; returns how many are now dispatched."""
        if not await self._temporal_answers(client):
            log.info("sweep: Temporal does not answer; next round")
            return 0
        page = limit or self.bounds.sweep_batch
        before = utcnow() - older_than
        after: tuple[datetime, str] | None = None
        done = 0
        while True:
            pending = await asyncio.to_thread(undispatched, self.store, received_before=before, limit=page, after=after)
            if not pending:
                break
            last = pending[-1]
            after = (last.received_at, last.id) if last.received_at is not None else None
            todo = [item for item in pending if item.id not in self._in_flight]  # an ingest is delivering those
            delivered, refusing = await self._sweep_page(client, todo)
            done += delivered
            if todo:
                log.info("sweep: %d of %d undispatched events delivered", delivered, len(todo))
            if len(pending) < page or after is None or refusing:
                break
        try:
            async with asyncio.timeout(self.bounds.deliver_within):
                signals = await run_signals.deliver(
                    self.store, client, created_before=utcnow() - older_than, limit=page
                )
        except TimeoutError:
            signals = 0
            log.warning("sweep: run signals not sent within %.0f s; next round", self.bounds.deliver_within)
        if signals:
            log.info("sweep: %d run signals sent", signals)
        try:
            # signals sent over a week ago are history nobody reads: bounded batches a round
            pruned = await asyncio.to_thread(run_signals.prune_sent, self.store)
        except Exception:  # noqa: BLE001 - a cleanup; the next round tries again
            log.exception("sweep: could not prune sent run signals; next round")
            pruned = 0
        if pruned:
            log.info("sweep: %d sent run signals pruned", pruned)
        return done

    async def _temporal_answers(self, client: Client) -> bool:
        check = getattr(getattr(client, "service_client", None), "check_health", None)
        if check is None:  # a stand-in client (tests): ask by delivering
            return True
        try:
            async with asyncio.timeout(self.bounds.health_within):
                await check()
            return True
        except Exception:  # noqa: BLE001 - unreachable, refusing, or too slow: all the same here
            return False

    async def _sweep_page(self, client: Client, items: list[PendingEvent]) -> tuple[int, bool]:
        """Deliver one page: users at once up to ``sweep_concurrency``, each
        user's events in order, each delivery within ``deliver_within``.
        Returns how many were delivered, and whether Temporal seems to be
        refusing: as many deliveries as may run at once were refused or
        timed out and none went through (the rest then wait for the next
        round). A row that raises is logged and skipped, and counts for
        neither: one bad row must not block the others behind it."""
        by_user: dict[str, list[PendingEvent]] = {}
        for item in items:
            by_user.setdefault(item.user_id, []).append(item)
        gate = asyncio.Semaphore(max(1, self.bounds.sweep_concurrency))
        tally = {"done": 0, "refused": 0}

        def refusing() -> bool:
            return tally["done"] == 0 and tally["refused"] >= max(1, self.bounds.sweep_concurrency)

        async def one_user(events: list[PendingEvent]) -> None:
            async with gate:
                for item in events:
                    if refusing():
                        return
                    outcome = Outcome(user_id=item.user_id)
                    event = UserEvent(
                        id=item.id, name=item.name, properties=item.properties, occurred_at=item.occurred_at
                    )
                    try:
                        async with asyncio.timeout(self.bounds.deliver_within):
                            await self.dispatch(client, item.user_id, event, outcome)
                    except TimeoutError:
                        outcome.complete = False
                        log.warning("sweep: event %s not delivered within %.0f s", item.id, self.bounds.deliver_within)
                    except Exception:  # noqa: BLE001 - one bad row must not block the others behind it
                        log.exception("sweep: event %s could not be dispatched", item.id)
                        continue
                    tally["done" if outcome.complete else "refused"] += 1

        await asyncio.gather(*(one_user(events) for events in by_user.values()))
        return tally["done"], refusing()

    async def deliver(
        self, client: Client, user_id: str, event: UserEvent, outcome: Outcome, targets: Targets | None = None
    ) -> None:
        if targets is None:
            targets = await asyncio.to_thread(self.targets, user_id, event.name)
        results = await asyncio.gather(
            *(signal_event(client, wid, event) for wid in targets.runs), return_exceptions=True
        )
        for wid, res in zip(targets.runs, results, strict=True):
            if isinstance(res, BaseException):
                log.warning("could not signal %s: %s", wid, res)
                self.counters.signal("error")
                outcome.complete = False
            elif res:
                outcome.signalled.append(wid)
                self.counters.signal("delivered")
            else:
                outcome.gone.append(wid)
                self.counters.signal("gone")
        for deployed in targets.journeys:
            if self._in_it_already(targets, deployed.info.id, user_id):
                outcome.joined.append(deployed.info.id)
                continue
            entry = deployed.ir.entry
            needs_store = not isinstance(entry, EventEntry) or entry.where is not None
            # no entry condition: it matches, no need for a worker thread
            if needs_store and not await asyncio.to_thread(self._matches, deployed, user_id, event):
                continue
            try:
                started = await start_run(
                    client, self.settings.task_queue, run_input(deployed.version, deployed.ir, user_id, event)
                )
            except RPCError as exc:
                log.warning("could not start %s for an event: %s", deployed.info.id, exc)
                outcome.complete = False
                continue
            outcome.started.append(started.workflow_id)
            self.counters.run_started(deployed.info.id, "event")

    @staticmethod
    def _in_it_already(targets: Targets, journey_id: str, user_id: str) -> bool:
        """The person has a run of the journey going under another id (one
        merged into them): the event reached it as a signal, and a start
        under this id would make a second live run of one person."""
        own = workflow_id(journey_id, user_id)
        return any(j == journey_id and wid != own for wid, j in targets.run_journeys.items())

    def _matches(self, deployed: Deployed, user_id: str, event: UserEvent) -> bool:
        entry = deployed.ir.entry
        assert isinstance(entry, EventEntry)
        if entry.where is None:
            return True
        snapshot = None
        if needs_user(entry.where):
            snapshot = queries.user_snapshot(self.store, self.settings, user_id, utcnow(), count_queries(entry.where))
        return evaluate(entry.where, snapshot, event.properties)
