"""Interpreter vs hand-written: N users through the reference journey on one
Temporal dev server, with the real engine activities (SQLite, outbox channels).

Prints journeys/s for both, their ratio, and history events per journey.
Targets (issue 3): throughput ratio >= 0.95, events per journey <= baseline.

    .venv/bin/python bench/runtime_bench.py [users]
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from temporalio.worker import Worker  # noqa: E402

from bench.handwritten import HandwrittenJourney  # noqa: E402
from contracts.runs import JourneyInput, UserEvent  # noqa: E402
from dsl import compile_source  # noqa: E402
from engine import coupons, events, templates  # noqa: E402
from engine.channels.config import ChannelsConfig  # noqa: E402
from engine.settings import Settings  # noqa: E402
from engine.store import Store  # noqa: E402
from engine.temporal import start_dev_server  # noqa: E402
from runtime.worker import build_activities  # noqa: E402
from workflows.journey import JourneyWorkflow  # noqa: E402

SOURCE = """
journey "bench"
  entry api
  reentry always
  send wecom "welcome"
  wait for event order_paid up to 2s:
    on event:
      tag add ordered
    on timeout:
      send sms "nudge"
  wait 1s
  if tag vip:
    coupon "vip_pool"
  else:
    send sms "thanks"
"""
SAMPLE = 20
ROUNDS = 1  # each round runs both sides twice


async def run_batch(client, workflow, journey, users: list[str], prefix: str) -> tuple[float, list[int]]:
    async def one(user: str, answer: bool):
        handle = await client.start_workflow(
            workflow,
            JourneyInput(journey_id=prefix, version=1, hash=journey.content_hash(), user_id=user, ir=journey),
            id=f"{prefix}:{user}",
            task_queue="bench",
        )
        if answer:
            await handle.signal("event", UserEvent(id=f"{prefix}-{user}-paid", name="order_paid"))
        return handle

    started = time.perf_counter()
    handles = await asyncio.gather(*(one(u, i % 2 == 0) for i, u in enumerate(users)))
    await asyncio.gather(*(h.result() for h in handles))
    elapsed = time.perf_counter() - started
    lengths = [len((await h.fetch_history()).events) for h in handles[:SAMPLE]]
    return elapsed, lengths


async def main(n: int) -> None:
    data = Path(tempfile.mkdtemp(prefix="journeys-bench-"))
    settings = Settings(
        database_url=f"sqlite:///{data / 'bench.db'}",
        cap_per_day=None,
        cap_per_week=None,
        channels=ChannelsConfig(mode="outbox"),
    )
    store = Store(settings.database_url)
    store.migrate()
    for name in ("welcome", "nudge", "thanks"):
        templates.upsert_template(store, name, f"{name} {{{{ user.id }}}}")
    coupons.upsert_pool(store, "vip_pool", stock=10 * n)
    users = [f"b{i:05d}" for i in range(n)]
    for i, user in enumerate(users):
        events.link_identities(store, {"wecom_external_userid": f"wx{user}", "phone": f"+86138{i:08d}"}, user_id=user)
        if i % 3 == 0:
            from engine.tags import add_tags

            with store.session() as s:
                add_tags(s, user, ["vip"], source="bench")

    journey = compile_source(SOURCE, "bench.journey")
    env = await start_dev_server()
    try:
        activities = build_activities(settings, store)
        async with Worker(
            env.client,
            task_queue="bench",
            workflows=[JourneyWorkflow, HandwrittenJourney],
            activities=activities.all(),
            max_concurrent_activities=50,
        ):
            # warm-up so neither side pays for first-use costs
            await run_batch(env.client, JourneyWorkflow.run, journey, users[:10], "warm-i")
            await run_batch(env.client, HandwrittenJourney.run, journey, users[:10], "warm-h")
            # Alternate the two sides over several rounds (ABBA…) and keep each
            # side's best, so background load on the machine hurts both alike.
            sides = {"hand-written": HandwrittenJourney.run, "interpreter": JourneyWorkflow.run}
            best: dict[str, tuple[float, float]] = {}
            order = ["hand-written", "interpreter", "interpreter", "hand-written"] * ROUNDS
            for i, label in enumerate(order):
                elapsed, lengths = await run_batch(env.client, sides[label], journey, users, f"{label}-{i}")
                rate = n / elapsed
                if label not in best or rate > best[label][0]:
                    best[label] = (rate, statistics.mean(lengths))
            results = {label: best[label] for label in sides}
    finally:
        await env.shutdown()
    hand, interp = results["hand-written"], results["interpreter"]
    print(f"users: {n}  (half answer order_paid, a third are vip)")
    print(f"{'':14} {'journeys/s':>11} {'events/journey':>15}")
    for label, (rate, events_per) in results.items():
        print(f"{label:14} {rate:11.1f} {events_per:15.1f}")
    print(f"throughput ratio interpreter/hand-written: {interp[0] / hand[0]:.3f} (target >= 0.95)")
    print(f"history events: interpreter {interp[1]:.1f} vs hand-written {hand[1]:.1f} (target <=)")


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 300))
