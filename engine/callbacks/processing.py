"""Carrying out stored callbacks: their journey events ingested, off the
request path.

``CallbackProcessor.accept`` is the route's one await after decrypting: it
stores the receipt (``engine.callbacks.receipts``) and schedules its
processing as a task, so the vendor's answer waits for one write and not
for Temporal. ``process`` maps the stored message again (mapping is pure)
and ingests each event with ``Dispatcher.ingest`` under an id derived from
the receipt's: stored once, on the person its identifier names, then
signalled and started like any Segment event. Without a Temporal client the
event is stored undispatched (``engine.events.ingest_event``), which the
dispatcher's own sweep delivers once Temporal is back. A delivery report
(the Official Account's ``TEMPLATESENDJOBFINISH``) goes onto the send's
ledger row through ``ledger.settle``, found among the recipient's sends.
An event through a channel code (its state / scene is a code's placement)
first gets the code's tags and scan record (``engine.channel_codes.apply``,
once per receipt), then carries the code in its properties, then starts
the code's welcome journey if it has one.

A receipt is marked processed only after every step succeeded; a failure
(the database went away, the process died) leaves it for ``sweep``, which
the API runs every ``callback_retry_seconds``. Every step is idempotent —
events by id, a channel code's one-time effects under ``receipts.claim`` —
so processing a receipt twice (the sweep racing a slow task, two API
processes) adds nothing.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session
from temporalio.client import Client

from contracts.runs import UserEvent
from engine import channel_codes, consent, identity, ledger, lifecycle, queries
from engine.callbacks import official_account, receipts, wecom
from engine.callbacks.mapping import DeliveryReport, JourneyEvent, Mapped
from engine.callbacks.messages import Message
from engine.callbacks.receipts import Receipt
from engine.dispatch import Dispatcher
from engine.events import ingest_event
from engine.settings import Settings
from engine.starts import run_input, start_run
from engine.store import Store
from engine.store.models import Delivery
from engine.store.types import utcnow

log = logging.getLogger("journeys.callbacks")


# How far back a delivery report looks for its send: WeChat reports a
# template message within seconds; a send older than this is not it.
REPORT_WINDOW = timedelta(days=7)


def map_message(settings: Settings, vendor: str, message: Message) -> Mapped:
    """The vendor module's mapping of one message, with the config it needs."""
    if vendor == wecom.VENDOR:
        cfg = settings.channels.wecom
        return wecom.map_message(
            message, corp_id=cfg.corp_id or "", external_prefixes=tuple(cfg.external_userid_prefixes)
        )
    if vendor == official_account.VENDOR:
        return official_account.map_message(message)
    raise ValueError(f"unknown callback vendor {vendor!r}")


def find_delivery(store: Store, report: DeliveryReport, *, now: datetime | None = None) -> str | None:
    """The idempotency key of the send a report is about: among the
    recipient's sends of the last ``REPORT_WINDOW`` on the report's channel
    (``ix_deliveries_user_at``), the one with the vendor's message id."""
    since = (now or utcnow()) - REPORT_WINDOW
    with store.read() as s:
        users = [u for kind, value in report.identifiers if (u := identity.lookup(s, kind, value)) is not None]
        if not users:
            return None
        return s.scalar(
            select(Delivery.idempotency_key)
            .where(
                Delivery.user_id.in_(users),
                Delivery.at >= since,
                Delivery.channel == report.channel,
                Delivery.provider_message_id == report.provider_message_id,
            )
            .limit(1)
        )


