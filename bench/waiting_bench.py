"""100k runs waiting at once (issue 15, measure 2), on the product as shipped.

Starts ``journeys up`` in a temporary data directory (its Temporal dev
server, its ``journeys worker`` process, the API on uvicorn; SQLite, or the
PostgreSQL of ``--database-url``), deploys one journey that enters on an
event, sends, and waits up to 7 days for a second event::

    entry event bench_joined → send webhook "bench_hello"
    → wait for event bench_woken up to 7d → send webhook "bench_woken"

inserts N users straight into the store (Core executemany: a user and a
``member_id`` identity each) and starts N runs with ``engine.starts.start_run``
(the ingest's own signal-with-start, concurrent, straight on the dev server).
It prints, each figure with the load average:

- the worker process's RSS (``/proc``), sampled the whole time: before the
  starts, during them, once every run waits (target: flat, < 400 MB);
- ``GET /v1/journeys/{id}/stats``, the console journey page and the node
  panel over HTTP through the real uvicorn server, p50/p99 over repeated
  calls, at 0 runs, at ``--baseline`` runs and at N (targets at N: stats p99
  < 200 ms, page p99 < 1 s);
- the visibility count per waiting node (``engine.visibility``): how long it
  takes, and the store's own count of runs waiting there beside it;
- then ``--wake`` of the runs woken by ``bench_woken`` events through
  ``POST /v1/track`` at ``--rate``/s: event → delivery p50/p99 as
  ``bench/latency_bench.py`` measures it (request sent → delivery row).

    .venv/bin/python bench/waiting_bench.py [--runs 100000] [--baseline 1000] [--wake 10000] [--rate 40]
        [--database-url postgresql+psycopg://...] [--concurrency 200] [--calls 30]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
from sqlalchemy import distinct, func, insert, inspect, select  # noqa: E402
from temporalio.service import RPCError  # noqa: E402

from api.deps import COOKIE_NAME  # noqa: E402
from bench.latency_bench import _label, _tree, _ts, free_port, paced, ready_and_deployed, summary  # noqa: E402
from contracts.runs import UserEvent  # noqa: E402
from dsl import compile_source  # noqa: E402
from engine import catalog  # noqa: E402
from engine.node_numbers import waiting_nodes  # noqa: E402
from engine.starts import run_input, start_run  # noqa: E402
from engine.store import Store  # noqa: E402
from engine.store.models import Delivery, Identity, Run, StepRecord, User  # noqa: E402
from engine.temporal import connect  # noqa: E402
from engine.visibility import waiting_counts  # noqa: E402

NODE = "wait-event-bench_woken"  # the wait-for-event step's id (sends "wait" too, in quiet hours)

JOURNEY = "bench-waiting"
SOURCE = f"""
journey "{JOURNEY}"
  entry event bench_joined
  reentry always
  send webhook "bench_hello"
  wait for event bench_woken up to 7d:
    on event:
      send webhook "bench_woken"
    on timeout:
      exit
"""
BATCH = 5000


def load() -> str:
    one, five, _ = os.getloadavg()
    return f"[load {one:.2f} {five:.2f}]"


def percentiles(values: list[float]) -> tuple[float, float]:
    ordered = sorted(values)
    return ordered[len(ordered) // 2], ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))]


# -- the product's processes --------------------------------------------------


def worker_rss_mb(root: int) -> float:
    """Resident memory of the ``journeys worker`` process(es) under ``root``."""
    total = 0
    for pid in _tree(root):
        if _label(pid) != "worker process":
            continue
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            continue
    return total / 1024


class RssSampler:
    """The worker's RSS every ``every`` seconds, labelled by phase."""

    def __init__(self, root: int, every: float = 2.0) -> None:
        self.root, self.every, self.phase = root, every, "start"
        self.samples: list[tuple[str, float]] = []
        self._task: asyncio.Task[None] | None = None

    def sample(self) -> None:
        self.samples.append((self.phase, worker_rss_mb(self.root)))

    async def _run(self) -> None:
        while True:
            self.sample()
            await asyncio.sleep(self.every)

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        self.sample()
        if self._task:
            self._task.cancel()

    def report(self) -> str:
        lines = []
        for phase in dict.fromkeys(p for p, _ in self.samples):
            values = [v for p, v in self.samples if p == phase]
            lines.append(
                f"    {phase:28} n={len(values):4d}  first={values[0]:6.1f}  min={min(values):6.1f}"
                f"  max={max(values):6.1f}  last={values[-1]:6.1f} MB"
            )
        peak = max(v for _, v in self.samples)
        verdict = "met" if peak < 400 else "NOT met"
        lines.append(f"    target peak < 400 MB: {verdict} ({peak:.0f} MB) {load()}")
        return "\n".join(lines)


