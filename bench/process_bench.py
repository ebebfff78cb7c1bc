"""Throughput of ``journeys up`` on PostgreSQL with 1 and 2 worker and API
processes, CPU per event per component, against floors measured in the same
run.

For each ``--workers W --api-processes A`` the bench starts the real product on
a fresh PostgreSQL database (``DATABASE_URL``) and a fresh dev server, deploys
the one-send journey of ``bench/latency_bench.py``, warms up, then offers load
at saturation: ``--concurrency`` Segment clients, each posting its next
``POST /v1/track`` (a new user, so a new run) as soon as the last was answered,
for ``--seconds``. **Throughput** is the measured events over the time from the
first of them sent to the last of their sends recorded (so a backlog the API
accepted but the workers had not delivered counts against it); the p99 of
event → delivery at that load is printed beside it. CPU per event per kind of
process (API, worker(s), dev server, this load generator) is read from
``/proc`` over the same span.

Floors, same run, same machine: (a) a bare dev server's CPU per workflow and
(b) a bare Python worker's (``bench/bare_worker.py``): a trivial workflow
started by signal-with-start that runs as many local activities as one of our
runs recorded (counted from its history), at the same concurrency.

``--profile`` records the (first) worker process with ``py-spy`` during the
W=1 A=1 measurement and prints the top frames by inclusive share.

    scripts/with-postgres .venv/bin/python bench/process_bench.py [--seconds 20] [--concurrency 16]
        [--configs 1x1,2x1,1x2,2x2] [--profile]

Needs ``JOURNEYS_TEST_PG_URL`` (``scripts/with-postgres`` sets it).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
from sqlalchemy import create_engine, select, text  # noqa: E402
from sqlalchemy.engine import make_url  # noqa: E402
from temporalio.api.enums.v1 import EventType  # noqa: E402

from api.child_guard import children_of  # noqa: E402
from bench.latency_bench import (  # noqa: E402
    _ts,
    cpu_seconds,
    free_port,
    p99,
    ready_and_deployed,
    stop_up,
    summary,
    wait_for_deliveries,
)
from contracts.runs import workflow_id  # noqa: E402
from engine.store import Store  # noqa: E402
from engine.store.models import Delivery, Identity, Run  # noqa: E402
from engine.temporal import connect, start_dev_server  # noqa: E402

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def _cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def _load() -> str:
    return "load average " + " ".join(f"{x:.2f}" for x in os.getloadavg())


@dataclass
class Figures:
    label: str
    events: int
    seconds: float
    latencies: list[float]
    cpu_ms: dict[str, float]  # per event, by kind of process
    local_activities: int
    transactions: float = 0.0  # PostgreSQL transactions per event (API and workers)

    @property
    def rate(self) -> float:
        return self.events / self.seconds if self.seconds > 0 else 0.0


# -- a database of its own per configuration ----------------------------------


class Databases:
    def __init__(self, admin_url: str) -> None:
        self.admin = make_url(admin_url)
        self.engine = create_engine(self.admin, isolation_level="AUTOCOMMIT")

    def make(self, name: str) -> str:
        with self.engine.connect() as c:
            c.execute(text(f'CREATE DATABASE "{name}"'))
        return self.admin.set(database=name).render_as_string(hide_password=False)

    def transactions(self, name: str) -> int:
        """Transactions committed or rolled back in database ``name`` so far
        (the statistics collector's, flushed within a second or so)."""
        with self.engine.connect() as c:
            c.execute(text("SELECT pg_stat_clear_snapshot()"))
            return int(
                c.execute(
                    text("SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE datname = :n"), {"n": name}
                ).scalar_one()
            )

    def drop(self, name: str) -> None:
        with self.engine.connect() as c:
            c.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


# -- load ---------------------------------------------------------------------


async def saturate(seconds: float, concurrency: int, fire, count: int | None = None) -> dict[str, float]:
    """``concurrency`` loops, each calling ``fire(key)`` again as soon as the
    last returned, for ``seconds`` (or until ``count`` were sent); returns
    when each key was sent."""
    sent: dict[str, float] = {}
    deadline = time.perf_counter() + seconds
    left = [count if count is not None else -1]

    async def loop(lane: int) -> None:
        n = 0
        while time.perf_counter() < deadline and left[0] != 0:
            left[0] -= 1
            key = f"{lane}-{n}"
            n += 1
            sent[key] = time.time()
            await fire(key)

    await asyncio.gather(*(loop(lane) for lane in range(concurrency)))
    return sent


def py_spy(pid: int, seconds: float, out: Path) -> subprocess.Popen:
    exe = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    cmd = [exe, "record", "--pid", str(pid), "--duration", str(int(seconds)), "--rate", "50", "--format", "raw"]
    return subprocess.Popen([*cmd, "--output", str(out), "--nonblocking"], stdout=subprocess.DEVNULL)


# frames every busy stack of a process starts with: the interpreter's, the
# event loop's, a pool thread's (their share says nothing about where CPU goes)
ROOT_FRAMES = {
    "_run_module_as_main", "_run_code", "<module>", "main", "_command", "run", "Runner.run",
    "Thread._bootstrap", "Thread._bootstrap_inner", "Thread.run", "_worker", "_WorkItem.run",
}  # fmt: skip
# waiting, not working: the loop's selector, a pool thread's queue, psycopg's socket wait
IDLE_LEAVES = ("select (", "poll (", "wait (threading", "_worker (concurrent", "epoll", "Connection.wait (psycopg")
# where a busy sample is, by the first of these found in its stack (in order)
GROUPS = (
    ("our workflow code (workflows/)", "/workflows/"),
    ("database client (SQLAlchemy, psycopg)", "sqlalchemy/", "psycopg/"),
    ("our activity code (engine/)", "/engine/"),
    ("Temporal SDK: workflow activations", "_handle_activation", "_workflow_instance.py"),
    ("Temporal SDK: activity tasks", "worker/_activity.py"),
    ("thread hand-offs (to_thread)", "ThreadPoolExecutor.submit"),
)


def top_frames(raw: Path, n: int = 20) -> str:
    """From py-spy's collapsed stacks: the share of busy samples (idle leaves
    dropped: waiting in the loop's selector or for a pool thread's work) under
    each frame (inclusive, root frames left out), then the leaves (self)."""
    inclusive: Counter[str] = Counter()
    leaves: Counter[str] = Counter()
    groups: Counter[str] = Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit() or not stack:
            continue
        frames = stack.split(";")
        if any(idle in frames[-1] for idle in IDLE_LEAVES):
            continue
        total += int(count)
        names = [_frame(f) for f in frames]
        for name in dict.fromkeys(names):
            if name.split(" (")[0] not in ROOT_FRAMES:
                inclusive[name] += int(count)
        leaves[names[-1]] += int(count)
        groups[
            next((g[0] for g in GROUPS if any(m in stack for m in g[1:])), "event loop, SDK core bridge, other")
        ] += int(count)
    if not total:
        return "    (no busy samples)"
    lines = [f"    {total} busy samples; by where they are:"]
    lines += [f"    {100 * c / total:5.1f}%  {group}" for group, c in groups.most_common()]
    lines.append("    inclusive, by frame:")
    lines += [f"    {100 * c / total:5.1f}%  {frame}" for frame, c in inclusive.most_common(n)]
    lines.append("    self (leaf frames):")
    lines += [f"    {100 * c / total:5.1f}%  {frame}" for frame, c in leaves.most_common(n // 2)]
    return "\n".join(lines)


def _frame(raw: str) -> str:
    """``func (path/to/file.py:12)`` → ``func (to/file.py)``: one entry per function."""
    name, _, where = raw.partition(" (")
    path = where.rsplit(":", 1)[0].rstrip(")")
    return f"{name} ({'/'.join(Path(path).parts[-2:])})"


async def run_product(
    dbs: Databases, workers: int, apis: int, seconds: float, concurrency: int, warmup: float, profile: bool
) -> Figures:
    label = f"{workers} worker(s) × {apis} API process(es)"
    name = f"bench_{workers}x{apis}_{uuid.uuid4().hex[:6]}"
    url = dbs.make(name)
    data = Path(tempfile.mkdtemp(prefix="journeys-procs-"))
    port, temporal_port, ui_port = free_port(), free_port(), free_port()
    cmd = [sys.executable, "-m", "api.cli", "up", "--data-dir", str(data), "--port", str(port)]
    cmd += ["--temporal-port", str(temporal_port), "--ui-port", str(ui_port)]
    cmd += ["--workers", str(workers), "--api-processes", str(apis)]
    log = (data / "up.log").open("w")
    up = subprocess.Popen(cmd, cwd=ROOT, env={**os.environ, "DATABASE_URL": url}, stdout=log, stderr=subprocess.STDOUT)
    store = Store(url)
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=60) as http:
            keys = await ready_and_deployed(http, up, data)

            def fire(prefix: str):
                async def one(key: str) -> None:
                    body = {"userId": f"{prefix}-{key}", "event": "clicked", "messageId": f"{prefix}-msg-{key}"}
                    (await http.post("/v1/track", auth=(keys["write"], ""), json=body)).raise_for_status()

                return one

            def delivered(prefix: str):
                return (
                    select(Identity.value, Delivery.created_at)
                    .join(Delivery, Delivery.user_id == Identity.user_id)
                    .where(Identity.kind == "member_id", Identity.value.like(f"{prefix}-%"))
                )

            print(f"{label}: warming up {warmup:g} s …", flush=True)
            warmed = await saturate(warmup, concurrency, fire("warm"))
            await wait_for_deliveries(store, delivered("warm"), len(warmed), timeout=300)
            worker_pids = [int(p) for p in _pids(data / "up.log", "worker process")]
            raw = Path(tempfile.gettempdir()) / f"process_bench_worker_{os.getpid()}.raw"  # kept: py-spy's stacks
            spy = py_spy(worker_pids[0], seconds, raw) if profile and worker_pids else None
            await asyncio.sleep(1.5)  # the warm-up's last marks and statistics
            xacts = dbs.transactions(name)
            before = cpu_seconds(up.pid)
            started = time.time()
            sent = await saturate(seconds, concurrency, fire("m"))
            rows = await wait_for_deliveries(store, delivered("m"), len(sent), timeout=600)
            after = cpu_seconds(up.pid)
            await asyncio.sleep(1.5)
            xacts = dbs.transactions(name) - xacts
            last = max((_ts(created) for _, created in rows), default=started)
            latencies = sorted(1000 * (_ts(created) - sent[member.removeprefix("m-")]) for member, created in rows)
            with store.read() as s:
                user = s.execute(select(Run.user_id).where(Run.journey_id == "ping").limit(1)).scalar_one()
            client = await connect(f"127.0.0.1:{temporal_port}")
            history = await client.get_workflow_handle(workflow_id("ping", user)).fetch_history()
            markers = sum(1 for e in history.events if e.event_type == EventType.EVENT_TYPE_MARKER_RECORDED)
            if spy is not None:
                spy.wait(timeout=seconds + 60)
                print(f"  py-spy, worker process pid {worker_pids[0]}, top frames by inclusive share of busy samples:")
                print(top_frames(raw))
                print(f"  (stacks in {raw}; `py-spy record --format flamegraph` draws the same as an SVG)")
        cpu_ms = {k: 1000 * (after[k] - before.get(k, 0.0)) / max(1, len(sent)) for k in after}
        # the bench's own polls of the deliveries are transactions too: roughly one per 0.25 s
        polls = (time.time() - started) / 0.25
        per_event = max(0.0, xacts - polls) / max(1, len(sent))
        return Figures(label, len(rows), last - started, latencies, cpu_ms, markers, per_event)
    finally:
        stop_up(up, store, log, data)
        dbs.drop(name)


def _pids(log: Path, what: str) -> list[str]:
    return re.findall(rf"{what} \d+ started \(pid (\d+)\)", log.read_text())


async def run_floor(local_activities: int, count: int, concurrency: int, warmup: int) -> Figures:
    """The bare dev server and the bare Python worker, per workflow: ``count``
    of them (as many as the product's events) after ``warmup`` unmeasured."""
    data = Path(tempfile.mkdtemp(prefix="journeys-floor-"))
    known = set(children_of(os.getpid()))
    port = free_port()
    env = await start_dev_server(str(data / "temporal.db"), port=port)
    server = [p for p in children_of(os.getpid()) if p not in known]
    worker = subprocess.Popen(
        [sys.executable, "-m", "bench.bare_worker", f"127.0.0.1:{port}", "bare"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert worker.stdout is not None and worker.stdout.readline().strip() == "ready"
        client = env.client

        def fire(prefix: str):
            async def one(key: str) -> None:
                await client.start_workflow(
                    "BareFloor",
                    local_activities,
                    id=f"{prefix}-{key}",
                    task_queue="bare",
                    start_signal="event",
                    start_signal_args=[{"id": f"{prefix}-{key}", "name": "clicked"}],
                )

            return one

        async def completed(expected: int, within: float = 300.0) -> float:
            deadline = time.time() + within  # a bound: a swamped dev server may drop a task for a while
            while True:
                count = (await client.count_workflows('ExecutionStatus="Completed"')).count
                if count >= expected or time.time() > deadline:
                    if count < expected:
                        print(f"  warning: only {count} of {expected} bare workflows completed in time", flush=True)
                    return time.time()
                await asyncio.sleep(1.0)  # a count is a visibility query: not too often

        warmed = await saturate(600, concurrency, fire("warm"), warmup)
        await completed(len(warmed))
        cpu = lambda: {"bare dev server": sum(map(_cpu, server)), "bare Python worker": _cpu(worker.pid)}  # noqa: E731
        before = cpu()
        started = time.time()
        sent = await saturate(600, concurrency, fire("m"), count)
        last = await completed(len(warmed) + len(sent))
        after = cpu()
        cpu_ms = {k: 1000 * (after[k] - before[k]) / max(1, len(sent)) for k in after}
        return Figures(f"floor ({local_activities} local activities)", len(sent), last - started, [], cpu_ms, 0)
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(timeout=60)
        await env.shutdown()
        shutil.rmtree(data, ignore_errors=True)


def pre_ping_cost(url: str, n: int = 1000) -> str:
    """What ``pool_pre_ping`` (``engine.store.db``: on for PostgreSQL) costs
    a transaction: one ``SELECT 1`` transaction, with and without it, this
    process's CPU and wall time each."""
    lines = []
    for ping in (True, False):
        engine = create_engine(url, pool_pre_ping=ping)
        with engine.begin() as c:
            c.execute(text("SELECT 1"))
        cpu0, wall0 = sum(os.times()[:2]), time.perf_counter()
        for _ in range(n):
            with engine.begin() as c:
                c.execute(text("SELECT 1"))
        cpu, wall = sum(os.times()[:2]) - cpu0, time.perf_counter() - wall0
        engine.dispose()
        lines.append(
            f"    pool_pre_ping={ping!s:5}  {1e6 * cpu / n:6.0f} µs CPU, {1e6 * wall / n:6.0f} µs wall per transaction"
        )
    return "\n".join(lines)


def report(results: list[Figures], floor: Figures | None) -> None:
    print(f"\n== results ({_load()})")
    for r in results:
        print(f"{r.label}: {r.rate:6.1f} events/s end to end ({r.events} events in {r.seconds:.1f} s)")
        print("    " + summary("event → delivery", r.latencies))
        print(f"    PostgreSQL transactions      {r.transactions:6.1f} per event (API and workers)")
        for kind, ms in sorted(r.cpu_ms.items()):
            print(f"    {kind:28} {ms:6.1f} ms CPU per event")
    if floor is not None:
        print(f"{floor.label}: {floor.rate:6.1f} workflows/s end to end ({floor.events} in {floor.seconds:.1f} s)")
        for kind, ms in sorted(floor.cpu_ms.items()):
            print(f"    {kind:28} {ms:6.1f} ms CPU per workflow")
        for r in results:
            worker = r.cpu_ms.get("worker process", 0.0)
            server = r.cpu_ms.get("temporal dev server", 0.0)
            print(
                f"  {r.label}: worker {worker / max(floor.cpu_ms['bare Python worker'], 0.01):.1f}× the bare worker, "
                f"dev server {server / max(floor.cpu_ms['bare dev server'], 0.01):.1f}× the bare dev server"
            )
    for r in results:
        verdict = "met" if r.latencies and p99(r.latencies) < 250 else "NOT met"
        print(f"  {r.label}: p99 < 250 ms at saturation {verdict}")


async def main(args: argparse.Namespace) -> None:
    admin = os.environ.get("JOURNEYS_TEST_PG_URL")
    if not admin:
        raise SystemExit("JOURNEYS_TEST_PG_URL is not set: run under scripts/with-postgres")
    dbs = Databases(admin)
    results: list[Figures] = []
    print(f"start ({_load()}, {os.cpu_count()} cores)", flush=True)
    for config in args.configs.split(","):
        workers, apis = (int(x) for x in config.split("x"))
        for attempt in range(3):
            try:
                figures = await run_product(
                    dbs,
                    workers,
                    apis,
                    args.seconds,
                    args.concurrency,
                    args.warmup,
                    profile=args.profile and (workers, apis) == (1, 1),
                )
                break
            except SystemExit as exc:  # the SDK gives the dev server 5 s to start: a busy box misses it
                if "did not start within" not in str(exc) or attempt == 2:
                    raise
                print(f"  the dev server did not start in time; again ({_load()})", flush=True)
        results.append(figures)
        report([figures], None)  # as it goes: a later phase that fails loses nothing
    local = max((r.local_activities for r in results), default=0)
    count = max(200, max((r.events for r in results), default=0))
    floor = await run_floor(local, count, args.concurrency, 50) if local else None
    report(results, floor)
    print(f"one PostgreSQL transaction, from this process ({_load()}):")
    scratch = f"bench_ping_{uuid.uuid4().hex[:6]}"
    try:
        print(pre_ping_cost(dbs.make(scratch)))
    finally:
        dbs.drop(scratch)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--warmup", type=float, default=8.0)
    parser.add_argument("--configs", default="1x1,2x1,1x2,2x2", help="WORKERSxAPIS, comma-separated")
    parser.add_argument("--profile", action="store_true", help="py-spy the worker during the 1x1 measurement")
    asyncio.run(main(parser.parse_args()))
