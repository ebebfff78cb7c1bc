"""Event → delivery latency through the API on the embedded default.

Starts the real product, ``journeys up``, in a temporary data directory (its
Temporal dev server, its worker process(es), the API on uvicorn, SQLite), then
sends a steady stream of Segment-style ``POST /v1/track`` events (20/s by
default) from this process. Each event starts an event-triggered journey whose
first step is a send; latency is from the moment the request was sent to the
moment the delivery row was written.

The baseline in the same run is the same journey started straight on the same
Temporal server by ``engine.starts.start_run`` (the signal-with-start
ingest uses, from Python: no HTTP, no ingest), picked up by the same worker,
so the gap shows what the service adds. It also prints the
CPU each process of ``journeys up`` spent per event: on a 2-core machine
that, not any one query, decides where latency starts to climb. Target
(issue 4): p99 < 250 ms at 20 events/s.

    .venv/bin/python bench/latency_bench.py [events_per_second] [seconds] [--workers N] [--only api|direct]
        [--warmup SECONDS]

Both phases follow ``--warmup`` seconds (default 10) of unmeasured traffic at
the same rate: a fresh process's first seconds (imports, statement caches,
validators) are start-up, not steady state.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from datetime import UTC
from pathlib import Path
from typing import IO

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
from sqlalchemy import select  # noqa: E402

from contracts.runs import JourneyInput, UserEvent  # noqa: E402
from dsl import compile_source  # noqa: E402
from engine.starts import start_run  # noqa: E402
from engine.store import Store  # noqa: E402
from engine.store.models import Delivery, Event, Identity, Run  # noqa: E402
from engine.temporal import connect  # noqa: E402

SOURCE = """
journey "ping"
  entry event clicked
  reentry always
  send webhook "ping"