# -- seeding and starting -------------------------------------------------------


def user_of(i: int) -> str:
    return f"wu-{i:07d}"


def member_of(i: int) -> str:
    return f"wm-{i:07d}"


def seed_users(store: Store, first: int, last: int) -> None:
    """Users ``first..last-1`` with a member id each, by Core executemany."""
    with store.session() as s:
        for lo in range(first, last, BATCH):
            hi = min(last, lo + BATCH)
            s.execute(insert(User), [{"id": user_of(i), "attributes": {}} for i in range(lo, hi)])
            s.execute(
                insert(Identity),
                [{"kind": "member_id", "value": member_of(i), "user_id": user_of(i)} for i in range(lo, hi)],
            )


async def start_runs(client, store: Store, first: int, last: int, concurrency: int) -> float:  # noqa: ANN001
    """Start runs for users ``first..last-1``; returns starts per second."""
    version = catalog.get_version(store, JOURNEY)
    assert version is not None
    ir = compile_source(version.source)
    gate = asyncio.Semaphore(concurrency)

    async def one(i: int) -> None:
        trigger = UserEvent(id=f"wb-join-{i}", name="bench_joined")
        async with gate:
            for attempt in range(5):
                try:
                    await start_run(client, "journeys", run_input(version, ir, user_of(i), trigger))
                    return
                except RPCError:  # an overloaded dev server times out; the start is idempotent (its trigger id)
                    if attempt == 4:
                        raise
                    await asyncio.sleep(2**attempt)

    t0 = time.perf_counter()
    await asyncio.gather(*(one(i) for i in range(first, last)))
    return (last - first) / (time.perf_counter() - t0)


def fill(store: Store, template: int, first: int, last: int) -> None:
    """Copies of the store rows run ``template`` wrote (its run, step records
    and deliveries), for users ``first..last-1``: the store as 100k waiting
    runs leave it, without asking Temporal to run them (visibility still
    holds only the real ones)."""
    tmpl = user_of(template)
    with store.session() as s:
        found = {}
        for model in (Run, StepRecord, Delivery):
            cols = [c.key for c in inspect(model).column_attrs if c.key != "id"]
            rows = s.scalars(select(model).where(model.user_id == tmpl)).all()
            found[model] = [{c: getattr(r, c) for c in cols} for r in rows]
    for lo in range(first, last, BATCH):
        with store.session() as s:
            for model, rows in found.items():
                batch = []
                for i in range(lo, min(last, lo + BATCH)):
                    new = user_of(i)
                    batch += [
                        {k: v.replace(tmpl, new) if isinstance(v, str) else v for k, v in r.items()} for r in rows
                    ]
                if batch:
                    s.execute(insert(model), batch)


def store_waiting(store: Store, node: str) -> int:
    """Runs the store has seen waiting at the node (distinct runs)."""
    with store.read() as s:
        q = select(func.count(distinct(StepRecord.run_key))).where(
            StepRecord.journey_id == JOURNEY, StepRecord.node_id == node, StepRecord.outcome == "waiting"
        )
        return int(s.scalar(q) or 0)


async def until_waiting(store: Store, node: str, expected: int, timeout: float) -> float:
    """Seconds until the store has ``expected`` runs waiting at the node."""
    t0 = time.perf_counter()
    while (n := store_waiting(store, node)) < expected:
        if time.perf_counter() - t0 > timeout:
            print(f"  warning: only {n} of {expected} runs waiting after {timeout:.0f} s")
            break
        await asyncio.sleep(1.0)
    return time.perf_counter() - t0


# -- reads ---------------------------------------------------------------------


async def timed(calls: int, call: Callable[[], Awaitable[httpx.Response]]) -> list[float]:
    await call()  # one unmeasured call: caches and compiled statements, as a live page has them
    out = []
    for _ in range(calls):
        t0 = time.perf_counter()
        r = await call()
        out.append(1000 * (time.perf_counter() - t0))
        r.raise_for_status()
    return out


