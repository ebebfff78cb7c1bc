"""The deliveries ledger: every send, suppression and failure, exactly once.

A send is keyed by its idempotency key (run + node + visit, the same across
activity retries and workflow replays). ``deliver``:

1. looks the key up; a final row (sent / pending / suppressed / failed) is the
   answer, and the provider is not called again;
2. otherwise *reserves* the key in a write transaction, counting the send
   against the frequency caps in the same transaction (or recording it as
   suppressed when capped);
3. calls the provider with the key (providers pass it to the vendor, so a
   crash between the vendor's answer and step 4 is de-duplicated there);
4. records the outcome. Retryable provider failures leave the reservation in
   place and raise ``RetryableSendError`` so Temporal retries with the same
   key; after ``max_attempts`` the send is recorded as failed instead.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from engine import caps
from engine.channels.base import ChannelProvider, OutboundMessage
from engine.settings import Settings
from engine.store import Store
from engine.store.models import FINAL_DELIVERY_STATUSES, Delivery
from engine.store.types import utc, utcnow


class RetryableSendError(Exception):
    """The provider failed in a way worth retrying (timeout, 5xx, rate limit)."""


@dataclass(frozen=True)
class DeliveryMeta:
    idempotency_key: str
    user_id: str
    at: datetime  # workflow time
    run_key: str | None = None
    journey_id: str | None = None
    version: int | None = None
    node_id: str | None = None
    channel: str | None = None
    template: str | None = None
    variant: str | None = None


@dataclass(frozen=True)
class DeliveryInfo:
    id: str
    idempotency_key: str
    status: str
    channel: str | None
    reason: str | None
    provider_message_id: str | None
    attempts: int

    @property
    def final(self) -> bool:
        return self.status in FINAL_DELIVERY_STATUSES


def _info(row: Delivery) -> DeliveryInfo:
    return DeliveryInfo(
        row.id, row.idempotency_key, row.status, row.channel, row.reason, row.provider_message_id, row.attempts
    )


def _row(session: Session, key: str) -> Delivery | None:
    return session.scalars(select(Delivery).where(Delivery.idempotency_key == key)).first()


def _new_row(meta: DeliveryMeta, status: str, reason: str | None) -> Delivery:
    now = utcnow()
    return Delivery(
        idempotency_key=meta.idempotency_key,
        run_key=meta.run_key,
        journey_id=meta.journey_id,
        version=meta.version,
        node_id=meta.node_id,
        user_id=meta.user_id,
        channel=meta.channel,
        template=meta.template,
        variant=meta.variant,
        status=status,
        reason=reason,
        attempts=0,
        at=utc(meta.at),
        created_at=now,
        updated_at=now,
    )


def lookup(store: Store, key: str) -> DeliveryInfo | None:
    with store.read() as s:
        return find(s, key)


def find(session: Session, key: str) -> DeliveryInfo | None:
    """``lookup`` inside an open session."""
    row = _row(session, key)
    return _info(row) if row else None


def record(store: Store, meta: DeliveryMeta, status: str, reason: str | None = None) -> DeliveryInfo:
    """Record an outcome decided without the provider (suppressed, failed,
    deferred). The first final outcome for a key wins: a replay that would
    decide differently (say the user opted out meanwhile) gets the original."""

    def work(s: Session) -> DeliveryInfo:
        row = _row(s, meta.idempotency_key)
        if row is not None and row.status in FINAL_DELIVERY_STATUSES:
            return _info(row)
        if row is None:
            row = _new_row(meta, status, reason)
            s.add(row)
        else:
            row.status, row.reason, row.updated_at = status, reason, utcnow()
            caps.release(s, meta.idempotency_key)
        s.flush()
        return _info(row)

    return store.transact(work)


def _reserve(
    s: Session, store: Store, settings: Settings, meta: DeliveryMeta, cap: caps.CapRequest | None
) -> tuple[DeliveryInfo, bool]:
    """(row, go): go is False when the answer is already final."""
    row = _row(s, meta.idempotency_key)
    if row is not None and row.status in FINAL_DELIVERY_STATUSES:
        return _info(row), False
    if row is None:
        if cap is not None:
            reason = caps.check_and_count(s, store, settings, cap)
            if reason is not None:
                row = _new_row(meta, "suppressed", reason)
                s.add(row)
                s.flush()
                return _info(row), False
        row = _new_row(meta, "reserved", None)
        s.add(row)
    row.attempts += 1
    row.updated_at = utcnow()
    s.flush()
    return _info(row), True


def _finish(store: Store, key: str, status: str, reason: str | None, provider_message_id: str | None) -> DeliveryInfo:
    def work(s: Session) -> DeliveryInfo:
        if status != "failed" and s.get_bind().dialect.update_returning:
            # The common case in one statement: settle the reservation unless
            # an answer is already final (then fall through and return that).
            t = Delivery.__table__
            settled = s.execute(
                update(t)
                .where(t.c.idempotency_key == key, t.c.status.not_in(list(FINAL_DELIVERY_STATUSES)))
                .values(status=status, reason=reason, updated_at=utcnow(), provider_message_id=provider_message_id)
                .returning(
                    t.c.id,
                    t.c.idempotency_key,
                    t.c.status,
                    t.c.channel,
                    t.c.reason,
                    t.c.provider_message_id,
                    t.c.attempts,
                )
            ).first()
            if settled is not None:
                return DeliveryInfo(*settled)
        row = _row(s, key)
        if row is None:
            raise LookupError(f"delivery {key} vanished")
        if row.status in FINAL_DELIVERY_STATUSES:
            return _info(row)
        row.status, row.reason, row.updated_at = status, reason, utcnow()
        row.provider_message_id = provider_message_id
        if status == "failed":
            caps.release(s, key)
        s.flush()
        return _info(row)

    return store.transact(work)


async def deliver(
    store: Store,
    settings: Settings,
    provider: ChannelProvider,
    meta: DeliveryMeta,
    message: OutboundMessage,
    cap: caps.CapRequest | None,
    *,
    max_attempts: int = 10,
) -> DeliveryInfo:
    """Send ``message`` through ``provider`` at most once per key (see module doc)."""
    info, go = await asyncio.to_thread(store.transact, lambda s: _reserve(s, store, settings, meta, cap))
    if not go:
        return info
    key = meta.idempotency_key
    try:
        result = await provider.send(message)
    except Exception as exc:  # noqa: BLE001 - network errors etc.: unknown outcome, retry with the same key
        return await _retry_or_fail(store, info, key, f"{type(exc).__name__}: {exc}", max_attempts)
    if result.status in ("sent", "pending"):
        return await asyncio.to_thread(_finish, store, key, result.status, None, result.provider_message_id)
    reason = result.error or "provider failed"
    if result.retryable:
        return await _retry_or_fail(store, info, key, reason, max_attempts)
    return await asyncio.to_thread(_finish, store, key, "failed", reason, result.provider_message_id)


async def _retry_or_fail(store: Store, info: DeliveryInfo, key: str, reason: str, max_attempts: int) -> DeliveryInfo:
    if info.attempts >= max_attempts:
        return await asyncio.to_thread(
            _finish, store, key, "failed", f"gave up after {info.attempts} attempts: {reason}", None
        )
    raise RetryableSendError(reason)


# ---------------------------------------------------------------- pending sends


def pending(store: Store, *, channel: str | None = None, limit: int = 100) -> list[DeliveryInfo]:
    """Deliveries a vendor accepted as a task that completes later (WeCom
    ``add_msg_template`` waits for a staff member), oldest first."""
    with store.read() as s:
        q = select(Delivery).where(Delivery.status == "pending")
        if channel is not None:
            q = q.where(Delivery.channel == channel)
        return [_info(r) for r in s.scalars(q.order_by(Delivery.updated_at).limit(limit))]


def settle(store: Store, key: str, status: str, reason: str | None = None) -> DeliveryInfo:
    """Record how a pending delivery ended (sent / failed). Only a pending row
    changes; a failed one gives its frequency-cap slot back."""

    def work(s: Session) -> DeliveryInfo:
        row = _row(s, key)
        if row is None:
            raise LookupError(key)
        if row.status == "pending" and status in ("sent", "failed"):
            row.status, row.reason, row.updated_at = status, reason, utcnow()
            if status == "failed":
                caps.release(s, key)
            s.flush()
        return _info(row)

    return store.transact(work)


async def poll_pending(store: Store, providers: dict[str, ChannelProvider], *, limit: int = 100) -> int:
    """Ask providers that can (``poll_result``) about pending deliveries and
    record the ones that completed. Returns how many changed; run it
    periodically (worker side)."""
    changed = 0
    for info in await asyncio.to_thread(pending, store, limit=limit):
        provider = providers.get(info.channel or "")
        poll = getattr(provider, "poll_result", None)
        if poll is None or not info.provider_message_id:
            continue
        try:
            result = await poll(info.provider_message_id)
        except Exception:  # noqa: BLE001 - try again on the next round
            continue
        if result.status in ("sent", "failed"):
            await asyncio.to_thread(settle, store, info.idempotency_key, result.status, result.error)
            changed += 1
    return changed
