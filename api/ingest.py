"""From a Segment message to stored events, linked identities and runs.

Order of work for a ``track``: store the event (``engine.events.ingest_event``:
once per ``messageId``, on the right person, derived tags refreshed); only if
it was new, signal it to the user's open runs (the store's runs table knows
them; a run that finished meanwhile is ignored) and start the active journeys
that enter on it (signal-with-start, so the trigger event is the run's first
signal and a run already going just receives it). A duplicate delivery of
the same message does nothing at all — otherwise an ``reentry always``
journey would be entered twice.

Paused, stopped and archived journeys start nothing; entries that arrive
while a journey is paused are dropped, not queued, so resuming does not
flood users with what came due meanwhile.

Nothing is lost between the store and Temporal: the event is stored as
undispatched and marked dispatched only once every signal and start it
needed was accepted. If the process dies in between, or Temporal refuses or
cannot be reached, the event stays undispatched: a resend of the same
``messageId`` delivers it (instead of being ignored as a duplicate), and
``sweep`` — run every ``redispatch_seconds`` by the app — delivers what is
older than that. Delivering twice is harmless: runs drop event ids they have
seen and ``engine.runs.begin`` enters a journey once per event. Marks are
written in batches a quarter of a second later (one UPDATE for all the
events dispatched meanwhile), so the request path has one write, not two; a
crash before the batch is written only means those events are swept again.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from temporalio.client import Client
from temporalio.service import RPCError

from api.catalog_cache import Deployed, JourneyCache
from api.metrics import Metrics
from api.runs import signal_event, start_run
from api.segment import Alias, Group, Identify, Page, Track, identifiers, profile_attributes
from api.settings import ApiSettings
from contracts.conditions import count_queries, evaluate, needs_user
from contracts.runs import UserEvent
from dsl.ir import EventEntry
from engine import queries
from engine.events import IngestResult, ingest_event, link_identities, mark_dispatched, undispatched
from engine.store import Store
from engine.store.types import utcnow

log = logging.getLogger("journeys.api")

MARK_DELAY_SECONDS = 0.25


@dataclass
class Outcome:
    user_id: str | None = None
    new: bool = False
    signalled: list[str] = field(default_factory=list)
    started: list[str] = field(default_factory=list)
    complete: bool = True  # every signal and start it needed was accepted


@dataclass(frozen=True)
class Targets:
    """Where an event goes: the user's open runs (workflow ids) and the
    active journeys it enters."""

    runs: list[str]
    journeys: list[Deployed]


class Ingestor:
    def __init__(self, store: Store, settings: ApiSettings, cache: JourneyCache, metrics: Metrics) -> None:
        self.store = store
        self.settings = settings
        self.cache = cache
        self.metrics = metrics
        self._dispatched: list[str] = []
        self._marker: asyncio.Task[None] | None = None

    async def handle(self, msg: Any, client: Client) -> Outcome:
        if isinstance(msg, Track):
            return await self.track(msg, client)
        if isinstance(msg, Page):  # Screen too
            props = dict(msg.properties)
            if msg.name:
                props.setdefault("name", msg.name)
            track = Track.model_validate(
                {**msg.model_dump(exclude={"type", "name", "properties"}), "event": msg.type, "properties": props}
            )
            return await self.track(track, client, kind=msg.type)
        if isinstance(msg, Identify):
            return await self.identify(msg)
        if isinstance(msg, Alias):
            return await self.alias(msg)
        if isinstance(msg, Group):
            self.metrics.events.labels("group", "ignored").inc()
            return Outcome()
        raise TypeError(type(msg).__name__)

    async def identify(self, msg: Identify) -> Outcome:
        ids = identifiers(msg, self.settings.segment_user_id_kind, msg.traits)
        attrs = profile_attributes(msg)
        uid = await asyncio.to_thread(
            link_identities, self.store, ids, attributes=attrs or None, rules=self.settings.derived
        )
        self.metrics.events.labels("identify", "linked").inc()
        return Outcome(user_id=uid)

    async def alias(self, msg: Alias) -> Outcome:
        kind = self.settings.segment_user_id_kind
        previous_kind = (
            "anonymous_id"
            if await asyncio.to_thread(queries.lookup, self.store, "anonymous_id", msg.previousId)
            else kind
        )
        ids = [(kind, msg.userId), (previous_kind, msg.previousId)]
        uid = await asyncio.to_thread(link_identities, self.store, ids, rules=self.settings.derived)
        self.metrics.events.labels("alias", "linked").inc()
        return Outcome(user_id=uid)

    async def track(self, msg: Track, client: Client, kind: str = "track") -> Outcome:
        event_id = msg.messageId or f"api-{uuid.uuid4().hex}"
        ids = identifiers(msg, self.settings.segment_user_id_kind)

        def store_and_look_up() -> tuple[IngestResult, Targets | None]:
            # One hop to a worker thread for the write and the reads that
            # follow it (each hop is a wait for a thread under load).
            stored = ingest_event(
                self.store,
                event_id=event_id,
                name=msg.event,
                identifiers=ids,
                properties=msg.properties,
                occurred_at=msg.timestamp,
                rules=self.settings.derived,
                dispatch=True,
            )
            return stored, None if stored.dispatched else self.targets(stored.user_id, msg.event)

        result, found = await asyncio.to_thread(store_and_look_up)
        # dispatched: marked in the store, or about to be (the batched mark)
        dispatched = result.dispatched or (not result.new and event_id in self._dispatched)
        status = "new" if result.new else "duplicate" if dispatched else "redelivered"
        self.metrics.events.labels(kind, status).inc()
        outcome = Outcome(user_id=result.user_id, new=result.new)
        if dispatched:
            return outcome
        event = UserEvent(id=event_id, name=msg.event, properties=dict(msg.properties), occurred_at=msg.timestamp)
        await self.dispatch(client, result.user_id, event, outcome, found)
        return outcome

    def targets(self, user_id: str, event_name: str) -> Targets:
        runs = queries.open_runs(self.store, user_id)
        return Targets(list(dict.fromkeys(r.workflow_id for r in runs)), self.cache.event_triggered(event_name))

    async def dispatch(
        self, client: Client, user_id: str, event: UserEvent, outcome: Outcome, targets: Targets | None = None
    ) -> None:
        """Deliver, then remember that it was delivered (only if it all was)."""
        await self.deliver(client, user_id, event, outcome, targets)
        if not outcome.complete:
            self.metrics.events.labels("track", "undispatched").inc()
            return
        self._dispatched.append(event.id)
        if self._marker is None or self._marker.done():
            self._marker = asyncio.create_task(self._mark_soon())

    async def _mark_soon(self) -> None:
        await asyncio.sleep(MARK_DELAY_SECONDS)
        try:
            await self.flush_marks()
        except Exception:  # noqa: BLE001 - unmarked events are swept again later
            log.exception("could not mark events dispatched; the sweep will deliver them again")

    async def flush_marks(self) -> None:
        """Write the pending dispatched marks now (also at shutdown)."""
        ids, self._dispatched = self._dispatched, []
        if ids:
            await asyncio.to_thread(mark_dispatched, self.store, ids)

    async def sweep(self, client: Client, *, older_than: timedelta, limit: int = 100) -> int:
        """Deliver events stored at least ``older_than`` ago and never
        dispatched (the process died, or Temporal was down); returns how many
        are now dispatched."""
        pending = await asyncio.to_thread(undispatched, self.store, received_before=utcnow() - older_than, limit=limit)
        done = 0
        for item in pending:
            outcome = Outcome(user_id=item.user_id)
            event = UserEvent(id=item.id, name=item.name, properties=item.properties, occurred_at=item.occurred_at)
            await self.dispatch(client, item.user_id, event, outcome)
            done += outcome.complete
        if pending:
            log.info("sweep: %d of %d undispatched events delivered", done, len(pending))
        return done

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
                self.metrics.signals.labels("error").inc()
                outcome.complete = False
            elif res:
                outcome.signalled.append(wid)
                self.metrics.signals.labels("delivered").inc()
            else:
                self.metrics.signals.labels("gone").inc()
        for deployed in targets.journeys:
            entry = deployed.ir.entry
            needs_store = not isinstance(entry, EventEntry) or entry.where is not None
            # no entry condition: it matches, no need for a worker thread
            if needs_store and not await asyncio.to_thread(self._matches, deployed, user_id, event):
                continue
            try:
                started = await start_run(
                    client, self.settings.task_queue, deployed.version, deployed.ir, user_id, trigger=event
                )
            except RPCError as exc:
                log.warning("could not start %s for an event: %s", deployed.info.id, exc)
                outcome.complete = False
                continue
            outcome.started.append(started.workflow_id)
            self.metrics.runs_started.labels(deployed.info.id, "event").inc()

    def _matches(self, deployed: Deployed, user_id: str, event: UserEvent) -> bool:
        entry = deployed.ir.entry
        assert isinstance(entry, EventEntry)
        if entry.where is None:
            return True
        snapshot = None
        if needs_user(entry.where):
            snapshot = queries.user_snapshot(self.store, self.settings, user_id, utcnow(), count_queries(entry.where))
        return evaluate(entry.where, snapshot, event.properties)