async def reads(http: httpx.AsyncClient, admin: dict[str, str], node: str, calls: int) -> dict[str, list[float]]:
    base = f"/v1/journeys/{JOURNEY}"
    return {
        "GET stats": await timed(calls, lambda: http.get(f"{base}/stats", headers=admin)),
        "console journey page": await timed(calls, lambda: http.get(f"/console/journeys/{JOURNEY}")),
        "console node panel": await timed(calls, lambda: http.get(f"/console/journeys/{JOURNEY}/nodes/{node}")),
        "GET runs?node=&limit=50": await timed(
            calls, lambda: http.get(f"{base}/runs", params={"node": node, "limit": 50}, headers=admin)
        ),
    }


def read_report(size: int, found: dict[str, list[float]]) -> str:
    lines = []
    for label, values in found.items():
        p50, p99 = percentiles(values)
        lines.append(f"    {size:7d} runs  {label:26} p50={p50:7.1f} ms  p99={p99:7.1f} ms  n={len(values)}")
    return "\n".join(lines) + f"  {load()}"


async def visibility_report(client, store: Store, node: str, expected: int) -> str:  # noqa: ANN001
    t0 = time.perf_counter()
    counts = await waiting_counts(client, JOURNEY, [node])
    took = 1000 * (time.perf_counter() - t0)
    stored = store_waiting(store, node)
    right = "right" if counts.get(node) == expected else f"WRONG (expected {expected})"
    return (
        f"    visibility count at {node!r}: {counts.get(node)} in {took:.0f} ms; store says {stored} waited there;"
        f" {right} {load()}"
    )


# -- waking ----------------------------------------------------------------------


async def wake(http: httpx.AsyncClient, write_key: str, store: Store, n: int, rate: float) -> list[float]:
    """Wake runs ``0..n-1`` by a ``bench_woken`` event each at ``rate``/s;
    event sent → the woken send's delivery row, in ms."""

    async def fire(i: int) -> None:
        body = {"userId": member_of(i), "event": "bench_woken", "messageId": f"wb-woken-{i}"}
        (await http.post("/v1/track", auth=(write_key, ""), json=body)).raise_for_status()

    sent = await paced(rate, n / rate, fire)
    deadline = time.time() + 300
    while True:
        with store.read() as s:
            rows = s.execute(
                select(Delivery.user_id, Delivery.created_at).where(
                    Delivery.journey_id == JOURNEY, Delivery.template == "bench_woken"
                )
            ).all()
        if len(rows) >= len(sent) or time.time() > deadline:
            break
        await asyncio.sleep(0.5)
    if len(rows) < len(sent):
        print(f"  warning: only {len(rows)} of {len(sent)} woken deliveries recorded in time")
    return sorted((_ts(at) - sent[str(int(uid.removeprefix("wu-")))]) * 1000 for uid, at in rows)


# -- the run ---------------------------------------------------------------------


def stop(up: subprocess.Popen[bytes]) -> None:
    """Ctrl-C, as an operator stops ``journeys up``; killed after a minute."""
    up.send_signal(signal.SIGINT)
    deadline = time.monotonic() + 60
    while up.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    if up.poll() is None:
        up.kill()


