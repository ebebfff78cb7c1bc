"""Simulating the 30-day reference journey (``journeys/01``) with scripted
events, beside the bare time-skipping server's 30-day sleep in the same run.

Prints the median of ``rounds`` simulations of one case, on a server already
started (the case's own work: a store copied and seeded, a worker, the run
with its events, the read-back) and including the server's start (what one
``journeys simulate`` costs past Python's imports), then the same for all
cases of the journey's test file in one call. Target (issue 14): the
30-day reference journey with scripted events under 1 s.

    .venv/bin/python bench/simulate_bench.py [rounds]
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import time
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from engine.temporal import start_time_skipping  # noqa: E402
from runtime.journey_tests import load_test_file  # noqa: E402
from runtime.simulate import simulate  # noqa: E402
from runtime.simulate_model import Case, ScriptedEvent, TestUser  # noqa: E402

JOURNEYS = Path(__file__).resolve().parent.parent / "journeys"
SOURCE = (JOURNEYS / "01_new_user_first_order.journey").read_text(encoding="utf-8")
THIRTY_DAYS = timedelta(days=30)

CASE = Case(
    name="orders twice, installs the app",
    user=TestUser(identities={"wecom_external_userid": "wm-1", "app_user_id": "app-1"}, tags=["visited"]),
    entry={"channel": "wecom_group"},
    events=[
        ScriptedEvent(at="+1d2h", name="order_paid", properties={"amount": 120}),
        ScriptedEvent(at="+9d", name="app_installed"),
        ScriptedEvent(at="+12d", name="order_paid", properties={"amount": 80}),
    ],
)


async def _timed(coro) -> float:
    began = time.perf_counter()
    await coro
    return time.perf_counter() - began


async def _bare_sleep() -> tuple[float, float, float]:
    """(start, a 30-day sleep, shutdown) of the bare server."""
    began = time.perf_counter()
    env = await start_time_skipping()
    started = time.perf_counter() - began
    try:
        slept = await _timed(env.sleep(THIRTY_DAYS))
    finally:
        stopped = await _timed(env.shutdown())
    return started, slept, stopped


async def _with_own_server(cases: list[Case], world=None) -> float:
    return await _timed(simulate(SOURCE, cases, world=world, horizon=THIRTY_DAYS))


async def main(rounds: int) -> None:
    test = load_test_file(JOURNEYS / "01_new_user_first_order.test.toml")
    all_cases = [c.case for c in test.cases]
    await _with_own_server([CASE])  # warm-up: imports, the migrated schema every store copies
    bare = [await _bare_sleep() for _ in range(rounds)]
    env = await start_time_skipping()
    try:
        on_env = [await _timed(simulate(SOURCE, [CASE], env=env, horizon=THIRTY_DAYS)) for _ in range(rounds)]
        all_on_env = [
            await _timed(simulate(SOURCE, all_cases, world=test.world, env=env, horizon=THIRTY_DAYS))
            for _ in range(rounds)
        ]
    finally:
        await env.shutdown()
    own = [await _with_own_server([CASE]) for _ in range(rounds)]
    all_own = [await _with_own_server(all_cases, test.world) for _ in range(rounds)]

    def ms(values: list[float]) -> str:
        return f"{statistics.median(values) * 1000:7.0f} ms"

    print(f"median of {rounds} rounds, 30 days of journeys/01 with 3 scripted events")
    print(f"  bare time-skipping server: start          {ms([b[0] for b in bare])}")
    print(f"  bare time-skipping server: 30-day sleep   {ms([b[1] for b in bare])}")
    print(f"  bare time-skipping server: shutdown       {ms([b[2] for b in bare])}")
    print(f"  simulate 1 case, server already running   {ms(on_env)}")
    print(f"  simulate 1 case, with its own server      {ms(own)}   (start to shutdown; target < 1000 ms)")
    print(f"  simulate {len(all_cases)} cases (test file), server running  {ms(all_on_env)}")
    print(f"  simulate {len(all_cases)} cases (test file), own server     {ms(all_own)}")


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 5))
