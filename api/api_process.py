"""``journeys api``: one API process on a port it may share with others.

``journeys up --api-processes N`` starts N of these (``api.worker_processes``
supervises them as it does the workers): each binds its own listening socket
with ``SO_REUSEPORT`` on the same host and port, so the kernel spreads new
connections over the live ones and a process that dies only takes the
connections it held (its siblings keep answering while ``up`` starts it
again). Why not uvicorn's own ``--workers``: it needs an import string and
would rebuild the settings from the environment, while ``up`` hands its
children the exact settings (the generated keys, the outbox path, the dev
server's address) on standard input, so nothing secret is on disk or in ``ps``,
and guards each child with ``api.child_guard``.

Each process is a whole API: its own Temporal client and database pool, its
own background delivery of ingested events and its own sweeps (undispatched
events and run signals, stored callbacks). Running those twice is safe
because every delivery is idempotent: a run drops event ids it has seen, a
start is once per (journey, user, event), a run signal carries a stable id
(``engine.dispatch``, ``engine.run_signals``). What stays per process: the
``/metrics`` counters, the progress of a stop that fell back to cancelling
runs one by one (``engine.stopping``; batch stops live in Temporal), and the
order of one user's deliveries (kept within a process, not across two).
"""

from __future__ import annotations

import argparse
import json
import logging
import socket
import sys

import uvicorn

from api.settings import ApiSettings
from engine import eventloop
from runtime.worker import add_child_options

log = logging.getLogger("journeys.api")

BACKLOG = 2048  # uvicorn's default


def shared_socket(host: str, port: int) -> socket.socket:
    """A listening socket on ``host:port`` that other processes may bind too."""
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    sock.listen(BACKLOG)
    return sock


async def serve_api(settings: ApiSettings, host: str, port: int) -> None:
    """Serve until SIGTERM/SIGINT (uvicorn's own handlers: drain, then the
    app's shutdown)."""
    from api.app import create_app

    sock = shared_socket(host, port)
    server = uvicorn.Server(uvicorn.Config(create_app(settings), log_level="warning", lifespan="on"))
    log.info("API process listening on %s:%d", host, port)
    await server.serve(sockets=[sock])


def _command(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    logging.getLogger("alembic").setLevel(logging.WARNING)
    settings = ApiSettings(**json.loads(sys.stdin.readline())) if args.settings_stdin else ApiSettings()
    eventloop.run(serve_api(settings, args.host, args.port))
    return 0


def add_subcommands(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "api", help="run one API process (several may share --port: `journeys up --api-processes N` starts them)"
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    # --log-level is accepted like the worker's; the settings' own ``log_level`` sets the API's logging
    add_child_options(parser, "API processes")
    parser.set_defaults(func=_command)
