"""A store at a million users (issue 15, Measure 3), on PostgreSQL.

Two databases on the same server, in the same run:

- **empty**: migrated, nothing in it;
- **full**: ``--users`` users: ``--pool`` of them ``bench.seed_pool``'s
  realistic ones (identities, tags, ~4.5 events each), the rest with a
  member id (``seed_users``), then events topped up to ``--events``
  (``seed_events``), all server-side ``INSERT … SELECT generate_series`` in
  1M-row transactions (no rows cross the socket: faster than a ``COPY``
  fed from Python, which is CPU this shared VM does not have), and one heavy
  user with ``--heavy`` events, runs, steps and sends.

Then, on each, the same paced stream of ``POST /v1/track`` store work at
``--rate`` events/s: ``Dispatcher.ingest`` without a Temporal client, i.e.
identity resolution, the event insert with derived stage/RFM, and the
dispatch read (the user's open runs, the journeys entering on the event,
queued run signals); the API's Temporal step (signal/start) is left out
(``bench/latency_bench.py`` measures that end to end). On the full store
the stream's users are pool users (80 %) and new ones (20 %).

And, on the full store, through the FastAPI app in-process (httpx
``ASGITransport``): ``GET /v1/users/{heavy}/timeline`` (newest page and
pages walked by ``until``) and the console user page (newest and older
pages by its "Older" link), p50/p99 over ``--calls`` calls each. Targets:
API page < 200 ms, console page < 1 s. ``EXPLAIN`` of the queries the
0014 indexes are for is printed too.

    scripts/with-postgres .venv/bin/python bench/store_bench.py [--users 1000000] [--events 10000000]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import re
import statistics
import sys
import time
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
from sqlalchemy import Table, create_engine, text  # noqa: E402
from sqlalchemy.engine import make_url  # noqa: E402

from api.app import create_app  # noqa: E402
from api.console.auth import COOKIE_NAME  # noqa: E402
from api.settings import ApiSettings  # noqa: E402
from bench.latency_bench import paced  # noqa: E402
from bench.seed_pool import NOW, seed_pool  # noqa: E402
from engine.dispatch import Dispatcher  # noqa: E402
from engine.journey_cache import JourneyCache  # noqa: E402
from engine.settings import Settings  # noqa: E402
from engine.store import Store  # noqa: E402
from engine.store.models import Event  # noqa: E402

KEY = "k-store-bench"
HEAVY = "heavy-user"
CHUNK = 1_000_000  # rows per server-side insert transaction
SEQUENTIAL = 100  # ingests one after another before the paced stream
SIGNALS = 200_000  # run signals in the full store


def load() -> str:
    one, five, _ = os.getloadavg()
    return f"load {one:.2f}/{five:.2f}"


def pct(samples: list[float], q: float) -> float:
    """The q-quantile in ms (nearest rank)."""
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


def line(label: str, samples: list[float]) -> str:
    return (
        f"{label}: n={len(samples)} p50 {pct(samples, 0.5):.1f} ms  p99 {pct(samples, 0.99):.1f} ms  "
        f"max {max(samples) * 1000:.1f} ms  mean {statistics.fmean(samples) * 1000:.1f} ms  ({load()})"
    )


def fresh_database(url: str, name: str) -> str:
    """A new database ``name`` on the server of ``url`` (dropped first)."""
    admin = create_engine(url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    return make_url(url).set(database=name).render_as_string(hide_password=False)


def seed_users(store: Store, first: int, users: int) -> int:
    """Users ``first`` .. ``users - 1`` with a member id each, server-side, in
    the pool's id scheme (``bench.seed_pool`` is ~400 users/s from Python on
    this loaded VM: 40 min for a million). Returns rows added."""
    added = 0
    for start in range(first, users, CHUNK):
        end = min(users, start + CHUNK) - 1
        began = time.perf_counter()
        with store.engine.begin() as conn:
            conn.execute(text("SET LOCAL session_replication_role = replica"))
            conn.execute(
                text(
                    """
                    INSERT INTO users (id, attributes, created_at, updated_at)
                    SELECT 'b1-' || lpad(g::text, 8, '0'), json_build_object('points', g % 5000), t, t
                    FROM generate_series(CAST(:a AS bigint), CAST(:b AS bigint)) AS g,
                         LATERAL (SELECT CAST(:now AS timestamptz) - (g % 400) * interval '1 day') AS at(t)
                    """
                ),
                {"a": start, "b": end, "now": NOW},
            )
            conn.execute(
                text(
                    """
                    INSERT INTO identities (kind, value, user_id, created_at)
                    SELECT 'member_id', 'm1-' || g, 'b1-' || lpad(g::text, 8, '0'), CAST(:now AS timestamptz)
                    FROM generate_series(CAST(:a AS bigint), CAST(:b AS bigint)) AS g
                    """
                ),
                {"a": start, "b": end, "now": NOW},
            )
        added += 2 * (end - start + 1)
        print(f"  users {start:,}..{end:,} in {time.perf_counter() - began:.1f} s ({load()})", flush=True)
    return added


def seed_events(store: Store, users: int, total: int) -> int:
    """Top the pool's events up to ``total``, spread over its users and the
    last 400 days, in ``CHUNK``-row transactions, with the secondary indexes
    of ``events`` dropped meanwhile and built again after (row by row they
    made a 1M-row chunk take minutes on this VM; a build sorts once) and the
    foreign-key triggers off (the user ids are the seeded ones). Prints each
    index's build time: what migration 0014's indexes cost on such a table.
    Returns rows added."""
    table: Table = Event.__table__  # type: ignore[assignment]
    with store.engine.connect() as conn:
        have = int(conn.execute(text("SELECT count(*) FROM events")).scalar_one())
    if have >= total:
        return 0
    with store.engine.begin() as conn:
        for index in table.indexes:
            index.drop(conn)
    start, added = 0, 0
    while have + added < total:
        n = min(CHUNK, total - have - added)
        began = time.perf_counter()
        with store.engine.begin() as conn:
            conn.execute(text("SET LOCAL session_replication_role = replica"))
            conn.execute(
                text(
                    """
                    INSERT INTO events (id, user_id, name, properties, occurred_at, received_at, dispatched_at)
                    SELECT 'x' || g, 'b1-' || lpad(((g * 7919) % :users)::text, 8, '0'),
                           (ARRAY['viewed_product','opened_message','added_to_cart','order_paid'])[1 + g % 4],
                           CASE WHEN g % 4 = 3 THEN json_build_object('amount', 99 + g % 900) ELSE '{}'::json END,
                           t, t, t
                    FROM generate_series(CAST(:a AS bigint), CAST(:b AS bigint)) AS g,
                         LATERAL (SELECT CAST(:now AS timestamptz) - (g % 34560000) * interval '1 second') AS at(t)
                    """
                ),
                {"users": users, "a": start, "b": start + n - 1, "now": NOW},
            )
        start += n
        added += n
        print(f"  events +{n:,} in {time.perf_counter() - began:.1f} s ({have + added:,} now; {load()})", flush=True)
    with store.engine.connect() as conn:
        conn.execute(text("SET maintenance_work_mem = '256MB'"))
        for index in table.indexes:
            began = time.perf_counter()
            index.create(conn)
            conn.commit()
            print(
                f"  CREATE INDEX {index.name} on {have + added:,} events: {time.perf_counter() - began:.0f} s ({load()})"
            )
    return added


def seed_heavy(store: Store, events: int) -> None:
    """One user with ``events`` events over 100 days, and a run per 20 of
    them with two steps (a ``wait for event`` that took one of the events,
    a send) and a send each: the timeline's sources, and the step records
    ``engine.event_outcomes`` reads to say what became of each event."""
    runs = max(1, events // 20)
    with store.engine.begin() as conn:
        conn.execute(
            text("INSERT INTO users (id, attributes, created_at, updated_at) VALUES (:u, '{}', :t, :t)"),
            {"u": HEAVY, "t": NOW - timedelta(days=101)},
        )
        conn.execute(
            text(
                """
                INSERT INTO events (id, user_id, name, properties, occurred_at, received_at, dispatched_at, outcome)
                SELECT 'h' || g, :u, (ARRAY['viewed_product','opened_message','added_to_cart','order_paid'])[1 + g % 4],
                       '{}'::json, t, t, t, '{"signalled": [], "started": []}'::json
                FROM generate_series(1, :n) AS g,
                     LATERAL (SELECT CAST(:now AS timestamptz) - (g * 864) * interval '1 second') AS at(t)
                """
            ),
            {"u": HEAVY, "n": events, "now": NOW},
        )
        conn.execute(
            text(
                """
                INSERT INTO runs (run_key, journey_id, version, user_id, admitted, entered_at, ended_at, outcome)
                SELECT 'journey:j' || (g % 5) || ':' || :u || ':' || 'r' || g, 'j' || (g % 5), 1, :u, true, t, t, 'completed'
                FROM generate_series(1, :n) AS g,
                     LATERAL (SELECT CAST(:now AS timestamptz) - (g * 17280) * interval '1 second') AS at(t)
                """
            ),
            {"u": HEAVY, "n": runs, "now": NOW},
        )
        conn.execute(
            text(
                """
                INSERT INTO step_records (run_key, seq, journey_id, version, user_id, node_id, kind, outcome, at, detail)
                SELECT r.run_key, s, r.journey_id, 1, r.user_id, 'n' || s,
                       CASE WHEN s = 1 THEN 'wait_event' ELSE 'send' END,
                       CASE WHEN s = 1 THEN 'consumed' ELSE 'sent' END,
                       r.entered_at + s * interval '1 second',
                       CASE WHEN s = 1 THEN json_build_object('event_id', 'h' || (1 + r.id * 20 % :n)) ELSE '{}'::json END
                FROM runs r, generate_series(1, 2) AS s WHERE r.user_id = :u
                """
            ),
            {"u": HEAVY, "n": events},
        )
        conn.execute(
            text(
                """
                INSERT INTO deliveries (id, idempotency_key, run_key, journey_id, version, node_id, user_id, channel,
                                        template, status, attempts, at, created_at, updated_at)
                SELECT md5(r.run_key), r.run_key || ':' || 'n2', r.run_key, r.journey_id, 1, 'n2', r.user_id, 'sms',
                       'hello', 'sent', 1, r.entered_at + interval '2 seconds', r.entered_at, r.entered_at
                FROM runs r WHERE r.user_id = :u
                """
            ),
            {"u": HEAVY},
        )


def seed_signals(store: Store, users: int, n: int) -> None:
    """``n`` run signals over the last 30 days, all sent but the newest 1 %:
    what a tag step in a big journey leaves behind, for the plans of the
    per-user unsent read and of ``run_signals.prune_sent``."""
    with store.engine.begin() as conn:
        conn.execute(
            text(
                """
                INSERT INTO run_signals (user_id, kind, source, payload, created_at, sent_at)
                SELECT 'b1-' || lpad((g % :users)::text, 8, '0'), 'tags', 'api', '{"added": ["vip"], "removed": []}',
                       t, CASE WHEN g > :n * 0.99 THEN NULL ELSE t + interval '1 second' END
                FROM generate_series(1, :n) AS g,
                     LATERAL (SELECT CAST(:now AS timestamptz) - (:n - g) * (2592000.0 / :n) * interval '1 second')
                     AS at(t)
                """
            ),
            {"users": users, "n": n, "now": NOW},
        )


async def ingest_stream(store: Store, label: str, users: int, rate: float, seconds: float) -> list[float]:
    """The track stream against ``store``; latencies of ``Dispatcher.ingest``."""
    dispatcher = Dispatcher(store, Settings(database_url=store.url), JourneyCache(store))
    rng = random.Random(15)

    async def fire(i: int) -> float:
        if users and rng.random() < 0.8:
            ids = [("member_id", f"m1-{rng.randrange(users)}")]
        else:
            ids = [("member_id", f"new-{label}-{i}"), ("phone", f"+861{i:010d}")]
        began = time.perf_counter()
        await dispatcher.ingest(
            None,
            event_id=f"bench-{label}-{i}",
            name=rng.choice(["viewed_product", "added_to_cart", "order_paid"]),
            identifiers=ids,
            properties={"amount": 99},
            occurred_at=None,
        )
        return time.perf_counter() - began

    for i in range(20):  # warm the pool and the statement caches
        await fire(-1 - i)
    # One at a time first: the cost of one ingest, without the queueing a
    # loaded VM adds at 40/s (what the store's size changes).
    alone = [await fire(100_000 + i) for i in range(SEQUENTIAL)]
    print(line(f"  {label}, one at a time", alone), flush=True)
    latencies: list[float] = []

    async def timed(i: int) -> None:
        latencies.append(await fire(i))

    cpu = time.process_time()
    await paced(rate, seconds, timed)  # all at once as the API would: not one after another
    cpu_ms = (time.process_time() - cpu) / max(1, len(latencies)) * 1000
    print(f"  {label}: this process's CPU per ingest at {rate:g}/s: {cpu_ms:.1f} ms (the server's not counted)")
    return latencies


async def timed_get(http: httpx.AsyncClient, url: str, calls: int) -> tuple[list[float], httpx.Response]:
    samples: list[float] = []
    r: httpx.Response | None = None
    for _ in range(calls):
        began = time.perf_counter()
        r = await http.get(url)
        samples.append(time.perf_counter() - began)
        if r.status_code != 200:
            raise SystemExit(f"{url}: {r.status_code} {r.text[:300]}")
    assert r is not None
    return samples, r


async def pages(store: Store, calls: int) -> None:
    """The heavy user's API timeline and console page, newest and deeper pages."""
    settings = ApiSettings(
        database_url=store.url, api_keys={KEY: "admin"}, redispatch_seconds=0, temporal_address="", log_level="WARNING"
    )
    app = create_app(settings, store=store)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    headers = {"Authorization": f"Bearer {KEY}"}
    async with httpx.AsyncClient(transport=transport, base_url="http://api", headers=headers) as http:
        http.cookies.set(COOKIE_NAME, KEY)
        url = f"/v1/users/{HEAVY}/timeline?limit=200"
        samples, r = await timed_get(http, url, calls)
        print(line(f"API timeline, newest page of 200 ({len(r.json())} items)", samples), flush=True)
        deep: list[float] = []
        walked = 0
        while "next" in r.headers.get("Link", "") and walked < calls:
            nxt = r.headers["Link"].split(";")[0].strip("<>").removeprefix("http://api")
            began = time.perf_counter()
            r = await http.get(nxt)
            deep.append(time.perf_counter() - began)
            walked += 1
        print(line(f"API timeline, {walked} older pages walked by Link/until", deep), flush=True)
        samples, r = await timed_get(http, f"/v1/users/{HEAVY}/runs?limit=200", calls)
        print(line("API runs, newest 200", samples), flush=True)
        samples, r = await timed_get(http, f"/console/users/{HEAVY}", calls)
        print(line(f"console user page, newest ({len(r.content) // 1024} KiB)", samples), flush=True)
        older: list[float] = []
        for _ in range(calls):
            found = re.search(r'id="timeline-older" href="([^"]+)"', r.text)
            if not found:
                break
            began = time.perf_counter()
            r = await http.get(found.group(1).replace("&amp;", "&"))
            older.append(time.perf_counter() - began)
        if older:
            print(line(f"console user page, {len(older)} older pages by its link", older), flush=True)
        else:
            print("console user page: no older link (!)")


