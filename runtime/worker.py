"""``journeys worker``: the composition root that wires the interpreter
(``workflows/``) to the engine activities (``engine/``) on a Temporal worker.

The two layers never import each other; this module is where they meet.

Connects to ``TEMPORAL_ADDRESS``; without one it needs a server started by
``journeys up`` (which starts worker processes itself and hands them its exact
settings on standard input, ``--settings-stdin``). Several worker processes can
share one task queue: Temporal spreads runs across them.

Each process runs two Temporal workers (:func:`build_workers`): the main one
on the task queue (journey runs) and a small one on its broadcast queue
(``engine.temporal.broadcast_task_queue``), so a broadcast's own workflow
tasks never wait behind those of the thousands of runs it starts.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import signal
import sys
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

from temporalio.client import Client
from temporalio.worker import PollerBehaviorSimpleMaximum, Worker

from engine import eventloop, ledger, replays
from engine.activities import JourneyActivities
from engine.broadcast_activities import BroadcastActivities
from engine.channels import build_providers
from engine.settings import Settings
from engine.store import Store
from engine.temporal import TASK_QUEUE, broadcast_task_queue, connect
from workflows.broadcast import AudienceBroadcastWorkflow
from workflows.journey import JourneyWorkflow

log = logging.getLogger("journeys.worker")


def build_worker(
    client: Client,
    activities: Sequence,
    task_queue: str = TASK_QUEUE,
    *,
    max_concurrent_activities: int = 50,
    workflows: Sequence[type] = (),
    workflow_cache: int = 1000,
    workflow_tasks: int = 100,
) -> Worker:
    """A worker running the journey interpreter, any extra ``workflows`` (e.g.
    ``AudienceBroadcastWorkflow``) and the given activities."""
    return Worker(
        client,
        task_queue=task_queue,
        workflows=[JourneyWorkflow, *[w for w in workflows if w is not JourneyWorkflow]],
        activities=list(activities),
        activity_executor=ThreadPoolExecutor(max_workers=max_concurrent_activities),
        max_concurrent_activities=max_concurrent_activities,
        max_cached_workflows=workflow_cache,
        max_concurrent_workflow_tasks=workflow_tasks,
    )


# The broadcast worker's size, per process: a broadcast is one workflow whose
# page activity runs for minutes with up to START_CONCURRENCY starts in flight
# (engine.broadcast_activities), so a few of each is plenty.
BROADCAST_WORKFLOW_TASKS = 4
BROADCAST_WORKFLOW_CACHE = 100
BROADCAST_ACTIVITIES = 4
BROADCAST_POLLS = 2


def build_broadcast_worker(client: Client, activities: Sequence, task_queue: str = TASK_QUEUE) -> Worker:
    """The small worker on ``task_queue``'s broadcast queue: only
    ``AudienceBroadcastWorkflow`` and the ``BroadcastActivities``. The
    workflow schedules its activities without a task queue, so they run on
    the workflow's queue, i.e. here; the runs they start go to ``task_queue``."""
    return Worker(
        client,
        task_queue=broadcast_task_queue(task_queue),
        workflows=[AudienceBroadcastWorkflow],
        activities=list(activities),  # all async: no executor
        max_concurrent_activities=BROADCAST_ACTIVITIES,
        max_cached_workflows=BROADCAST_WORKFLOW_CACHE,
        max_concurrent_workflow_tasks=BROADCAST_WORKFLOW_TASKS,
        workflow_task_poller_behavior=PollerBehaviorSimpleMaximum(maximum=BROADCAST_POLLS),
        activity_task_poller_behavior=PollerBehaviorSimpleMaximum(maximum=BROADCAST_POLLS),
    )


@dataclass
class Workers:
    """The two workers of a worker process, run together: ``async with``
    starts both and shuts both down."""

    main: Worker
    broadcasts: Worker
    _stack: AsyncExitStack = field(default_factory=AsyncExitStack, repr=False)

    async def __aenter__(self) -> Workers:
        async with AsyncExitStack() as stack:
            await stack.enter_async_context(self.main)
            await stack.enter_async_context(self.broadcasts)
            self._stack = stack.pop_all()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> bool | None:
        return await self._stack.__aexit__(exc_type, exc, tb)


def build_workers(
    client: Client,
    journey_activities: Sequence,
    broadcast_activities: Sequence,
    task_queue: str = TASK_QUEUE,
    *,
    max_concurrent_activities: int = 50,
    workflow_cache: int = 1000,
    workflow_tasks: int = 100,
) -> Workers:
    """What every worker process runs (``run_worker``, and the tests that
    run broadcasts): the journey interpreter and activities on ``task_queue``,
    and the broadcasts on their own queue (:func:`build_broadcast_worker`).

    The main worker keeps ``AudienceBroadcastWorkflow`` and the broadcast
    activities registered too: broadcasts started on the main queue before
    it had its own (and fires of schedules not synced since, which still name
    the main queue) run there to the end, their activities with them; the
    store holds their progress either way."""
    main = build_worker(
        client,
        [*journey_activities, *broadcast_activities],
        task_queue,
        max_concurrent_activities=max_concurrent_activities,
        workflows=[AudienceBroadcastWorkflow],
        workflow_cache=workflow_cache,
        workflow_tasks=workflow_tasks,
    )
    return Workers(main, build_broadcast_worker(client, broadcast_activities, task_queue))


