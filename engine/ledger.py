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
   key; once the channel's retry deadline has passed since the first attempt
   (or after ``max_attempts``) the send is recorded as failed instead, and a
   failed send can be replayed later with the same key (``engine.replays``).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from sqlalchemy import bindparam, func, insert, select, update
from sqlalchemy.orm import Session

from engine import caps
from engine.channels.base import ChannelProvider, OutboundMessage
from engine.reconcile import send_once
from engine.settings import Settings
from engine.store import Store
from engine.store.models import FINAL_DELIVERY_STATUSES, Delivery, new_id
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
    address_hash: str | None = None  # sha256 of channel and address (``engine.merges``)


@dataclass(frozen=True)
class DeliveryInfo:
    id: str
    idempotency_key: str
    status: str
    channel: str | None
    reason: str | None
    provider_message_id: str | None
    attempts: int
    created_at: datetime | None = None  # when the first attempt reserved the key

    @property
    def final(self) -> bool:
        return self.status in FINAL_DELIVERY_STATUSES


_DELIVERIES = Delivery.__table__
_INFO_COLUMNS = (
    _DELIVERIES.c.id,
    _DELIVERIES.c.idempotency_key,
    _DELIVERIES.c.status,
    _DELIVERIES.c.channel,
    _DELIVERIES.c.reason,
    _DELIVERIES.c.provider_message_id,
    _DELIVERIES.c.attempts,
    _DELIVERIES.c.created_at,
)
# Every send looks its key up and writes it at least twice: Core statements
# built once (an ORM object and its flush cost more than the queries).
_BY_KEY = select(*_INFO_COLUMNS).where(_DELIVERIES.c.idempotency_key == bindparam("key"))
_INSERT = insert(_DELIVERIES)
_SET = update(_DELIVERIES).where(_DELIVERIES.c.idempotency_key == bindparam("key"))
_SETTLE = (
    update(_DELIVERIES)
    .where(
        _DELIVERIES.c.idempotency_key == bindparam("key"),
        _DELIVERIES.c.status.not_in(list(FINAL_DELIVERY_STATUSES)),
    )
    .values(
        status=bindparam("new_status"),
        reason=bindparam("new_reason"),
        updated_at=bindparam("new_at"),
        provider_message_id=bindparam("new_message_id"),
    )
)


def _insert(session: Session, meta: DeliveryMeta, status: str, reason: str | None, attempts: int = 0) -> DeliveryInfo:
    now = utcnow()
    info = DeliveryInfo(new_id(), meta.idempotency_key, status, meta.channel, reason, None, attempts, now)
    session.execute(
        _INSERT,
        {
            "id": info.id,
            "idempotency_key": meta.idempotency_key,
            "run_key": meta.run_key,
            "journey_id": meta.journey_id,
            "version": meta.version,
            "node_id": meta.node_id,
            "user_id": meta.user_id,
            "channel": meta.channel,
            "template": meta.template,
            "variant": meta.variant,
            "address_hash": meta.address_hash,
            "status": status,
            "reason": reason,
            "attempts": attempts,
            "at": utc(meta.at),
            "created_at": now,
            "updated_at": now,
        },
    )
    return info


def _set_outcome(session: Session, info: DeliveryInfo, status: str, reason: str | None) -> DeliveryInfo:
    session.execute(_SET.values(status=status, reason=reason, updated_at=utcnow()), {"key": info.idempotency_key})
    return replace(info, status=status, reason=reason)


def lookup(store: Store, key: str) -> DeliveryInfo | None:
    with store.read() as s:
        return find(s, key)


def find(session: Session, key: str) -> DeliveryInfo | None:
    """``lookup`` inside an open session."""
    row = session.execute(_BY_KEY, {"key": key}).first()
    return DeliveryInfo(*row) if row is not None else None


def record(store: Store, meta: DeliveryMeta, status: str, reason: str | None = None) -> DeliveryInfo:
    """Record an outcome decided without the provider (suppressed, failed,
    deferred). The first final outcome for a key wins: a replay that would
    decide differently (say the user opted out meanwhile) gets the original."""

    def work(s: Session) -> DeliveryInfo:
        row = find(s, meta.idempotency_key)
        if row is None:
            return _insert(s, meta, status, reason)
        if row.final:
            return row
        caps.release(s, meta.idempotency_key)
        return _set_outcome(s, row, status, reason)

    return store.transact(work)


