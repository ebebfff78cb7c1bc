from __future__ import annotations

import threading
from collections import Counter

from engine.coupons import add_stock, get_pool, issue_coupon, upsert_pool
from engine.store import Store
from tests.engine.engine_support import NOW


def grant(store: Store, key: str, user: str, pool: str = "welcome") -> str:
    return issue_coupon(store, idempotency_key=key, pool=pool, user_id=user, now=NOW).status


def test_issue_is_idempotent_by_key(store: Store) -> None:
    upsert_pool(store, "welcome", stock=10, per_user_limit=1, value={"amount": 20}, expires_after_seconds=86400)
    first = issue_coupon(store, idempotency_key="run1:c1:1", pool="welcome", user_id="u1", now=NOW)
    again = issue_coupon(store, idempotency_key="run1:c1:1", pool="welcome", user_id="u1", now=NOW)
    assert first.status == again.status == "issued"
    assert first.code == again.code and again.repeated
    assert first.coupon["amount"] == 20 and first.coupon["expires_at"].startswith("2026-03-03")
    assert get_pool(store, "welcome").stock == 9


def test_per_user_limit_and_unknown_pool(store: Store) -> None:
    upsert_pool(store, "welcome", stock=10, per_user_limit=2)
    assert [grant(store, f"k{i}", "u1") for i in range(3)] == ["issued", "issued", "limit_reached"]
    assert grant(store, "k9", "u2") == "issued"
    assert grant(store, "k10", "u1", pool="nope") == "unknown_pool"
    assert get_pool(store, "welcome").stock == 7


def test_stock_exhaustion_under_concurrency(store: Store) -> None:
    upsert_pool(store, "flash", stock=7, per_user_limit=1)
    results: list[str] = []
    lock = threading.Lock()

    def worker(n: int) -> None:
        # each user twice with the same key (a retry racing its original) and once with another key
        for key in (f"r{n}", f"r{n}", f"r{n}-b"):
            status = issue_coupon(store, idempotency_key=key, pool="flash", user_id=f"u{n}", now=NOW).status
            with lock:
                results.append(status)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    pool = get_pool(store, "flash")
    assert pool.stock == 0 and pool.issued == 7
    with store.read() as s:
        from engine.store.models import CouponGrant

        grants = s.query(CouponGrant).all()
    assert len(grants) == 7
    assert max(Counter(g.user_id for g in grants).values()) == 1  # per-user limit held under races
    assert "out_of_stock" in results


def test_add_stock_never_goes_negative(store: Store) -> None:
    upsert_pool(store, "p", stock=1)
    assert grant(store, "a", "u1", pool="p") == "issued"
    assert grant(store, "b", "u2", pool="p") == "out_of_stock"
    assert add_stock(store, "p", 2).stock == 2
    assert grant(store, "b", "u2", pool="p") == "issued"
    assert add_stock(store, "p", -5).stock == 0