def explain(store: Store) -> None:
    """The plans of the queries the 0014 indexes serve."""
    queries = {
        "timeline events (ix_events_user_received)": (
            "SELECT * FROM events WHERE user_id = :u AND received_at <= :t ORDER BY received_at DESC, id DESC LIMIT 201"
        ),
        "derived first/last event (ix_events_user_at)": (
            "SELECT min(occurred_at), max(occurred_at) FROM events WHERE user_id = :u"
        ),
        "audience count by name and date (ix_events_name_at)": (
            "SELECT count(*) FROM events WHERE name = 'order_paid' AND occurred_at > :t - interval '1 day'"
        ),
        "a user's unsent run signals (ix_run_signals_user_unsent)": (
            "SELECT * FROM run_signals WHERE user_id IN ('b1-00000007') AND sent_at IS NULL ORDER BY id LIMIT 100"
        ),
        "prune sent run signals (ix_run_signals_sent_at)": (
            "SELECT id FROM run_signals WHERE sent_at < :t - interval '7 days' ORDER BY sent_at LIMIT 1000"
        ),
    }
    with store.engine.connect() as conn:
        for label, sql in queries.items():
            plan = [row[0] for row in conn.execute(text("EXPLAIN ANALYZE " + sql), {"u": HEAVY, "t": NOW})]
            used = [p.strip() for p in plan if "Index" in p or "Seq Scan" in p]
            took = next((p for p in plan if p.startswith("Execution Time")), "")
            print(f"  {label}: {used[0] if used else plan[0]} — {took}")


