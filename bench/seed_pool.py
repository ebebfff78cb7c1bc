"""A realistic user pool for audience and broadcast benches, bulk-inserted.

N users with: identities (member id for all, phone for ~80 %, openid/unionid
for ~60 %, app user id for ~30 %, WeCom external userid for ~50 %), tags
(source channel, city, member grade, a ``vip`` tag for ~10 %), attributes
(city, grade, points, gender) and 0–12 events over the last 400 days
(views, opens, add-to-carts and ``order_paid`` with amounts) so lifecycle
stage and RFM layer come out mixed at ``NOW``, plus ~5 % SMS opt-outs.

On PostgreSQL rows go in with ``COPY ... FROM STDIN`` through psycopg (about
5x the executemany path: 1M users, ~12M rows, in a few minutes on a loaded
2-core VM); on SQLite through Core ``insert`` with executemany in batches
(about 20–40k rows/s).
Idempotent per seed: user ids are ``b<seed>-<index>``, and a pool already
holding this seed's last user is left as it is.

    .venv/bin/python bench/seed_pool.py DATABASE_URL [--users N] [--seed S]
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sqlalchemy import Table, insert, select  # noqa: E402

from engine import derived  # noqa: E402
from engine.store import Store  # noqa: E402
from engine.store.models import Consent, Event, Identity, Tag, User  # noqa: E402

NOW = datetime(2026, 12, 1, 10, 0, tzinfo=UTC)
BATCH = 5000

CHANNELS = ["wecom_group", "miniprogram", "official_account", "app", "offline_store", "live_stream"]
CITIES = ["上海", "北京", "广州", "深圳", "杭州", "成都", "武汉", "南京"]
GRADES = ["普通", "银卡", "金卡", "钻石"]
BROWSE = ["viewed_product", "opened_message", "added_to_cart", "joined_group"]


def user_id(seed: int, i: int) -> str:
    return f"b{seed}-{i:08d}"


def _user_rows(rng: random.Random, seed: int, i: int) -> dict[str, list[dict[str, Any]]]:
    uid = user_id(seed, i)
    created = NOW - timedelta(days=rng.choice([2, 5, 20, 60, 120, 300, 400]), minutes=rng.randrange(1440))
    city, grade = rng.choice(CITIES), rng.choices(GRADES, weights=[60, 25, 12, 3])[0]
    attrs = {"city": city, "grade": grade, "points": rng.randrange(0, 5000), "gender": rng.choice(["f", "m"])}
    tags = [f"source:{rng.choice(CHANNELS)}", f"city:{city}", f"grade:{grade}"]
    if rng.random() < 0.1:
        tags.append("vip")
    ids = [("member_id", f"m{seed}-{i}")]
    if rng.random() < 0.8:
        ids.append(("phone", f"+86139{seed % 10}{i:07d}"))
    if rng.random() < 0.6:
        ids += [("openid", f"o{seed}-{i}"), ("unionid", f"un{seed}-{i}")]
    if rng.random() < 0.3:
        ids.append(("app_user_id", f"a{seed}-{i}"))
    if rng.random() < 0.5:
        ids.append(("wecom_external_userid", f"wm{seed}-{i}"))
    # Recency of activity decides the stage: a spread over days since the last event.
    last = rng.choice([0.5, 2, 5, 10, 20, 45, 120, 380])
    events = []
    for k in range(rng.choice([0, 1, 2, 3, 5, 8, 12])):
        days = last + (rng.random() * 60 if k else 0)
        paid = rng.random() < 0.25
        events.append(
            {
                "id": f"{uid}:{k}",
                "user_id": uid,
                "name": "order_paid" if paid else rng.choice(BROWSE),
                "properties": {"amount": rng.choice([39, 99, 199, 399, 899, 1500])} if paid else {},
                "occurred_at": NOW - timedelta(days=days),
                "received_at": NOW - timedelta(days=days),
                "dispatched_at": NOW - timedelta(days=days),
            }
        )
    return {
        "users": [{"id": uid, "created_at": created, "updated_at": created, "attributes": attrs}],
        "tags": [{"user_id": uid, "tag": t, "source": "seed", "added_at": created} for t in tags],
        "identities": [{"kind": k, "value": v, "user_id": uid, "created_at": created} for k, v in ids],
        "events": events,
        "consents": (
            [{"user_id": uid, "channel": "sms", "opted_out": True, "source": "seed", "updated_at": created}]
            if rng.random() < 0.05
            else []
        ),
    }


def _batches(seed: int, users: int) -> Iterator[dict[str, list[dict[str, Any]]]]:
    rng = random.Random(seed)
    batch: dict[str, list[dict[str, Any]]] = {k: [] for k in ("users", "tags", "identities", "events", "consents")}
    for i in range(users):
        for key, rows in _user_rows(rng, seed, i).items():
            batch[key] += rows
        if len(batch["users"]) >= BATCH:
            yield batch
            batch = {k: [] for k in batch}
    if batch["users"]:
        yield batch


TABLES = {"users": User, "tags": Tag, "identities": Identity, "events": Event, "consents": Consent}


def seed_pool(store: Store, users: int, seed: int = 1) -> int:
    """Insert the pool unless it is there already; returns the rows inserted."""
    with store.read() as s:
        if s.scalar(select(User.id).where(User.id == user_id(seed, users - 1))) is not None:
            return 0
        if s.scalar(select(User.id).where(User.id == user_id(seed, 0))) is not None:
            raise SystemExit(f"a pool of seed {seed} with another size is there: use a fresh database or seed")
    if store.dialect != "postgresql":
        total = sum(_insert_batch(store, batch) for batch in _batches(seed, users))
        store.transact(derived.store_event_spans)
        return total
    # The server's part of a COPY (index upkeep) is half the time: it runs while
    # the next batch is generated (psycopg waits on the socket without the GIL).
    total = 0
    with ThreadPoolExecutor(max_workers=1) as pool:
        pending: Future[int] | None = None
        for batch in _batches(seed, users):
            if pending is not None:
                total += pending.result()
            pending = pool.submit(_copy_batch, store, batch)
        if pending is not None:
            total += pending.result()
    # Ingest keeps each user's first/last event on the user; a bulk load sets them once.
    store.transact(derived.store_event_spans)
    return total


def _insert_batch(store: Store, batch: dict[str, list[dict[str, Any]]]) -> int:
    with store.session() as s:
        for key in TABLES:
            if batch[key]:
                s.execute(insert(TABLES[key]), batch[key])
    return sum(len(rows) for rows in batch.values())


def _copy_value(value: Any) -> Any:
    # COPY bypasses SQLAlchemy's JSON type: the column gets the JSON text.
    return json.dumps(value, ensure_ascii=False) if isinstance(value, dict) else value


def _copy_batch(store: Store, batch: dict[str, list[dict[str, Any]]]) -> int:
    """One transaction per batch, one ``COPY`` per table, columns as the rows
    name them (the serial ids and unset columns take their server defaults,
    as the executemany path leaves them)."""
    raw = store.engine.raw_connection()
    try:
        with raw.driver_connection.cursor() as cur:
            for key, model in TABLES.items():
                rows = batch[key]
                if not rows:
                    continue
                table: Table = model.__table__  # type: ignore[assignment]
                columns = list(rows[0])
                with cur.copy(f"COPY {table.name} ({', '.join(columns)}) FROM STDIN") as copy:
                    for row in rows:
                        copy.write_row([_copy_value(row[c]) for c in columns])
        raw.commit()
    finally:
        raw.close()
    return sum(len(rows) for rows in batch.values())


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    store = Store(args.url)
    store.migrate()
    started = time.perf_counter()
    rows = seed_pool(store, args.users, args.seed)
    took = time.perf_counter() - started
    print(f"seeded {args.users} users ({rows} rows) in {took:.1f} s ({rows / max(took, 1e-9):,.0f} rows/s)")


if __name__ == "__main__":
    main()