async def main(args: argparse.Namespace) -> None:
    data = Path(tempfile.mkdtemp(prefix="journeys-waiting-"))
    port, temporal_port, ui_port = free_port(), free_port(), free_port()
    env = dict(os.environ)
    url = args.database_url or f"sqlite:///{data / 'journeys.db'}"
    if args.database_url:
        env["DATABASE_URL"] = args.database_url
    cmd = [sys.executable, "-m", "api.cli", "up", "--data-dir", str(data), "--port", str(port)]
    cmd += ["--temporal-port", str(temporal_port), "--ui-port", str(ui_port)]
    log_path = data / "up.log"
    log = log_path.open("w")
    up = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    store = Store(url)
    rss = RssSampler(up.pid)
    print(f"waiting bench: {args.runs} runs, store {url.split('@')[-1]}, reads over HTTP (uvicorn) {load()}")
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=120) as http:
            keys = await ready_and_deployed(http, up, data)  # (it deploys latency_bench's ping journey too)
            admin = {"Authorization": f"Bearer {keys['admin']}"}
            http.cookies.set(COOKIE_NAME, keys["admin"])
            for name in ("bench_hello", "bench_woken"):
                r = await http.put(f"/v1/templates/{name}", json={"body": name + " {{ user.id }}"}, headers=admin)
                r.raise_for_status()
            (await http.post("/v1/journeys", json={"id": JOURNEY, "source": SOURCE}, headers=admin)).raise_for_status()
            node = NODE
            assert node in waiting_nodes(compile_source(SOURCE))
            client = await connect(f"127.0.0.1:{temporal_port}")
            rss.start()

            t0 = time.perf_counter()
            await asyncio.to_thread(seed_users, store, 0, args.runs)
            print(f"seeded {args.runs} users in {time.perf_counter() - t0:.1f} s {load()}", flush=True)

            print("reads at 0 runs (baseline) …", flush=True)
            figures = [read_report(0, await reads(http, admin, node, args.calls))]
            print(figures[-1], flush=True)
            done = 0
            for size in dict.fromkeys([min(args.baseline, args.runs), args.runs]):
                rss.phase = f"starting {done}..{size}"
                rate = await start_runs(client, store, done, size, args.concurrency)
                print(f"started runs {done}..{size}: {rate:.0f} starts/s {load()}", flush=True)
                rss.phase = f"worker catching up to {size}"
                took = await until_waiting(store, node, size, timeout=max(120.0, size / 20))
                print(f"  all {size} waiting {took:.0f} s after the last start {load()}", flush=True)
                rss.phase = f"{size} waiting"
                await asyncio.sleep(5)
                print(await visibility_report(client, store, node, size), flush=True)
                figures.append(read_report(size, await reads(http, admin, node, args.calls)))
                print(figures[-1], flush=True)
                done = size

            if args.fill > done:
                rss.phase = f"store filled to {args.fill}"
                t0 = time.perf_counter()
                await asyncio.to_thread(seed_users, store, done, args.fill)
                await asyncio.to_thread(fill, store, 0, done, args.fill)
                print(
                    f"store rows of runs {done}..{args.fill} copied from run 0 in {time.perf_counter() - t0:.0f} s"
                    f" (not in Temporal: visibility holds the {done} real ones) {load()}",
                    flush=True,
                )
                print(await visibility_report(client, store, node, done), flush=True)
                figures.append(read_report(args.fill, await reads(http, admin, node, args.calls)) + " (store filled)")
                print(figures[-1], flush=True)

            woken: list[float] = []
            if args.wake:
                n = min(args.wake, args.runs)
                rss.phase = f"waking {n} at {args.rate:g}/s"
                print(f"waking {n} runs by POST /v1/track at {args.rate:g}/s …", flush=True)
                woken = await wake(http, keys["write"], store, n, args.rate)
                print(f"  {summary('event → woken delivery', woken)} {load()}", flush=True)
                rss.phase = "after waking"
                await asyncio.sleep(5)
            await rss.stop()
    except BaseException:
        print(f"journeys up's log, the end:\n{log_path.read_text()[-4000:]}")
        raise
    finally:
        stop(up)
        store.dispose()
        log.close()
        shutil.rmtree(data, ignore_errors=True)
    print("worker RSS by phase:")
    print(rss.report())
    print("reads (p50/p99 over HTTP through uvicorn):")
    print("\n".join(figures))
    if woken:
        print(summary("event → woken delivery", woken), load())


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=100_000)
    parser.add_argument("--baseline", type=int, default=1000, help="runs waiting for the baseline reads")
    parser.add_argument("--wake", type=int, default=10_000, help="runs woken by events afterwards")
    parser.add_argument("--rate", type=float, default=40.0, help="wake events per second")
    parser.add_argument("--concurrency", type=int, default=50, help="start_run calls in flight")
    parser.add_argument("--calls", type=int, default=30, help="timed calls per read")
    parser.add_argument(
        "--fill", type=int, default=0, help="then copy run 0's store rows up to this many runs and read again"
    )
    parser.add_argument("--database-url", default=None, help="PostgreSQL URL (default: SQLite in the data dir)")
    asyncio.run(main(parser.parse_args()))
