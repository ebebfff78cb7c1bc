"""From a Segment message to engine calls.

A ``track`` (and ``page``/``screen``, stored as events of those names)
becomes one ``engine.dispatch.Dispatcher.ingest``: stored once per
``messageId`` (a message without one gets a generated id, so it is not
de-duplicated), then delivered to the user's runs and the journeys it
enters. ``identify`` and ``alias`` link identifiers (and set profile
attributes); ``group`` is accepted and ignored. What a message's ids and
traits mean is ``api.segment``'s.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

from temporalio.client import Client

from api.metrics import Metrics
from api.segment import Alias, Group, Identify, Page, Track, identifiers, profile_attributes
from api.settings import ApiSettings
from engine import queries
from engine.dispatch import Dispatcher, Outcome
from engine.events import link_identities
from engine.store import Store


class Ingestor:
    def __init__(self, store: Store, settings: ApiSettings, dispatcher: Dispatcher, metrics: Metrics) -> None:
        self.store = store
        self.settings = settings
        self.dispatcher = dispatcher
        self.metrics = metrics

    async def handle(self, msg: Any, client: Client | None, *, wait_until: float | None = None) -> Outcome:
        """Store one message and deliver what it means to Temporal, waiting
        for that until ``wait_until`` (the event loop's clock; by default
        ``ingest_answer_seconds`` from now): ``Outcome.deferred`` says the
        answer could not wait (``engine.dispatch``)."""
        if isinstance(msg, Track):
            return await self.track(msg, client, wait_until=wait_until)
        if isinstance(msg, Page):  # Screen too
            props = dict(msg.properties)
            if msg.name:
                props.setdefault("name", msg.name)
            track = Track.model_validate(
                {**msg.model_dump(exclude={"type", "name", "properties"}), "event": msg.type, "properties": props}
            )
            return await self.track(track, client, kind=msg.type, wait_until=wait_until)
        if isinstance(msg, Identify):
            return await self.identify(msg, client, wait_until=wait_until)
        if isinstance(msg, Alias):
            return await self.alias(msg, client, wait_until=wait_until)
        if isinstance(msg, Group):
            self.metrics.event("group", "ignored")
            return Outcome()
        raise TypeError(type(msg).__name__)

    async def identify(self, msg: Identify, client: Client | None, *, wait_until: float | None = None) -> Outcome:
        ids = identifiers(msg, self.settings.segment_user_id_kind, msg.traits)
        attrs = profile_attributes(msg)
        uid = await asyncio.to_thread(
            link_identities, self.store, ids, attributes=attrs or None, rules=self.settings.derived
        )
        self.metrics.event("identify", "linked")
        # a merge ends the person's duplicate runs: tell them now, not at the next sweep
        sent = await self.dispatcher.signal_user(client, uid, wait_until=wait_until)
        return Outcome(user_id=uid, deferred=not sent)

    async def alias(self, msg: Alias, client: Client | None, *, wait_until: float | None = None) -> Outcome:
        kind = self.settings.segment_user_id_kind
        previous_kind = (
            "anonymous_id"
            if await asyncio.to_thread(queries.lookup, self.store, "anonymous_id", msg.previousId)
            else kind
        )
        ids = [(kind, msg.userId), (previous_kind, msg.previousId)]
        uid = await asyncio.to_thread(link_identities, self.store, ids, rules=self.settings.derived)
        self.metrics.event("alias", "linked")
        sent = await self.dispatcher.signal_user(client, uid, wait_until=wait_until)
        return Outcome(user_id=uid, deferred=not sent)

    async def track(
        self, msg: Track, client: Client | None, kind: str = "track", *, wait_until: float | None = None
    ) -> Outcome:
        return await self.dispatcher.ingest(
            client,
            event_id=msg.messageId or f"api-{uuid.uuid4().hex}",
            name=msg.event,
            identifiers=identifiers(msg, self.settings.segment_user_id_kind),
            properties=msg.properties,
            occurred_at=msg.timestamp,
            kind=kind,
            wait_until=wait_until,
        )
