"""A store, the real engine activities and the dispatcher on one Temporal
test server, with journeys deployed from ``.journey`` text: what the tests
of merges, live tag changes and the event timeline script events against."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import select
from temporalio.client import Client, WorkflowHandle
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from contracts.runs import workflow_id
from dsl import compile_source
from engine import catalog, templates
from engine.channels.config import ChannelsConfig
from engine.dispatch import Dispatcher, Outcome
from engine.journey_cache import JourneyCache
from engine.settings import Settings
from engine.store import Store
from engine.store.models import Delivery, Run, StepRecord
from engine.temporal import start_time_skipping
from runtime.simulate import register_search_attributes
from runtime.worker import build_activities, build_worker
from workflows.journey import JourneyWorkflow


async def time_skipping() -> WorkflowEnvironment:
    """The test server with the journey search attributes (every start sets them)."""
    env = await start_time_skipping()
    await register_search_attributes(env.client)
    return env


@dataclass
class World:
    env: WorkflowEnvironment
    client: Client
    store: Store
    settings: Settings
    dispatcher: Dispatcher

    @classmethod
    def make(cls, env: WorkflowEnvironment, tmp_path: Path, task_queue: str, *template_names: str) -> World:
        settings = Settings(
            database_url=f"sqlite:///{tmp_path / 'live.db'}",
            channels=ChannelsConfig(mode="outbox"),
            task_queue=task_queue,
            cap_per_day=100,
            cap_per_week=100,
        )
        store = Store(settings.database_url)
        store.migrate()
        for name in template_names:
            templates.upsert_template(store, name, name)
        return cls(env, env.client, store, settings, Dispatcher(store, settings, JourneyCache(store)))

    def deploy(self, journey_id: str, source: str) -> None:
        ir = compile_source(source)
        catalog.publish(
            self.store,
            journey_id,
            name=ir.name,
            source=source,
            ir=ir.model_dump(mode="json"),
            hash=ir.content_hash(),
        )

    def worker(self) -> Worker:
        return build_worker(self.client, build_activities(self.settings, self.store).all(), self.settings.task_queue)

    async def track(self, event_id: str, name: str, identifiers: Iterable[tuple[str, str]], **props: object) -> Outcome:
        """What ``/v1/track`` does, at the server's time (the runs' clock,
        which the test server moves ahead of the wall clock), with the
        dispatched mark written now."""
        outcome = await self.dispatcher.ingest(
            self.client,
            event_id=event_id,
            name=name,
            identifiers=list(identifiers),
            properties=dict(props),
            occurred_at=await self.env.get_current_time(),
        )
        await self.dispatcher.flush_marks()
        return outcome

    def handle(self, journey_id: str, user_id: str) -> WorkflowHandle:
        return self.client.get_workflow_handle(workflow_id(journey_id, user_id))

    async def result(self, journey_id: str, user_id: str) -> str:
        """The run's result, the server skipping time meanwhile (it does so
        by itself only for handles its client started)."""
        async with self.env.time_skipping_unlocked():
            return await self.handle(journey_id, user_id).result()

    async def waiting_at(self, journey_id: str, user_id: str, node: str) -> None:
        handle = self.handle(journey_id, user_id)
        for _ in range(500):
            try:
                status = await handle.query(JourneyWorkflow.status)
            except Exception:  # noqa: BLE001 - not started yet
                status = None
            if status is not None and status.waiting == node:
                return
            await asyncio.sleep(0.02)
        raise AssertionError(f"{journey_id} for {user_id} never waited at {node}")

    def sent(self, journey_id: str) -> list[Delivery]:
        with self.store.read() as s:
            q = select(Delivery).where(Delivery.journey_id == journey_id).order_by(Delivery.created_at)
            return list(s.scalars(q))

    def runs(self, journey_id: str) -> list[Run]:
        with self.store.read() as s:
            return list(s.scalars(select(Run).where(Run.journey_id == journey_id).order_by(Run.id)))

    def steps(self, journey_id: str) -> list[StepRecord]:
        with self.store.read() as s:
            q = select(StepRecord).where(StepRecord.journey_id == journey_id).order_by(StepRecord.at, StepRecord.seq)
            return list(s.scalars(q))
