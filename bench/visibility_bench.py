"""Who waits where, at 100k runs: Temporal visibility's count per waiting
node, as the stats call and the diagram's badges ask it
(``engine.node_numbers.live_waiting``), against the bare count in the same
run (``engine.visibility.waiting_counts``, what every stats call did before
slow counts were kept).

Starts a Temporal dev server (``engine.temporal.start_dev_server``, its
SQLite visibility, as ``journeys up`` runs it) and starts N workflows with
the search attributes a waiting run of ``bench-waiting``'s journey carries
(journey, version, user, the step it waits at) on a task queue nobody
polls: visibility holds N running runs waiting at the node without a
worker spending an hour beginning them (``bench/waiting_bench.py`` does
that, ~21 runs/s here). At each of ``--at`` sizes it prints:

- one visibility count (the wait node), p50/p99 over ``--calls`` calls;
- every node a run of the journey can wait at, counted on each call: what
  the stats call did before (three counts for this journey);
- ``live_waiting`` as the stats call asks it now: given the store's counts
  (runs waited at the wait node only), it counts that node alone, through
  the count cache: the first two calls (a count is kept once two in a row
  were slow), then p50/p99 over ``--calls``, and the age the answer says
  its numbers have.

    .venv/bin/python bench/visibility_bench.py [--runs 100000] [--at 1000,10000,100000] [--calls 30]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from temporalio.common import SearchAttributePair, TypedSearchAttributes  # noqa: E402

from bench.waiting_bench import NODE, SOURCE, load, percentiles  # noqa: E402
from contracts import names  # noqa: E402
from contracts import search_attributes as sa  # noqa: E402
from dsl import compile_source  # noqa: E402
from engine import count_cache  # noqa: E402
from engine.node_numbers import live_waiting, waiting_age, waiting_nodes  # noqa: E402
from engine.stats import NodeStats  # noqa: E402
from engine.temporal import start_dev_server  # noqa: E402
from engine.visibility import waiting_counts  # noqa: E402

JOURNEY = "bench-waiting"
QUEUE = "bench-visibility-unpolled"


async def start_waiting(client, first: int, last: int, concurrency: int) -> None:  # noqa: ANN001
    """Workflows ``first``..``last - 1`` with a waiting run's search attributes."""
    gate = asyncio.Semaphore(concurrency)

    async def one(i: int) -> None:
        user = f"u{i:07d}"
        attributes = TypedSearchAttributes(
            [
                SearchAttributePair(sa.JOURNEY_ID, JOURNEY),
                SearchAttributePair(sa.JOURNEY_VERSION, 1),
                SearchAttributePair(sa.JOURNEY_USER, user),
                SearchAttributePair(sa.JOURNEY_STEP, NODE),
            ]
        )
        async with gate:
            await client.start_workflow(
                names.JOURNEY_WORKFLOW, id=f"journey:{JOURNEY}:{user}", task_queue=QUEUE, search_attributes=attributes
            )

    await asyncio.gather(*(one(i) for i in range(first, last)))


async def until_counted(client, expected: int, timeout: float = 600) -> None:  # noqa: ANN001
    """Visibility lags the starts: wait until it counts them all."""
    deadline = time.monotonic() + timeout
    while (await waiting_counts(client, JOURNEY, [NODE])).get(NODE, 0) < expected:
        if time.monotonic() > deadline:
            raise SystemExit(f"visibility did not reach {expected} in {timeout:.0f} s")
        await asyncio.sleep(1)


async def timed(calls: int, call) -> list[float]:  # noqa: ANN001
    out = []
    for _ in range(calls):
        t0 = time.perf_counter()
        await call()
        out.append((time.perf_counter() - t0) * 1000)
    return out


def line(label: str, values: list[float]) -> str:
    p50, p99 = percentiles(values)
    return f"    {label}: p50 {p50:.0f} ms, p99 {p99:.0f} ms over {len(values)} calls"


async def measure(client, ir, size: int, calls: int) -> None:  # noqa: ANN001
    count_cache.COUNTS = count_cache.CountCache()  # each size starts cold
    import engine.node_numbers as node_numbers

    node_numbers.COUNTS = count_cache.COUNTS
    every = waiting_nodes(ir)
    print(f"  {size} runs waiting at {NODE!r} {load()}", flush=True)
    print(line("one count (the wait node)", await timed(calls, lambda: waiting_counts(client, JOURNEY, [NODE]))))
    print(
        line(
            f"every node a run can wait at ({len(every)}), counted each call as stats did",
            await timed(calls, lambda: waiting_counts(client, JOURNEY, every)),
        ),
        flush=True,
    )
    # The store saw runs wait at the wait node only (its counts fresh: a journey this size counts them each call).
    stored = {NODE: NodeStats(node_id=NODE, entered=size, waiting=size)}
    first = await timed(2, lambda: live_waiting(client, JOURNEY, ir, None, stored))
    kept = await timed(calls, lambda: live_waiting(client, JOURNEY, ir, None, stored))
    counted, _ = await live_waiting(client, JOURNEY, ir, None, stored)
    age = waiting_age(client, JOURNEY, ir, None, stored)
    shown = "counted for each answer" if age is None else f"kept, {age:.1f} s old"
    print(
        f"    live_waiting with the store's counts: first two calls {first[0]:.0f} / {first[1]:.0f} ms;"
        f" then{line('', kept)[5:]}; answer {counted.get(NODE) if counted else None} ({shown})",
        flush=True,
    )


async def main(args: argparse.Namespace) -> None:
    sizes = sorted({int(s) for s in args.at.split(",") if 0 < int(s) < args.runs} | {args.runs})
    ir = compile_source(SOURCE)
    with tempfile.TemporaryDirectory(prefix="visibility-bench-") as tmp:
        env = await start_dev_server(os.path.join(tmp, "temporal.db"))
        try:
            client = env.client
            started = 0
            for size in sizes:
                t0 = time.monotonic()
                await start_waiting(client, started, size, args.concurrency)
                took = time.monotonic() - t0
                print(f"started {size - started} more ({(size - started) / took:.0f}/s) {load()}", flush=True)
                started = size
                await until_counted(client, size)
                await measure(client, ir, size, args.calls)
        finally:
            await env.shutdown()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=100_000)
    parser.add_argument("--at", default="1000,10000", help="sizes measured on the way (comma separated)")
    parser.add_argument("--calls", type=int, default=30)
    parser.add_argument("--concurrency", type=int, default=64)
    asyncio.run(main(parser.parse_args()))