"""
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# -- CPU accounting from /proc: the up process and everything it started ----


def _children(pid: int) -> list[int]:
    out = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        with open(task / "children") as f:
            out += [int(c) for c in f.read().split()]
    return out


def _tree(pid: int) -> list[int]:
    pids, todo = [], [pid]
    while todo:
        p = todo.pop()
        try:
            todo += _children(p)
        except OSError:
            continue
        pids.append(p)
    return pids


def _label(pid: int) -> str:
    try:
        cmd = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return "?"
    text = " ".join(c.decode(errors="replace") for c in cmd)
    if "server start-dev" in text:
        return "temporal dev server"
    if " worker" in text:
        return "worker process"
    if "api.cli api " in text:  # `journeys up --api-processes N`
        return "API process"
    if " up" in text:
        return "up (API)"
    return Path(cmd[0].decode(errors="replace")).name or "?"


def cpu_seconds(root: int) -> Counter[str]:
    """User+system CPU seconds so far, per kind of process under ``root``."""
    out: Counter[str] = Counter()
    for pid in _tree(root):
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        out[_label(pid)] += (int(fields[11]) + int(fields[12])) / CLOCK_TICKS
    out["load generator (this bench)"] = sum(os.times()[:2])
    return out


def cpu_report(before: Counter[str], after: Counter[str], events: int) -> str:
    lines = []
    for name in sorted(after):
        used = after[name] - before.get(name, 0.0)
        lines.append(f"    {name:28} {1000 * used / events:6.1f} ms CPU per event")
    return "\n".join(lines)


# -- load and measurement -----------------------------------------------------


async def paced(rate: float, seconds: float, fire) -> dict[str, float]:
    """Call ``fire(i)`` at a steady rate; returns when each was fired (wall clock)."""
    sent: dict[str, float] = {}
    tasks = []
    start = time.perf_counter()
    for i in range(int(rate * seconds)):
        delay = start + i / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        sent[f"{i}"] = time.time()
        tasks.append(asyncio.create_task(fire(i)))
    await asyncio.gather(*tasks)
    return sent


def _ts(created) -> float:
    return created.replace(tzinfo=UTC).timestamp() if created.tzinfo is None else created.timestamp()


async def wait_for_deliveries(store: Store, query, expected: int, timeout: float = 180) -> list:
    deadline = time.time() + timeout
    while True:
        with store.read() as s:
            rows = s.execute(query).all()
        if len(rows) >= expected or time.time() > deadline:
            if len(rows) < expected:
                print(f"  warning: only {len(rows)} of {expected} deliveries recorded in time")
            return rows
        await asyncio.sleep(0.25)


def summary(label: str, values: list[float]) -> str:
    if not values:
        return f"{label:26} no deliveries"
    p = lambda q: values[min(len(values) - 1, int(q * len(values)))]  # noqa: E731
    return (
        f"{label:26} n={len(values):4d}  p50={p(0.50):7.1f} ms  p99={p(0.99):7.1f} ms  "
        f"max={values[-1]:7.1f} ms  mean={statistics.mean(values):7.1f} ms"
    )


def stage_report(store: Store, sent: dict[str, float]) -> str:
    """Where an event's time went, from the store's own timestamps: request
    sent → event stored (HTTP, auth, parsing), stored → run begun (the
    ingest transaction, signal-with-start, Temporal handing the workflow
    task to the worker; a run's ``entered_at`` is the task's start time), and
    begun → delivery row (the worker's local activities)."""
    with store.read() as s:
        rows = s.execute(
            select(Event.id, Event.received_at, Run.entered_at, Delivery.created_at)
            .join(Run, Run.trigger_event_id == Event.id)
            .join(Delivery, Delivery.run_key == Run.run_key)
            .where(Event.id.like("api-msg-%"))
        ).all()
    stages: dict[str, list[float]] = {"sent → stored": [], "stored → run begun": [], "run begun → delivery": []}
    for event_id, received, entered, created in rows:
        t0 = sent[event_id.removeprefix("api-msg-")]
        t1, t2, t3 = _ts(received), _ts(entered), _ts(created)
        stages["sent → stored"].append(1000 * (t1 - t0))
        stages["stored → run begun"].append(1000 * (t2 - t1))
        stages["run begun → delivery"].append(1000 * (t3 - t2))
    lines = []
    for label, values in stages.items():
        values.sort()
        if values:
            lines.append(f"    {label:22} p50={values[len(values) // 2]:6.1f} ms  p99={p99(values):6.1f} ms")
    return "\n".join(lines)


def p99(values: list[float]) -> float:
    return values[min(len(values) - 1, int(0.99 * len(values)))]


async def ready_and_deployed(http: httpx.AsyncClient, up: subprocess.Popen, data: Path) -> dict[str, str]:
    """Wait for ``journeys up`` (its log in ``data/up.log``) to answer
    ``/ready`` and say it is up, then deploy the ``ping`` journey and its
    template; returns the keys it made."""
    for _ in range(3000):  # a bound: a start takes a minute on a busy 2-core box
        try:
            if (await http.get("/ready")).status_code == 200 and "journeys is up" in (data / "up.log").read_text():
                break
        except httpx.TransportError:
            pass
        if up.poll() is not None:
            raise SystemExit(f"journeys up exited:\n{(data / 'up.log').read_text()[-3000:]}")
        await asyncio.sleep(0.1)
    keys = json.loads((data / "keys.json").read_text())
    admin = {"Authorization": f"Bearer {keys['admin']}"}
    (await http.put("/v1/templates/ping", json={"body": "ping {{ user.id }}"}, headers=admin)).raise_for_status()
    (await http.post("/v1/journeys", json={"id": "ping", "source": SOURCE}, headers=admin)).raise_for_status()
    return keys


def stop_up(up: subprocess.Popen, store: Store, log: IO[str], data: Path, within: float = 90) -> None:
    """Ctrl-C ``journeys up`` (killed if it is not gone ``within`` seconds) and remove its data directory."""
    up.send_signal(signal.SIGINT)
    try:
        up.wait(timeout=within)
    except subprocess.TimeoutExpired:
        up.kill()
    store.dispose()
    log.close()
    shutil.rmtree(data, ignore_errors=True)


async def main(rate: float, seconds: float, workers: int | None, only: str | None, warmup: float) -> None:
    data = Path(tempfile.mkdtemp(prefix="journeys-latency-"))
    port, temporal_port, ui_port = free_port(), free_port(), free_port()
    env = dict(os.environ)  # the product's defaults: JSON access logs at INFO, to a file
    cmd = [sys.executable, "-m", "api.cli", "up", "--data-dir", str(data), "--port", str(port)]
    cmd += ["--temporal-port", str(temporal_port), "--ui-port", str(ui_port)]
    if workers is not None:
        cmd += ["--workers", str(workers)]
    log = (data / "up.log").open("w")
    up = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    store = Store(f"sqlite:///{data / 'journeys.db'}")
    results: dict[str, list[float]] = {}
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as http:
            keys = await ready_and_deployed(http, up, data)
            # Warm up at the same rate (not measured): the first seconds of a
            # fresh process pay for imports, compiled-statement caches and
            # validators, and would otherwise dominate the p99.
            if warmup > 0:

                async def warm(i: int) -> None:
                    r = await http.post(
                        "/v1/track",
                        auth=(keys["write"], ""),
                        json={"userId": f"warm-{i}", "event": "clicked", "messageId": f"warm-msg-{i}"},
                    )
                    r.raise_for_status()

                print(f"warming up: {rate:g} events/s for {warmup:g} s (not measured) …", flush=True)
                warmed = await paced(rate, warmup, warm)
                await wait_for_deliveries(
                    store,
                    select(Identity.value)
                    .join(Delivery, Delivery.user_id == Identity.user_id)
                    .where(Identity.kind == "member_id", Identity.value.like("warm-%")),
                    len(warmed),
                )

            if only in (None, "api"):
                answered: list[float] = []

                async def track(i: int) -> None:
                    t0 = time.perf_counter()
                    r = await http.post(
                        "/v1/track",
                        auth=(keys["write"], ""),
                        json={"userId": f"api-{i}", "event": "clicked", "messageId": f"api-msg-{i}"},
                    )
                    r.raise_for_status()
                    answered.append(1000 * (time.perf_counter() - t0))

                print(f"{rate:g} events/s for {seconds:g} s through POST /v1/track …", flush=True)
                before = cpu_seconds(up.pid)
                sent = await paced(rate, seconds, track)
                rows = await wait_for_deliveries(
                    store,
                    select(Identity.value, Delivery.created_at)
                    .join(Delivery, Delivery.user_id == Identity.user_id)
                    .where(Identity.kind == "member_id", Identity.value.like("api-%")),
                    len(sent),
                )
                print(cpu_report(before, cpu_seconds(up.pid), len(sent)))
                results["POST /v1/track answered"] = sorted(answered)
                pairs = [
                    (int(member.removeprefix("api-")), (_ts(created) - sent[member.removeprefix("api-")]) * 1000)
                    for member, created in rows
                ]
                results["API ingest → delivery"] = sorted(v for _, v in pairs)
                by_window: dict[int, list[float]] = {}
                for i, v in pairs:
                    by_window.setdefault(int(i / rate // 5), []).append(v)
                medians = " ".join(f"{statistics.median(v):.0f}" for _, v in sorted(by_window.items()))
                print(f"    p50 by 5 s window (ms): {medians}")
                print(stage_report(store, sent))

        if only in (None, "direct"):
            client = await connect(f"127.0.0.1:{temporal_port}")
            journey = compile_source(SOURCE)

            async def direct(i: int) -> None:
                user = f"direct-{i}"
                event = UserEvent(id=f"direct-msg-{i}", name="clicked")
                inp = JourneyInput(
                    journey_id="ping-direct",
                    version=1,
                    hash=journey.content_hash(),
                    user_id=user,
                    ir=journey,
                    trigger_event=event,
                )
                await start_run(client, "journeys", inp)  # the API's own starter: signal-with-start

            print(f"{rate:g} starts/s for {seconds:g} s straight to Temporal (baseline) …", flush=True)
            before = cpu_seconds(up.pid)
            sent = await paced(rate, seconds, direct)
            rows = await wait_for_deliveries(
                store,
                select(Delivery.user_id, Delivery.created_at).where(Delivery.user_id.like("direct-%")),
                len(sent),
            )
            print(cpu_report(before, cpu_seconds(up.pid), len(sent)))
            results["direct start → delivery"] = sorted(
                (_ts(created) - sent[user.removeprefix("direct-")]) * 1000 for user, created in rows
            )
    finally:
        stop_up(up, store, log, data)
    for label, values in results.items():
        print(summary(label, values))
    api = results.get("API ingest → delivery")
    if api:
        print(f"target p99 < 250 ms at {rate:g}/s: {'met' if p99(api) < 250 else 'NOT met'} ({p99(api):.0f} ms)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("rate", nargs="?", type=float, default=20.0)
    parser.add_argument("seconds", nargs="?", type=float, default=30.0)
    parser.add_argument("--workers", type=int, default=None, help="worker processes for journeys up")
    parser.add_argument("--only", choices=["api", "direct"], default=None)
    parser.add_argument("--warmup", type=float, default=10.0, help="seconds of unmeasured traffic first")
    args = parser.parse_args()
    asyncio.run(main(args.rate, args.seconds, args.workers, args.only, args.warmup))
