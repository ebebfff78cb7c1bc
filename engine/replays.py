"""Replaying failed sends: an operator asks again for the sends of a journey
(or of one step) that failed — a vendor outage outlasted the retry deadline,
a broken template was fixed — and the worker sends them with their original
idempotency key, so a vendor that de-duplicates by key still sees one message.

1. A failed send keeps its request (``keep``): what the run asked, the
   template's transactional flag and the user's timezone, for the caps.
2. ``request`` (the API) marks the journey's failed rows that kept one as
   ``replaying``. Each is counted against the user's caps now, as a new send
   would be; one the caps stop stays failed and is reported as capped.
3. ``drain`` (the worker's poller) claims ``replaying`` rows one at a time
   with a lease (two workers never send one row at once) and sends each
   through ``JourneyActivities.send`` with its kept request. The ledger sees
   a non-final row with the same key and sends it at most once more; consent,
   reachability and the template are read again (an opt-out since the
   failure suppresses it). A retryable vendor failure leaves the row
   ``replaying`` for a later round (a lease later), until the channel's retry
   deadline counted from the replay request; then it is failed again, and
   can be replayed again.

The run that made the send has moved on (its timeline says the send failed);
the delivery row and the journey's numbers show the replay's outcome.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import bindparam, select, update
from sqlalchemy.orm import Session
from temporalio.exceptions import ApplicationError

from contracts.activities import SendRequest
from engine import caps
from engine.settings import Settings
from engine.store import Store
from engine.store.models import Delivery
from engine.store.types import utc, utcnow

if TYPE_CHECKING:
    from engine.activities import JourneyActivities

REPLAYING = "replaying"
MAX_REPLAY = 1000  # rows one request marks (ask again for more)
DRAIN_BATCH = 50  # rows one poll sends
LEASE = timedelta(seconds=60)  # longer than one send attempt (30 s)

_D = Delivery.__table__
_KEEP = update(_D).where(_D.c.idempotency_key == bindparam("key"), _D.c.status == "failed")
_CLAIM = update(_D).where(
    _D.c.idempotency_key == bindparam("key"),
    _D.c.status == REPLAYING,
    _D.c.updated_at <= bindparam("stale"),
)


def keep(store: Store, key: str, request: SendRequest, *, transactional: bool, timezone: str | None) -> None:
    """Keep a failed send's request on its row (only a failed row takes it)."""
    kept = json.dumps(
        {"request": request.model_dump(mode="json"), "transactional": transactional, "timezone": timezone},
        ensure_ascii=False,
    )
    store.transact(lambda s: s.execute(_KEEP.values(replay_request=kept), {"key": key}))


@dataclass(frozen=True)
class ReplayRequested:
    requested: int  # marked replaying: the worker sends them
    capped: int  # a frequency cap stops them now: still failed
    not_replayable: int  # failed before requests were kept, or without a channel
    more: bool  # more failed rows than one request marks


def request(
    store: Store,
    settings: Settings,
    journey_id: str,
    *,
    node_id: str | None = None,
    version: int | None = None,
    limit: int = MAX_REPLAY,
    now: datetime | None = None,
) -> ReplayRequested:
    """Mark the failed sends of a journey (one node, one version) for replay."""
    at = utc(now) if now is not None else utcnow()

    def work(s: Session) -> ReplayRequested:
        q = select(_D.c.idempotency_key, _D.c.user_id, _D.c.channel, _D.c.replay_request).where(
            _D.c.journey_id == journey_id, _D.c.status == "failed"
        )
        if node_id is not None:
            q = q.where(_D.c.node_id == node_id)
        if version is not None:
            q = q.where(_D.c.version == version)
        rows = s.execute(q.order_by(_D.c.created_at).limit(limit + 1)).all()
        more = len(rows) > limit
        requested = capped = not_replayable = 0
        for key, user_id, channel, kept in rows[:limit]:
            if kept is None or channel is None:
                not_replayable += 1
                continue
            denial = caps.check_and_count(s, store, settings, _cap_request(key, user_id, channel, json.loads(kept), at))
            if denial is not None:
                capped += 1
                continue
            s.execute(
                update(_D)
                .where(_D.c.idempotency_key == key)
                .values(
                    status=REPLAYING,
                    reason="replay requested",
                    last_error=None,
                    created_at=at,  # the retry deadline counts from here
                    updated_at=at - LEASE,  # claimable at once
                )
            )
            requested += 1
        return ReplayRequested(requested, capped, not_replayable, more)

    return store.transact(work)


def _cap_request(key: str, user_id: str, channel: str, kept: dict[str, Any], at: datetime) -> caps.CapRequest:
    req = kept["request"]
    return caps.CapRequest(
        user_id=user_id,
        channel=channel,
        delivery_key=key,
        now=at,
        journey_id=req.get("journey_id"),
        transactional=bool(kept.get("transactional")),
        journey_limit_count=req.get("journey_limit_count"),
        journey_limit_window_seconds=req.get("journey_limit_window_seconds"),
        journey_limit_calendar=req.get("journey_limit_calendar"),
        timezone=kept.get("timezone") or req.get("journey_timezone"),
    )


def _claim(store: Store, limit: int) -> list[tuple[str, str]]:
    """Up to ``limit`` replaying rows whose lease has run out, each claimed
    by moving its lease forward (a row another worker claimed is skipped)."""
    now = utcnow()
    stale = now - LEASE
    with store.read() as s:
        rows = s.execute(
            select(_D.c.idempotency_key, _D.c.replay_request)
            .where(_D.c.status == REPLAYING, _D.c.updated_at <= stale)
            .order_by(_D.c.updated_at)
            .limit(limit)
        ).all()
    claimed = []
    for key, kept in rows:
        won = store.transact(lambda s, k=key: s.execute(_CLAIM.values(updated_at=now), {"key": k, "stale": stale}))
        if won.rowcount == 1 and kept is not None:
            claimed.append((key, kept))
    return claimed


async def drain(activities: JourneyActivities, limit: int = DRAIN_BATCH) -> int:
    """Send the replaying rows whose turn it is; how many were tried."""
    claimed = await asyncio.to_thread(_claim, activities.store, limit)
    for _key, kept in claimed:
        req = SendRequest.model_validate(json.loads(kept)["request"])
        try:
            await activities.send(req)
        except ApplicationError:
            pass  # retryable: the row stays replaying, its last error noted; a lease later it goes again
    return len(claimed)