@dataclass(frozen=True)
class Deferred:
    """A cap stopped the send and the send may wait for it (``on capped
    defer``): nothing is recorded or counted; ask again at ``retry_at`` with
    the same key."""

    reason: str
    retry_at: datetime


def _reserve(
    s: Session,
    store: Store,
    settings: Settings,
    meta: DeliveryMeta,
    cap: caps.CapRequest | None,
    defer_until: datetime | None = None,
) -> tuple[DeliveryInfo | Deferred, bool]:
    """(row, go): go is False when the answer is already final (or deferred)."""
    row = find(s, meta.idempotency_key)
    if row is not None and row.final:
        return row, False
    if row is None:
        if cap is not None:
            denial = caps.check_and_count(s, store, settings, cap)
            if denial is not None:
                if denial.wait or (defer_until is not None and denial.retry_at <= utc(defer_until)):
                    return Deferred(denial.reason, denial.retry_at), False
                reason = denial.reason
                if defer_until is not None:
                    reason += (
                        f"; it would be allowed only at {denial.retry_at:%Y-%m-%d %H:%M} UTC, past the longest deferral"
                    )
                return _insert(s, meta, "suppressed", reason), False
        return _insert(s, meta, "reserved", None, attempts=1), True
    attempts = row.attempts + 1
    s.execute(_SET.values(attempts=attempts, updated_at=utcnow()), {"key": row.idempotency_key})
    return replace(row, attempts=attempts), True


def _finish(store: Store, key: str, status: str, reason: str | None, provider_message_id: str | None) -> DeliveryInfo:
    def work(s: Session) -> DeliveryInfo:
        if status != "failed" and s.get_bind().dialect.update_returning:
            # The common case in one statement: settle the reservation unless
            # an answer is already final (then fall through and return that).
            settled = s.execute(
                _SETTLE.returning(*_INFO_COLUMNS),
                {
                    "key": key,
                    "new_status": status,
                    "new_reason": reason,
                    "new_at": utcnow(),
                    "new_message_id": provider_message_id,
                },
            ).first()
            if settled is not None:
                return DeliveryInfo(*settled)
        row = find(s, key)
        if row is None:
            raise LookupError(f"delivery {key} vanished")
        if row.final:
            return row
        s.execute(
            _SET.values(status=status, reason=reason, updated_at=utcnow(), provider_message_id=provider_message_id),
            {"key": key},
        )
        if status == "failed":
            caps.release(s, key)
        return replace(row, status=status, reason=reason, provider_message_id=provider_message_id)

    return store.transact(work)


async def deliver(
    store: Store,
    settings: Settings,
    provider: ChannelProvider,
    meta: DeliveryMeta,
    message: OutboundMessage,
    cap: caps.CapRequest | None,
    *,
    max_attempts: int | None = None,
    retry_deadline: timedelta = timedelta(hours=6),
    defer_until: datetime | None = None,
) -> DeliveryInfo | Deferred:
    """Send ``message`` through ``provider`` at most once per key (see module
    doc); ``Deferred`` only when ``defer_until`` is given and a cap allows
    the send by then."""
    reserved, go = await asyncio.to_thread(
        store.transact, lambda s: _reserve(s, store, settings, meta, cap, defer_until)
    )
    if not go or isinstance(reserved, Deferred):
        return reserved
    info = reserved
    key = meta.idempotency_key
    # attempts > 1: an earlier attempt reserved the key and may have reached
    # the vendor with its answer lost; a reconcilable provider is asked first
    # (engine.reconcile), so a lost answer is not a second message.
    earlier = info.created_at if info.attempts > 1 else None
    try:
        result = await send_once(provider, message, earlier_attempt_at=earlier)
    except Exception as exc:  # noqa: BLE001 - network errors etc.: unknown outcome, retry with the same key
        return await _retry_or_fail(store, info, key, f"{type(exc).__name__}: {exc}", max_attempts, retry_deadline)
    if result.status in ("sent", "pending"):
        return await asyncio.to_thread(_finish, store, key, result.status, None, result.provider_message_id)
    reason = result.error or "provider failed"
    if result.retryable:
        return await _retry_or_fail(store, info, key, reason, max_attempts, retry_deadline)
    return await asyncio.to_thread(_finish, store, key, "failed", reason, result.provider_message_id)


