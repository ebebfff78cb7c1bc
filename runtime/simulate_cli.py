"""``journeys simulate`` and ``journeys test``.

``journeys simulate FILE [--user USER.toml|json]… [--events EVENTS.toml|json]
[--cases X.test.toml] [--as-user USER_ID] [--variant SPLIT=NAME]…
[--matrix] [--start 2027-01-04T09:00+08:00] [--for 30d] [--json]`` prints
the timeline of each test user (one per ``--user``, or every case of a test
file, or one default user) and the steps no case reached. ``--as-user``
simulates a copy of a real user instead (``runtime.simulate_as_user``: the
store of ``DATABASE_URL``, only read; its caps and stage rules too). ``--variant`` forces a split (its step
id or the label right before it) in every case; ``--matrix`` runs each case
once per variant of every split.
``journeys test [DIR_OR_FILE…]`` runs journey tests (default ``journeys/``)
and exits 1 when a case fails.

A user file holds a ``runtime.simulate_model.TestUser`` (``id``,
``identities``, ``tags``, ``attributes``, ``timezone``, ``opted_out``,
``first_seen``, ``past_events``, ``recent_sends``) and may add ``entry``
(the entry event's properties); an events file holds ``[[events]]`` (``at``,
``name``, ``properties``) or, in JSON, a list of them.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO

from pydantic import ValidationError
from sqlalchemy.exc import SQLAlchemyError
from temporalio.runtime import LoggingConfig, Runtime, TelemetryConfig, TelemetryFilter

from dsl import JourneyError
from engine.settings import Settings
from runtime.journey_tests import JourneyTestError, format_report, load_test_file, run_tests
from runtime.simulate import simulate
from runtime.simulate_as_user import (
    UnknownUser,
    UserCopy,
    copy_user,
    format_copy,
    open_store,
    read_error,
    world_for,
)
from runtime.simulate_model import MAX_EVENTS, Case, ScriptedEvent, TestUser, World, parse_span
from runtime.simulate_text import format_result

MAX_INPUT_BYTES = 256 * 1024


def _read_data(path: Path) -> Any:
    if path.stat().st_size > MAX_INPUT_BYTES:
        raise ValueError(f"{path}: over {MAX_INPUT_BYTES} bytes")
    text = path.read_text(encoding="utf-8")
    return json.loads(text) if path.suffix == ".json" else tomllib.loads(text)


def _forced(pairs: list[str] | None) -> dict[str, str]:
    forced: dict[str, str] = {}
    for pair in pairs or []:
        split, sep, variant = pair.partition("=")
        if not sep or not split.strip() or not variant.strip():
            raise ValueError(f"--variant {pair!r}: SPLIT=NAME, e.g. split-A-B=B")
        forced[split.strip()] = variant.strip()
    return forced


def _cases(args: argparse.Namespace) -> tuple[list[Case], World, str | None, UserCopy | None]:
    copied: UserCopy | None = None
    if getattr(args, "as_user", None):
        cases, world, start, copied = _real_user_case(args)
    else:
        cases, world, start = _given_cases(args)
    forced = _forced(args.variant)
    if forced:
        cases = [c.model_copy(update={"variants": c.variants | forced}) for c in cases]
    return cases, world, start, copied


def _events(args: argparse.Namespace) -> list[ScriptedEvent]:
    if not args.events:
        return []
    data = _read_data(Path(args.events))
    raw = data.get("events", []) if isinstance(data, dict) else data
    if len(raw) > MAX_EVENTS:
        raise ValueError(f"{args.events}: {len(raw)} events, at most {MAX_EVENTS}")
    return [ScriptedEvent(**e) for e in raw]


def _real_user_case(args: argparse.Namespace) -> tuple[list[Case], World, str | None, UserCopy]:
    """One case: a copy of the real user ``--as-user`` names, read from
    the store the service uses (``DATABASE_URL``), with ``--events``."""
    if args.user or args.cases:
        raise ValueError("--as-user simulates a real user: give it without --user or --cases")
    events = _events(args)
    settings = Settings()
    store = open_store(settings)
    try:
        user, copied = copy_user(store, args.as_user, rules=settings.derived)
    except UnknownUser:
        raise ValueError(f"no user {args.as_user!r} in the store") from None
    except SQLAlchemyError as exc:
        raise ValueError(read_error(settings, exc)) from None
    finally:
        store.dispose()
    return [Case(name=copied.user_id, user=user, events=events)], world_for(settings), None, copied


def _given_cases(args: argparse.Namespace) -> tuple[list[Case], World, str | None]:
    if args.cases:
        test = load_test_file(Path(args.cases))
        return [c.case for c in test.cases], test.world, test.start
    events = _events(args)
    users = args.user or []
    if not users:
        return [Case(name="default user", events=events)], World(), None
    cases = []
    for path in users:
        data = dict(_read_data(Path(path)))
        entry = data.pop("entry", {})
        cases.append(Case(name=Path(path).stem, user=TestUser(**data), entry=entry, events=events))
    return cases, World(), None


def quiet_sdk_logs() -> None:
    """The SDK core writes its warnings to standard output (one per worker
    about the test server's version), which would break ``--json`` and
    bury the timeline: this process's runtime logs errors only."""
    logging = LoggingConfig(filter=TelemetryFilter(core_level="ERROR", other_level="ERROR"))
    Runtime.set_default(Runtime(telemetry=TelemetryConfig(logging=logging)), error_if_already_set=False)


def cmd_simulate(args: argparse.Namespace, out: TextIO | None = None) -> int:
    out = out or sys.stdout
    try:
        cases, world, start, copied = _cases(args)
        source = Path(args.file).read_text(encoding="utf-8")
        horizon = parse_span(args.horizon)
        result = asyncio.run(
            simulate(
                source,
                cases,
                world=world,
                start=args.start or start,
                horizon=horizon,
                name=args.file,
                matrix=args.matrix,
            )
        )
    except JourneyError as exc:
        out.write(str(exc) + "\n")
        return 1
    except (ValueError, ValidationError, JourneyTestError, OSError, tomllib.TOMLDecodeError) as exc:
        out.write(f"journeys simulate: {exc}\n")
        return 2
    if args.json and copied is None:
        out.write(result.model_dump_json(indent=2) + "\n")
    elif args.json:
        data = {**result.model_dump(mode="json"), "as_user": copied.model_dump(mode="json")}
        out.write(json.dumps(data, indent=2, ensure_ascii=False) + "\n")
    else:
        out.write("".join(line + "\n" for line in format_copy(copied)) if copied else "")
        out.write(format_result(result))
    return 0


def cmd_test(args: argparse.Namespace, out: TextIO | None = None) -> int:
    out = out or sys.stdout
    try:
        reports = asyncio.run(run_tests(args.paths or ["journeys"]))
    except JourneyTestError as exc:
        out.write(f"journeys test: {exc}\n")
        return 2
    for report in reports:
        out.write(format_report(report))
    cases = [c for r in reports for c in r.cases]
    failed = sum(not c.passed for c in cases) + sum(r.error is not None for r in reports)
    out.write(f"{len(cases) - sum(not c.passed for c in cases)} passed, {failed} failed in {len(reports)} file(s)\n")
    return 1 if failed or not reports else 0


def _exiting(command: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """The command, then the process ends at once with its code. After a
    time-skipping server ran, the SDK's native threads may still call into
    Python while the interpreter finalizes (``PyGILState_Release`` aborts:
    exit 134 or 139 in about half the runs here), which would turn a
    passing ``journeys test`` into a failure."""

    def run(args: argparse.Namespace) -> int:
        quiet_sdk_logs()
        code = command(args)
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)

    return run


exiting = _exiting  # for the other commands that run journey tests (``journeys deploy``)


def add_subcommands(subparsers: argparse._SubParsersAction) -> None:
    sim = subparsers.add_parser("simulate", help="run a journey for test users on a time-skipping server")
    sim.add_argument("file", help="the .journey file")
    sim.add_argument("--user", action="append", help="a test user (TOML or JSON); repeat for several")
    sim.add_argument("--events", help="scripted events (TOML [[events]] or a JSON list)")
    sim.add_argument("--cases", help="simulate every case of a journey test file instead")
    sim.add_argument(
        "--as-user",
        metavar="USER_ID",
        help="simulate a copy of this real user (read, never written, from DATABASE_URL's store)",
    )
    sim.add_argument(
        "--variant", action="append", metavar="SPLIT=NAME", help="force a split's variant in every case; repeat"
    )
    sim.add_argument("--matrix", action="store_true", help="run each case once per variant of every split")
    sim.add_argument(
        "--start",
        help="when the run starts, with its offset (default: next Monday 09:00, or an audience entry's next broadcast)",
    )
    sim.add_argument("--for", dest="horizon", default="30d", help="how long to simulate (default 30d)")
    sim.add_argument("--json", action="store_true", help="the whole result as JSON")
    sim.set_defaults(func=_exiting(cmd_simulate))
    test = subparsers.add_parser("test", help="run journey tests (*.test.toml); exit 1 on a failure")
    test.add_argument("paths", nargs="*", help="test files or folders (default: journeys/)")
    test.set_defaults(func=_exiting(cmd_test))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="journeys")
    add_subcommands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