def build_activities(settings: Settings, store: Store | None = None) -> JourneyActivities:
    """The engine activities wired to the configured store and channels."""
    store = store or Store(settings.database_url)
    store.migrate()
    return JourneyActivities(store, build_providers(settings.channels), settings)


async def run_worker(settings: Settings, client: Client | None = None, stop: asyncio.Event | None = None) -> None:
    """Run until ``stop`` is set (or the task is cancelled); finishes in-flight
    activities on the way out so a clean shutdown loses nothing."""
    if client is None:
        if not settings.temporal_address:
            raise SystemExit("TEMPORAL_ADDRESS is not set (or use `journeys up`, which starts a server)")
        client = await connect(settings.temporal_address, settings.temporal_namespace)
    activities = build_activities(settings)
    broadcast = BroadcastActivities(activities.store, settings, snapshots=activities)
    worker = build_workers(
        client,
        activities.all(),
        broadcast.all(),
        settings.task_queue,
        workflow_cache=settings.worker_workflow_cache,
        workflow_tasks=settings.worker_workflow_tasks,
    )
    stop = stop or asyncio.Event()
    poller = asyncio.create_task(poll_pending_sends(activities, stop, PENDING_POLL_SECONDS))
    replayer = asyncio.create_task(replay_failed_sends(activities, stop, REPLAY_POLL_SECONDS))
    try:
        async with worker:
            log.info(
                "worker polling task queues %s and %s",
                settings.task_queue,
                broadcast_task_queue(settings.task_queue),
            )
            await stop.wait()
    finally:
        stop.set()
        await poller
        await replayer


PENDING_POLL_SECONDS = 60.0


async def poll_pending_sends(activities: JourneyActivities, stop: asyncio.Event, every: float) -> None:
    """Settle sends a vendor accepted as tasks (WeCom ``add_msg_template`` waits
    for a staff member to confirm): ask the vendor until they are sent or
    failed. Idempotent, so several workers polling at once do no harm."""
    while not stop.is_set():
        try:
            changed = await ledger.poll_pending(activities.store, activities.providers)
            if changed:
                log.info("settled %d pending sends", changed)
        except Exception:  # noqa: BLE001 - a bad round must not stop the worker
            log.exception("polling pending sends failed; will retry")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=every)


REPLAY_POLL_SECONDS = 5.0


async def replay_failed_sends(activities: JourneyActivities, stop: asyncio.Event, every: float) -> None:
    """Send the failed sends an operator asked to replay (``engine.replays``):
    a few seconds after the request, each claimed by one worker at a time."""
    while not stop.is_set():
        try:
            tried = await replays.drain(activities)
            if tried:
                log.info("replayed %d failed sends", tried)
                continue  # more may be waiting: no pause while a backlog drains
        except Exception:  # noqa: BLE001 - a bad round must not stop the worker
            log.exception("replaying failed sends failed; will retry")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=every)


def settings_json(settings: Settings, model: type[Settings] = Settings) -> str:
    """The settings of ``model`` (the engine's by default; the API's for an API
    process, keys included) as JSON *with* secrets, for a child process's
    stdin (never for a file or a log): ``model(**json.loads(...))`` rebuilds them."""

    def reveal(value: Any) -> Any:
        secret = getattr(value, "get_secret_value", None)
        return secret() if callable(secret) else str(value)

    return json.dumps(settings.model_dump(include=set(model.model_fields)), default=reveal)


def _command(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    logging.getLogger("alembic").setLevel(logging.WARNING)
    settings = Settings(**json.loads(sys.stdin.readline())) if args.settings_stdin else Settings()
    if args.settings_stdin:
        logging.getLogger().setLevel(args.log_level)

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError):
                loop.add_signal_handler(sig, stop.set)
        await run_worker(settings, stop=stop)

    eventloop.run(main())
    return 0


def add_child_options(parser: argparse.ArgumentParser, started: str) -> None:
    """The options ``journeys up`` starts a child process with (``api.worker_processes``)."""
    parser.add_argument(
        "--settings-stdin",
        action="store_true",
        help=f"read the settings as one JSON line on standard input (how `journeys up` starts its {started})",
    )
    parser.add_argument("--log-level", default="INFO", help=argparse.SUPPRESS)


def add_subcommands(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("worker", help="run the journey worker against TEMPORAL_ADDRESS")
    add_child_options(parser, "workers")
    parser.set_defaults(func=_command)