async def main(args: argparse.Namespace) -> None:
    base = args.url or os.environ.get("JOURNEYS_TEST_PG_URL")
    if not base or not base.startswith("postgresql"):
        raise SystemExit("a PostgreSQL URL: --url, or JOURNEYS_TEST_PG_URL (scripts/with-postgres)")
    print(f"store bench: {args.users:,} users, {args.events:,} events, heavy user {args.heavy:,} events; {load()}")
    empty = Store(fresh_database(base, "store_bench_empty"))
    empty.migrate()
    full = Store(fresh_database(base, "store_bench_full"))
    full.migrate()

    began = time.perf_counter()
    pool = min(args.pool, args.users)
    rows = await asyncio.to_thread(seed_pool, full, pool) if pool else 0
    rows += await asyncio.to_thread(seed_users, full, pool, args.users)
    print(
        f"seeded users: {args.users:,} ({pool:,} from seed_pool), {rows:,} rows in "
        f"{time.perf_counter() - began:.0f} s ({load()})"
    )
    began = time.perf_counter()
    added = await asyncio.to_thread(seed_events, full, args.users, args.events)
    await asyncio.to_thread(seed_heavy, full, args.heavy)
    await asyncio.to_thread(seed_signals, full, args.users, SIGNALS)
    with full.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text("ANALYZE"))  # autocommit: rolled back with its transaction, it keeps no statistics
        size = conn.execute(text("SELECT pg_size_pretty(pg_database_size(current_database()))")).scalar_one()
        counts = {t: conn.execute(text(f"SELECT count(*) FROM {t}")).scalar_one() for t in ("users", "events")}
    took = time.perf_counter() - began
    print(f"seeded events: +{added:,} and the heavy user in {took:.0f} s; {counts} ({size}; {load()})")
    print("EXPLAIN ANALYZE on the full store:")
    explain(full)

    print(f"ingest at {args.rate:g} events/s for {args.seconds:g} s (Dispatcher.ingest, no Temporal client):")
    base_lat = await ingest_stream(empty, "empty", 0, args.rate, args.seconds)
    print(line("  empty store", base_lat), flush=True)
    full_lat = await ingest_stream(full, "full", args.users, args.rate, args.seconds)
    print(line(f"  {counts['users']:,} users / {counts['events']:,} events", full_lat), flush=True)
    print(f"  p99 full / empty: {pct(full_lat, 0.99) / max(pct(base_lat, 0.99), 1e-9):.2f}x")

    print(f"the heavy user ({args.heavy:,} events, {args.heavy // 20:,} runs), {args.calls} calls each:")
    await pages(full, args.calls)
    empty.dispose()
    full.dispose()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", default=None)
    parser.add_argument("--users", type=int, default=1_000_000)
    parser.add_argument(
        "--pool", type=int, default=20_000, help="users from bench.seed_pool (the rest: member id only)"
    )
    parser.add_argument("--events", type=int, default=10_000_000)
    parser.add_argument("--heavy", type=int, default=10_000)
    parser.add_argument("--rate", type=float, default=40.0)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--calls", type=int, default=50)
    asyncio.run(main(parser.parse_args()))
