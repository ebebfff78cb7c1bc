"""Coupon pools and grants: atomic, idempotent issuing.

A grant is keyed by the activity's idempotency key (run + node + visit), so a
retried or replayed ``issue_coupon`` returns the coupon it already issued
instead of taking a second one from the pool. Stock is taken with a
conditional ``UPDATE ... SET stock = stock - 1 WHERE stock > 0``: the database
decides who gets the last coupon, on SQLite and PostgreSQL alike. The
per-user limit is a read-then-write, so it runs under ``Store.lock`` on the
user (SQLite's write transaction already serialises it).

Codes are derived from the idempotency key (stable across retries, unguessable
without it); vendors that hand out their own codes would load them into a
codes table, not modelled yet.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from sqlalchemy import case, func, select, update
from sqlalchemy.orm import Session

from engine.store import Store
from engine.store.models import CouponGrant, CouponPool
from engine.store.types import utc, utcnow

IssueStatus = Literal["issued", "out_of_stock", "limit_reached", "unknown_pool"]


@dataclass(frozen=True)
class IssueResult:
    status: IssueStatus
    code: str | None = None
    coupon: dict[str, Any] | None = None  # template context: pool, code, value..., expires_at
    repeated: bool = False  # True when the key had already been granted


def make_code(prefix: str, idempotency_key: str) -> str:
    digest = hashlib.sha256(idempotency_key.encode("utf-8")).digest()
    return prefix + base64.b32encode(digest[:10]).decode("ascii").rstrip("=")


def coupon_context(grant: CouponGrant, pool: CouponPool | None) -> dict[str, Any]:
    value = dict(pool.value) if pool else {}
    return {
        **value,
        "pool": grant.pool,
        "code": grant.code,
        "issued_at": grant.issued_at.isoformat(),
        "expires_at": grant.expires_at.isoformat() if grant.expires_at else None,
    }


def issue(
    session: Session,
    store: Store,
    *,
    idempotency_key: str,
    pool: str,
    user_id: str,
    now: datetime,
    run_key: str | None = None,
    journey_id: str | None = None,
    node_id: str | None = None,
    code_prefix: str = "JC",
) -> IssueResult:
    """Issue one coupon inside the caller's write transaction."""
    existing = session.scalars(select(CouponGrant).where(CouponGrant.idempotency_key == idempotency_key)).first()
    if existing is not None:
        return IssueResult(
            "issued", existing.code, coupon_context(existing, session.get(CouponPool, existing.pool)), repeated=True
        )
    row = session.get(CouponPool, pool)
    if row is None:
        return IssueResult("unknown_pool")
    store.lock(session, f"coupon-user:{user_id}")
    held = session.execute(
        select(func.count()).select_from(CouponGrant).where(CouponGrant.user_id == user_id, CouponGrant.pool == pool)
    ).scalar_one()
    if row.per_user_limit and held >= row.per_user_limit:
        return IssueResult("limit_reached")
    taken = session.execute(
        update(CouponPool)
        .where(CouponPool.name == pool, CouponPool.stock > 0)
        .values(stock=CouponPool.stock - 1, issued=CouponPool.issued + 1, updated_at=utcnow())
        .execution_options(synchronize_session=False)
    )
    if taken.rowcount != 1:
        return IssueResult("out_of_stock")
    stamp = utc(now)
    grant = CouponGrant(
        idempotency_key=idempotency_key,
        pool=pool,
        user_id=user_id,
        code=make_code(code_prefix, idempotency_key),
        run_key=run_key,
        journey_id=journey_id,
        node_id=node_id,
        issued_at=stamp,
        expires_at=stamp + timedelta(seconds=row.expires_after_seconds) if row.expires_after_seconds else None,
    )
    session.add(grant)
    session.flush()
    return IssueResult("issued", grant.code, coupon_context(grant, row))


def issue_coupon(store: Store, **kwargs: Any) -> IssueResult:
    """``issue`` in its own transaction, retried if it lost a race on the key."""
    return store.transact(lambda s: issue(s, store, **kwargs))


# ---------------------------------------------------------------- pools


@dataclass(frozen=True)
class PoolInfo:
    name: str
    stock: int
    issued: int
    per_user_limit: int
    value: dict[str, Any]
    expires_after_seconds: int | None


def _pool_info(row: CouponPool) -> PoolInfo:
    return PoolInfo(row.name, row.stock, row.issued, row.per_user_limit, dict(row.value), row.expires_after_seconds)


def upsert_pool(
    store: Store,
    name: str,
    *,
    stock: int,
    per_user_limit: int = 1,
    value: Mapping[str, Any] | None = None,
    expires_after_seconds: int | None = None,
) -> PoolInfo:
    """Create a pool or reset its remaining stock and terms."""

    def work(s: Session) -> PoolInfo:
        row = s.get(CouponPool, name)
        if row is None:
            row = CouponPool(name=name, stock=stock, issued=0)
            s.add(row)
        row.stock = stock
        row.per_user_limit = per_user_limit
        row.value = dict(value or {})
        row.expires_after_seconds = expires_after_seconds
        row.updated_at = utcnow()
        s.flush()
        return _pool_info(row)

    return store.transact(work)


def add_stock(store: Store, name: str, amount: int) -> PoolInfo:
    """Top up (or, negative, withdraw) stock atomically."""

    def work(s: Session) -> PoolInfo:
        s.execute(
            update(CouponPool)
            .where(CouponPool.name == name)
            .values(stock=case((CouponPool.stock + amount < 0, 0), else_=CouponPool.stock + amount))
            .execution_options(synchronize_session=False)
        )
        row = s.get(CouponPool, name)
        if row is None:
            raise KeyError(name)
        s.refresh(row)
        return _pool_info(row)

    return store.transact(work)


def get_pool(store: Store, name: str) -> PoolInfo | None:
    with store.read() as s:
        row = s.get(CouponPool, name)
        return _pool_info(row) if row else None