class CallbackProcessor:
    """One per API process (its in-flight set keeps one process from
    processing a receipt twice at once)."""

    def __init__(
        self,
        store: Store,
        settings: Settings,
        dispatcher: Dispatcher,
        client: Callable[[], Client | None],
    ) -> None:
        self.store = store
        self.settings = settings
        self.dispatcher = dispatcher
        self.client = client  # read per use: the API may connect to Temporal after it started
        self._tasks: set[asyncio.Task[bool]] = set()
        self._in_hand: set[str] = set()

    async def accept(self, *, vendor: str, receiver: str, message: Message) -> Receipt:
        """Store the message (once) and schedule its processing; returns when
        the receipt is committed, which is when the vendor may hear
        "success". A message that makes nothing is stored processed."""
        mapped = map_message(self.settings, vendor, message)
        done = self._nothing_to_do(mapped)
        receipt, _new = await asyncio.to_thread(
            receipts.store,
            self.store,
            vendor=vendor,
            receiver=receiver,
            kind=mapped.kind,
            message=message,
            outcome=done,
        )
        if not receipt.processed:
            self.schedule(receipt.id)
        return receipt

    @staticmethod
    def _nothing_to_do(mapped: Mapped) -> dict[str, Any] | None:
        if mapped.events or mapped.report is not None:
            return None
        return {"events": [], "ignored": mapped.ignored or "nothing to do"}

    def schedule(self, rid: str) -> None:
        if rid in self._in_hand:
            return
        task = asyncio.create_task(self.process(rid), name=f"callback {rid}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def idle(self) -> None:
        """Wait for the scheduled processing (tests, shutdown)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def aclose(self) -> None:
        """Stop processing: unfinished receipts stay for the next sweep."""
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def process(self, rid: str) -> bool:
        """Process one receipt unless done or in hand here; True once it is
        processed."""
        if rid in self._in_hand:
            return False
        self._in_hand.add(rid)
        try:
            receipt = await asyncio.to_thread(receipts.get, self.store, rid)
            if receipt is None:
                return False
            if receipt.processed:
                return True
            try:
                outcome = await self._carry_out(receipt)
                await asyncio.to_thread(receipts.finish, self.store, rid, outcome)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - kept for the sweep, with why
                log.exception("callback %s could not be processed; the sweep will try again", rid)
                try:
                    await asyncio.to_thread(receipts.fail, self.store, rid, f"{type(exc).__name__}: {exc}")
                except Exception:  # noqa: BLE001 - the store is down: the sweep finds it unprocessed anyway
                    log.exception("could not record the failure of callback %s", rid)
                return False
            return True
        finally:
            self._in_hand.discard(rid)

    async def _carry_out(self, receipt: Receipt) -> dict[str, Any]:
        mapped = map_message(self.settings, receipt.vendor, receipt.message)
        outcome: dict[str, Any] = {"events": []}
        if mapped.ignored:
            outcome["ignored"] = mapped.ignored
        placements = [e.placement for e in mapped.events if e.placement]
        codes = await asyncio.to_thread(channel_codes.codes_for, self.store, receipt.vendor, placements)
        through = [
            channel_codes.Through(receipt.id + e.suffix, e, codes[e.placement])
            for e in mapped.events
            if e.placement in codes
        ]
        if through:
            # tags first, so a journey entered on the event already sees them
            await asyncio.to_thread(channel_codes.apply, self.store, receipt.id, through)
            outcome["channel_codes"] = sorted({t.code.id for t in through})
        owners: dict[str, str] = {}
        for event in mapped.events:
            event_id = receipt.id + event.suffix
            code = codes.get(event.placement or "")
            if code is not None:
                event = replace(event, properties=event.properties | channel_codes.code_properties(code))
            # A follow opts back in before the event is ingested, so a journey
            # it starts can already send on the channel; an unfollow opts out
            # after, on the person the event landed on (maybe new). A follow
            # of one staff member of a person not known yet is kept after,
            # on the person the event made.
            found, changed = (
                (await asyncio.to_thread(self._follow, receipt, None, event)) if event.following else (False, None)
            )
            owners[event_id] = await self._ingest(receipt, event_id, event)
            outcome["events"].append(event_id)
            if event.following is False or (event.following and event.via is not None and not found):
                _, changed = await asyncio.to_thread(self._follow, receipt, owners[event_id], event)
            if changed:
                outcome.setdefault("consent", []).append({"user_id": owners[event_id], "changed": changed})
        welcomed = [await self._welcome(t, owners[t.event_id]) for t in through if t.code.welcome_journey]
        if welcomed:
            outcome["welcome"] = welcomed
        if mapped.report is not None:
            outcome["report"] = await self._settle(mapped.report)
        return outcome

    def _follow(self, receipt: Receipt, user_id: str | None, event: JourneyEvent) -> tuple[bool, str | None]:
        """The follow or unfollow onto the person's consent for the vendor's
        channel; ``user_id`` None: whoever the event's identifiers name now
        (nobody yet: nothing to opt back in). Whether there was a person to
        apply it to, and what changed."""
        assert event.following is not None
        following, at = event.following, event.occurred_at or receipt.received_at

        def work(s: Session) -> tuple[bool, str | None]:
            uid = user_id or next(
                (u for kind, value in event.identifiers if (u := identity.lookup(s, kind, value)) is not None), None
            )
            if uid is None:
                return False, None
            return True, consent.follow_state(s, uid, receipt.vendor, following=following, at=at, via=event.via)

        return self.store.transact(work)

    async def _welcome(self, item: channel_codes.Through, user_id: str) -> dict[str, Any]:
        """Start the code's welcome journey (an ``entry api`` journey) for
        the person, the event as its trigger: ``engine.runs.begin`` enters
        once per (journey, person, event), so a second processing starts
        nothing new. Without Temporal this raises, and the sweep tries again."""
        jid = item.code.welcome_journey
        assert jid is not None
        client = self.client()
        if client is None:
            raise RuntimeError(f"Temporal is not connected: welcome journey {jid!r} waits for the sweep")
        info = await asyncio.to_thread(queries.get_journey, self.store, jid)
        if info is None or info.status != lifecycle.ADMITTING:
            return {"journey": jid, "skipped": f"the journey is {info.status if info else 'not deployed'}"}
        deployed = await asyncio.to_thread(self.dispatcher.cache.current, info)
        if deployed is None or deployed.ir.entry.kind != "api":
            return {"journey": jid, "skipped": "a welcome journey enters by API (entry api)"}
        event = item.event
        props = event.properties | channel_codes.code_properties(item.code)
        trigger = UserEvent(id=item.event_id, name=event.name, properties=props, occurred_at=event.occurred_at)
        started = await start_run(
            client,
            self.settings.task_queue,
            run_input(deployed.version, deployed.ir, user_id, trigger),
            signal_running=False,
        )
        return {"journey": jid, "workflow_id": started.workflow_id}

    async def _settle(self, report: DeliveryReport) -> dict[str, Any]:
        """The report onto the send's ledger row (``ledger.report_outcome``):
        a pending send is settled; a ``sent`` one that WeChat reports as not
        delivered becomes ``failed`` with its reason; the report also stays
        on the receipt."""
        out: dict[str, Any] = {
            "provider_message_id": report.provider_message_id,
            "status": report.status,
            "reason": report.reason,
        }
        key = await asyncio.to_thread(find_delivery, self.store, report)
        if key is None:
            out["delivery"] = None
            return out
        info = await asyncio.to_thread(ledger.report_outcome, self.store, key, report.status, report.reason)
        out["delivery"] = info.id
        out["ledger_status"] = info.status
        return out

    async def _ingest(self, receipt: Receipt, event_id: str, event: JourneyEvent) -> str:
        """Store (and dispatch) one event; whose it is."""
        client = self.client()
        if client is None:
            # Stored undispatched: the dispatcher's sweep delivers it once
            # Temporal is connected (engine.dispatch).
            stored = await asyncio.to_thread(
                ingest_event,
                self.store,
                event_id=event_id,
                name=event.name,
                identifiers=event.identifiers,
                properties=event.properties,
                occurred_at=event.occurred_at,
                rules=self.settings.derived,
                dispatch=True,
            )
            return stored.user_id
        outcome = await self.dispatcher.ingest(
            client,
            event_id=event_id,
            name=event.name,
            identifiers=event.identifiers,
            properties=event.properties,
            occurred_at=event.occurred_at,
            kind=receipt.vendor,
        )
        assert outcome.user_id is not None
        return outcome.user_id

    async def sweep(self, *, older_than: timedelta, limit: int = 100) -> int:
        """Process receipts stored at least ``older_than`` ago and never
        processed; returns how many are processed now."""
        waiting = await asyncio.to_thread(
            receipts.pending, self.store, received_before=utcnow() - older_than, limit=limit
        )
        done = 0
        for receipt in waiting:
            done += await self.process(receipt.id)
        if waiting:
            log.info("callback sweep: %d of %d stored callbacks processed", done, len(waiting))
        return done
