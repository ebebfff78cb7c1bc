"""Crash test: kill -9 the worker process at random moments while a few hundred
journeys run, restart it, and check every user got each message and coupon
exactly once — in the ledger and at the receiving HTTP server."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import subprocess
import sys
from pathlib import Path

from sqlalchemy import func, select

from contracts.runs import JourneyInput, workflow_id
from dsl import compile_source
from engine import coupons, templates
from engine.store import Store
from engine.store.models import CouponGrant, Delivery
from engine.temporal import TASK_QUEUE, start_dev_server
from tests.integration.receiver import Receiver
from workflows.journey import JourneyWorkflow

USERS = int(os.environ.get("CRASH_TEST_USERS", "200"))
KILLS = 4
SOURCE = """
journey "crash"
  entry api
  reentry once
  send webhook "first"
  coupon "crash_pool"
  send webhook "second"
  wait 2s
  send webhook "third"
"""


def _spawn_worker(env: dict[str, str], log: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "api.cli", "worker"],
        env=env,
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def worker_environment(db_url: str, temporal_address: str, webhook_url: str) -> dict[str, str]:
    """What a worker process needs to run journeys against this store,
    server and (webhook) vendor."""
    return {
        **os.environ,
        "DATABASE_URL": db_url,
        "TEMPORAL_ADDRESS": temporal_address,
        "JOURNEYS_CHANNELS__WEBHOOK__URL": webhook_url,
        "JOURNEYS_CHANNELS__WEBHOOK__SECRET": "s3cret",
    }


def _delivered(store: Store) -> int:
    with store.read() as s:
        return s.scalar(select(func.count()).select_from(Delivery)) or 0


async def test_kill_dash_nine_never_loses_or_duplicates(tmp_path: Path) -> None:
    journey = compile_source(SOURCE, "crash.journey")
    db_url = f"sqlite:///{tmp_path / 'crash.db'}"
    store = Store(db_url)
    store.migrate()
    for name in ("first", "second", "third"):
        templates.upsert_template(store, name, f"{name} for {{{{ user.id }}}}")
    coupons.upsert_pool(store, "crash_pool", stock=USERS * 2)

    env = await start_dev_server()
    rng = random.Random(7)
    log = tmp_path / "worker.log"
    try:
        with Receiver() as receiver:
            worker_env = worker_environment(db_url, env.client.service_client.config.target_host, receiver.url)
            worker = _spawn_worker(worker_env, log)
            handles = [
                await env.client.start_workflow(
                    JourneyWorkflow.run,
                    JourneyInput(
                        journey_id="crash", version=1, hash=journey.content_hash(), user_id=f"u{i:04d}", ir=journey
                    ),
                    id=workflow_id("crash", f"u{i:04d}"),
                    task_queue=TASK_QUEUE,
                )
                for i in range(USERS)
            ]
            kills, progress = 0, []
            for _ in range(KILLS):
                # Kill while the worker is busy: once it has recorded a random
                # number of further deliveries since it (re)started.
                target = _delivered(store) + rng.randint(5, USERS // 2)
                while _delivered(store) < target and _delivered(store) < USERS * 3:
                    await asyncio.sleep(0.05)
                progress.append(_delivered(store))
                os.killpg(worker.pid, signal.SIGKILL)
                worker.wait()
                kills += 1
                worker = _spawn_worker(worker_env, log)
            results = await asyncio.wait_for(asyncio.gather(*(h.result() for h in handles)), timeout=600)
            os.killpg(worker.pid, signal.SIGTERM)
            worker.wait(timeout=30)
            wire = receiver.keys()
    finally:
        await env.shutdown()

    assert kills == KILLS
    assert results == ["completed"] * USERS, log.read_text()[-3000:]
    with store.read() as s:
        sent = s.execute(
            select(Delivery.user_id, Delivery.template, func.count())
            .where(Delivery.status == "sent")
            .group_by(Delivery.user_id, Delivery.template)
        ).all()
        grants = s.execute(select(CouponGrant.user_id, func.count()).group_by(CouponGrant.user_id)).all()
        ledger_keys = set(s.scalars(select(Delivery.idempotency_key).where(Delivery.status == "sent")))
    assert len(sent) == USERS * 3 and all(count == 1 for *_, count in sent)
    assert len(grants) == USERS and all(count == 1 for _, count in grants)
    # Every message reached the vendor under exactly one key, the ledger's; a
    # kill between the POST and the ledger write re-sends with the SAME key
    # (the vendor de-duplicates it), never with a new one.
    assert set(wire) == ledger_keys
    redelivered = sum(count - 1 for count in wire.values())
    print(
        f"\ncrash test: {USERS} users, {kills} kills at deliveries {progress}, "
        f"{len(wire)} messages, {redelivered} same-key redeliveries"
    )
    assert progress[-1] < USERS * 3, "every kill came after the work was done: the test proved nothing"
