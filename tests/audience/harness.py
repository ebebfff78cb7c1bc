"""A real engine around a dev server: tmp SQLite store, outbox channels, and
the workers of a worker process (``runtime.worker.build_workers``): journey
runs on ``task_queue``, broadcasts on its broadcast queue."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select
from temporalio.client import Client
from temporalio.worker import Worker

from dsl.ir import AudienceEntry, Journey
from dsl.parser import parse
from engine.activities import JourneyActivities
from engine.broadcast_activities import BroadcastActivities
from engine.channels import build_providers
from engine.channels.config import ChannelsConfig
from engine.channels.outbox import Outbox
from engine.settings import Settings
from engine.store import Store
from engine.store.models import Run
from engine.templates import upsert_template
from engine.temporal import broadcast_task_queue
from runtime.worker import Workers, build_broadcast_worker, build_workers
from tests.audience.support import make_user


@dataclass
class Engine:
    store: Store
    outbox: Outbox
    journey_acts: JourneyActivities
    broadcast_acts: BroadcastActivities
    task_queue: str

    @property
    def broadcast_queue(self) -> str:
        return broadcast_task_queue(self.task_queue)

    def admitted_runs(self, journey_id: str) -> Counter[str]:
        """How many admitted runs each user has in the journey."""
        with self.store.read() as s:
            rows = s.execute(
                select(Run.user_id, func.count())
                .where(Run.journey_id == journey_id, Run.admitted.is_(True))
                .group_by(Run.user_id)
            )
            return Counter({u: int(n) for u, n in rows})

    def runs_total(self, journey_id: str, *, ended: bool = False) -> int:
        with self.store.read() as s:
            stmt = select(func.count()).select_from(Run).where(Run.journey_id == journey_id)
            if ended:
                stmt = stmt.where(Run.ended_at.is_not(None))
            return int(s.execute(stmt).scalar_one())

    def outbox_users(self, journey_id: str) -> Counter[str]:
        return Counter(m.user_id for m in self.outbox.messages() if m.data.get("journey_id") == journey_id)

    async def wait_runs_ended(
        self, journey_id: str, expected: int, timeout: float = 90.0, *, ended: bool = True
    ) -> int:
        """Poll the store until ``expected`` runs of the journey have ended (or
        begun, with ``ended=False``) or the deadline passes; returns the count
        seen last."""
        seen = -1
        for _ in range(int(timeout / 0.1)):
            seen = await asyncio.to_thread(self.runs_total, journey_id, ended=ended)
            if seen >= expected:
                return seen
            await asyncio.sleep(0.1)
        return seen


@asynccontextmanager
async def engine(
    client: Client, store: Store, *, journey_worker: bool = True, **broadcast_options: Any
) -> AsyncIterator[Engine]:
    """The engine with both workers; ``journey_worker=False`` runs only the
    broadcast worker (nobody polls the runs' queue). ``broadcast_options`` go
    to ``BroadcastActivities`` (``runs_ahead=``, ``start_concurrency=``, ...)."""
    outbox = Outbox()
    settings = Settings(database_url=store.url, cap_per_day=None, cap_per_week=None)
    providers = build_providers(ChannelsConfig(mode="outbox"), outbox=outbox)
    journey_acts = JourneyActivities(store, providers, settings)
    broadcast_acts = BroadcastActivities(store, settings, snapshots=journey_acts, **broadcast_options)
    upsert_template(store, "hi", "hello {{ user.id }}")
    task_queue = f"tq-audience-{uuid.uuid4().hex[:8]}"
    if journey_worker:
        worker: Workers | Worker = build_workers(client, journey_acts.all(), broadcast_acts.all(), task_queue)
    else:
        worker = build_broadcast_worker(client, broadcast_acts.all(), task_queue)
    async with worker:
        yield Engine(store, outbox, journey_acts, broadcast_acts, task_queue)


def audience_journey(where: str, *, reentry: str = "once", steps: str = 'send webhook "hi"') -> tuple[str, Journey]:
    """A fresh journey id (Temporal ids are shared by all tests on the server)
    and the IR of a broadcast journey."""
    journey_id = f"bc-{uuid.uuid4().hex[:8]}"
    source = f'journey "{journey_id}"\n  entry audience where {where} every day at 10:00\n  reentry {reentry}\n\n'
    source += "".join(f"  {line}\n" for line in steps.splitlines())
    journey = parse(source)
    assert isinstance(journey.entry, AudienceEntry)
    return journey_id, journey


def population(store: Store, n: int) -> list[str]:
    """``n`` users; VIPs are those with i % 3 != 0, ``blocked`` every tenth.
    Returns the ids ``tag vip and not tag blocked`` selects, sorted."""
    expected = []
    for i in range(n):
        tags = []
        if i % 3:
            tags.append("vip")
        if i % 10 == 0:
            tags.append("blocked")
        make_user(store, f"u{i:04d}", tags)
        if "vip" in tags and "blocked" not in tags:
            expected.append(f"u{i:04d}")
    return expected