async def _retry_or_fail(
    store: Store, info: DeliveryInfo, key: str, reason: str, max_attempts: int | None, deadline: timedelta
) -> DeliveryInfo:
    """Retry (raise) until the deadline since the first attempt has passed or
    the attempts run out; then the send is failed, saying how long it tried."""
    await asyncio.to_thread(_note_error, store, key, reason)
    started = utc(info.created_at) if info.created_at is not None else utcnow()
    tried_for = utcnow() - started
    if tried_for >= deadline or (max_attempts is not None and info.attempts >= max_attempts):
        why = f"gave up after {info.attempts} attempts over {_duration(tried_for)}: {reason}"
        return await asyncio.to_thread(_finish, store, key, "failed", why, None)
    raise RetryableSendError(reason)


def _duration(span: timedelta) -> str:
    seconds = int(span.total_seconds())
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    if seconds >= 60:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds}s"


def _note_error(store: Store, key: str, reason: str) -> None:
    """Keep why this attempt failed: a send being retried shows it (and a
    later success still says it took retries)."""
    store.transact(lambda s: s.execute(_SET.values(last_error=reason[:2000], updated_at=utcnow()), {"key": key}))


# ---------------------------------------------------------------- pending sends


def pending(store: Store, *, channel: str | None = None, limit: int = 100) -> list[DeliveryInfo]:
    """Deliveries a vendor accepted as a task that completes later (WeCom
    ``add_msg_template`` waits for a staff member), oldest first."""
    with store.read() as s:
        q = select(*_INFO_COLUMNS).where(_DELIVERIES.c.status == "pending")
        if channel is not None:
            q = q.where(_DELIVERIES.c.channel == channel)
        return [DeliveryInfo(*r) for r in s.execute(q.order_by(_DELIVERIES.c.updated_at).limit(limit))]


def settle(store: Store, key: str, status: str, reason: str | None = None) -> DeliveryInfo:
    """Record how a pending delivery ended (sent / failed). Only a pending row
    changes; a failed one gives its frequency-cap slot back."""

    def work(s: Session) -> DeliveryInfo:
        row = find(s, key)
        if row is None:
            raise LookupError(key)
        if row.status == "pending" and status in ("sent", "failed"):
            if status == "failed":
                caps.release(s, key)
            return _set_outcome(s, row, status, reason)
        return row

    return store.transact(work)


def report_outcome(store: Store, key: str, status: str, reason: str | None = None) -> DeliveryInfo:
    """A vendor's later report on a send (WeChat's ``TEMPLATESENDJOBFINISH``):
    a pending send is settled (``settle``); a send recorded ``sent`` that the
    vendor reports as not delivered becomes ``failed`` with the vendor's
    reason and gives its cap slot back (the user got nothing). Any other
    report leaves the row as it is: the first final word stands."""

    def work(s: Session) -> DeliveryInfo:
        row = find(s, key)
        if row is None:
            raise LookupError(key)
        if row.status == "pending" and status in ("sent", "failed"):
            if status == "failed":
                caps.release(s, key)
            return _set_outcome(s, row, status, reason)
        if row.status == "sent" and status == "failed":
            caps.release(s, key)
            return _set_outcome(s, row, "failed", f"vendor reported it undelivered: {reason or 'no reason given'}")
        return row

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


# ---------------------------------------------------------------- retries


def retrying(store: Store, journey_id: str, version: int | None = None) -> dict[str, int]:
    """Sends of the journey being retried now, per node id: reserved, and the
    last attempt failed (``last_error``). What the stats count as
    "retrying" (a reserved send without an error is in flight)."""
    with store.read() as s:
        q = (
            select(_DELIVERIES.c.node_id, func.count())
            .where(
                _DELIVERIES.c.journey_id == journey_id,
                _DELIVERIES.c.status == "reserved",
                _DELIVERIES.c.last_error.is_not(None),
            )
            .group_by(_DELIVERIES.c.node_id)
        )
        if version is not None:
            q = q.where(_DELIVERIES.c.version == version)
        return {str(node): int(n) for node, n in s.execute(q)}
