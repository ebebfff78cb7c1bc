"""Callback receipts: the store-first half of a callback.

``store`` writes the decrypted message once per id (``receipt_id``: a
digest of the message's fields, so WeCom's and WeChat's retries of one
message — same fields, fresh nonce and ciphertext — are one row), and the
route answers only after it committed. The rest works on stored rows:
``pending`` lists what is not processed yet (for the sweep), ``claim``
lets exactly one processing write a channel code's effects, ``finish``
and ``fail`` record the end of one attempt.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from engine.callbacks.messages import Message
from engine.store import Store
from engine.store.models import CallbackReceipt
from engine.store.types import utc, utcnow

_RECEIPTS = CallbackReceipt.__table__


@dataclass(frozen=True)
class Receipt:
    id: str
    vendor: str
    receiver: str
    kind: str
    message: Message
    received_at: datetime
    applied: bool
    processed: bool
    attempts: int
    outcome: dict[str, Any] | None = None
    processed_at: datetime | None = None
    last_error: str | None = None


def receipt_id(vendor: str, receiver: str, message: Message) -> str:
    """``wecom:<40 hex>``: the same for every delivery of one message.

    Both vendors document retries as the same message again (WeChat: "排重
    by FromUserName + CreateTime" for events); every field of it goes in,
    so two different messages never share an id."""
    canonical = json.dumps([receiver, message], sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return f"{vendor}:{hashlib.sha256(canonical.encode('utf-8')).hexdigest()[:40]}"


def _receipt(row: Any) -> Receipt:
    return Receipt(
        id=row.id,
        vendor=row.vendor,
        receiver=row.receiver,
        kind=row.kind,
        message=dict(row.message or {}),
        received_at=utc(row.received_at),
        applied=row.applied_at is not None,
        processed=row.processed_at is not None,
        attempts=row.attempts,
        outcome=row.outcome,
        processed_at=utc(row.processed_at) if row.processed_at is not None else None,
        last_error=row.last_error,
    )


def store(
    db: Store, *, vendor: str, receiver: str, kind: str, message: Message, outcome: dict[str, Any] | None = None
) -> tuple[Receipt, bool]:
    """The receipt and whether this call stored it (False: a retry of a
    message already stored). ``outcome`` given: nothing is left to do with
    it (ignored, or done in the same transaction), stored as processed."""
    rid = receipt_id(vendor, receiver, message)

    def work(s: Session) -> tuple[Receipt, bool]:
        row = s.get(CallbackReceipt, rid)
        if row is not None:
            return _receipt(row), False
        now = utcnow()
        row = CallbackReceipt(
            id=rid,
            vendor=vendor,
            receiver=receiver[:128],
            kind=kind[:128],
            message=dict(message),
            received_at=now,
            processed_at=now if outcome is not None else None,
            outcome=outcome,
            attempts=0,
        )
        s.add(row)
        s.flush()
        return _receipt(row), True

    return db.transact(work)


def get(db: Store, rid: str) -> Receipt | None:
    with db.read() as s:
        row = s.get(CallbackReceipt, rid)
        return _receipt(row) if row is not None else None


def pending(db: Store, *, received_before: datetime, limit: int = 100) -> list[Receipt]:
    """Receipts not processed yet: the least tried first, then the oldest,
    so receipts that keep failing do not hold back the ones behind them."""
    with db.read() as s:
        rows = s.scalars(
            select(CallbackReceipt)
            .where(CallbackReceipt.processed_at.is_(None), CallbackReceipt.received_at < utc(received_before))
            .order_by(CallbackReceipt.attempts, CallbackReceipt.received_at)
            .limit(limit)
        ).all()
        return [_receipt(r) for r in rows]


def recent(db: Store, *, vendor: str | None = None, limit: int = 50) -> list[Receipt]:
    """The latest receipts, newest first (what an operator setting a
    callback up looks at: did the vendor reach us, and what came of it)."""
    with db.read() as s:
        q = select(CallbackReceipt).order_by(CallbackReceipt.received_at.desc()).limit(limit)
        if vendor is not None:
            q = q.where(CallbackReceipt.vendor == vendor)
        return [_receipt(r) for r in s.scalars(q).all()]


def claim(session: Session, rid: str) -> bool:
    """Mark the receipt's one-time effects (a channel code's tags and scan)
    as written, inside the transaction that writes them: True for exactly
    one caller, however many process the receipt at once or again."""
    result = session.execute(
        update(_RECEIPTS).where(_RECEIPTS.c.id == rid, _RECEIPTS.c.applied_at.is_(None)).values(applied_at=utcnow())
    )
    return bool(getattr(result, "rowcount", 0))


def finish(db: Store, rid: str, outcome: dict[str, Any]) -> None:
    """Processed: what came of it (event ids, an ignored reason, a report)."""
    db.transact(
        lambda s: s.execute(
            update(_RECEIPTS)
            .where(_RECEIPTS.c.id == rid)
            .values(processed_at=utcnow(), outcome=outcome, attempts=_RECEIPTS.c.attempts + 1)
        )
    )


def fail(db: Store, rid: str, error: str) -> None:
    """One processing attempt failed: kept for the sweep, with why."""
    db.transact(
        lambda s: s.execute(
            update(_RECEIPTS)
            .where(_RECEIPTS.c.id == rid)
            .values(last_error=error[:2000], attempts=_RECEIPTS.c.attempts + 1)
        )
    )
