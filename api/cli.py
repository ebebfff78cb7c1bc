"""The ``journeys`` command: a plain argparse dispatcher.

Each area adds its subcommands with ``register``: a function that receives
the subparsers object and calls ``add_parser`` on it, setting
``func(args) -> int`` as the default. The language tools (``check``, ``fmt``,
``graph``) come from ``dsl.cli``; the worker and the simulator (``worker``, ``simulate``, ``test``) come
from ``runtime``, and so do ``deploy`` and ``pull`` (clients of a running API); the service adds ``up`` and ``api`` (one API process)…
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from dsl import Profiles

Registrar = Callable[[argparse._SubParsersAction], None]

_REGISTRARS: list[Registrar] = []


def register(registrar: Registrar) -> Registrar:
    """Add a group of subcommands (usable as a decorator)."""
    _REGISTRARS.append(registrar)
    return registrar


def _dsl_commands(subparsers: argparse._SubParsersAction) -> None:
    from dsl.cli import add_subcommands

    add_subcommands(subparsers, _service_profiles)


def _service_profiles() -> Profiles:
    """The stage/RFM pairs under the rules the service would run with (its
    ``JOURNEYS_DERIVED__*`` settings), for ``journeys check``'s W309."""
    from engine.derived import profiles
    from engine.settings import Settings

    return profiles(Settings().derived)


register(_dsl_commands)


def _worker_commands(subparsers: argparse._SubParsersAction) -> None:
    from runtime.worker import add_subcommands

    add_subcommands(subparsers)


register(_worker_commands)


def _simulate_commands(subparsers: argparse._SubParsersAction) -> None:
    from runtime.simulate_cli import add_subcommands

    add_subcommands(subparsers)


register(_simulate_commands)


def _remote_commands(subparsers: argparse._SubParsersAction) -> None:
    from runtime.remote_cli import add_subcommands

    add_subcommands(subparsers)


register(_remote_commands)


def _repair_commands(subparsers: argparse._SubParsersAction) -> None:
    from engine.repair import add_subcommands
    from engine.repair_spans import add_subcommands as add_spans

    add_subcommands(subparsers)
    add_spans(subparsers)


register(_repair_commands)


def _service_commands(subparsers: argparse._SubParsersAction) -> None:
    from api.api_process import add_subcommands as add_api
    from api.up import add_subcommands

    add_subcommands(subparsers)
    add_api(subparsers)


register(_service_commands)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="journeys", description="Low-code customer journeys for the private domain.")
    subparsers = parser.add_subparsers(dest="command", required=True)
    for registrar in _REGISTRARS:
        registrar(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
