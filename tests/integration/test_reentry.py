"""Re-entry rules on a real dev server with the real engine: "once" and
cool-downs are enforced from the store, so they hold even after Temporal has
forgotten the closed runs."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest_asyncio
from sqlalchemy import select

from contracts.runs import JourneyInput, workflow_id
from dsl import compile_source
from engine import templates
from engine.channels.config import ChannelsConfig
from engine.settings import Settings
from engine.store import Store
from engine.store.models import Delivery
from engine.temporal import start_dev_server
from runtime.worker import build_activities, build_worker
from workflows.journey import JourneyWorkflow

TQ = "tq-reentry"


@pytest_asyncio.fixture(scope="module")
async def dev_env():
    env = await start_dev_server()
    try:
        yield env
    finally:
        await env.shutdown()


def _journey(rule: str):
    return compile_source(f'journey "re-{rule}"\n  entry api\n  reentry {rule}\n  send webhook "hi"\n')


async def _enter(client, journey, journey_id: str, user: str) -> str:
    handle = await client.start_workflow(
        JourneyWorkflow.run,
        JourneyInput(journey_id=journey_id, version=1, hash=journey.content_hash(), user_id=user, ir=journey),
        id=workflow_id(journey_id, user),
        task_queue=TQ,
    )
    return await handle.result()


async def test_reentry_once_after_and_always(dev_env, tmp_path: Path) -> None:
    settings = Settings(database_url=f"sqlite:///{tmp_path / 'r.db'}", channels=ChannelsConfig(mode="outbox"))
    store = Store(settings.database_url)
    store.migrate()
    templates.upsert_template(store, "hi", "hi")
    activities = build_activities(settings, store)
    once, cooldown, always = _journey("once"), _journey("after 2s"), _journey("always")
    async with build_worker(dev_env.client, activities.all(), TQ):
        assert await _enter(dev_env.client, once, "once", "u") == "completed"
        assert await _enter(dev_env.client, once, "once", "u") == "refused"
        assert await _enter(dev_env.client, once, "once", "other") == "completed"

        assert await _enter(dev_env.client, cooldown, "cool", "u") == "completed"
        assert await _enter(dev_env.client, cooldown, "cool", "u") == "refused"
        await asyncio.sleep(2.5)
        assert await _enter(dev_env.client, cooldown, "cool", "u") == "completed"

        for _ in range(3):
            assert await _enter(dev_env.client, always, "always", "u") == "completed"
    with store.read() as s:
        sends = s.execute(select(Delivery.journey_id, Delivery.user_id).where(Delivery.status == "sent")).all()
    per = {(j, u): sum(1 for x in sends if x == (j, u)) for j, u in set(sends)}
    assert per == {("once", "u"): 1, ("once", "other"): 1, ("cool", "u"): 2, ("always", "u"): 3}
