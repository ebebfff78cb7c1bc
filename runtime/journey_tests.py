"""Journey tests: cases beside a journey, simulated (``runtime.simulate``) and
held to expectations in words (``runtime.journey_expect``).

A test file is TOML named after its journey, ``X.test.toml`` beside
``X.journey``::

    # journeys/01_new_user_first_order.test.toml
    journey = "01_new_user_first_order.journey"   # optional: the same name without .test.toml
    for = "30d"                                   # optional: how long to run (at most 400d; default 30d)
    start = "2027-01-04T09:00+08:00"              # optional: default the next Monday 09:00 in the
                                                  # journey's zone, or an audience entry's next broadcast
                                                  # (it must lie ahead: the clock only moves forward,
                                                  # so a fixed date is a test that expires)

    [templates.welcome_coupon]                    # optional: templates not given send their own name
    body = "欢迎！新人券 {{ coupon.code }}"
    [pools.new_user_10]                           # optional: pools not given hold 1000 coupons
    stock = 0
    [caps]                                        # optional: the global caps (default 2 a day, 5 a week)
    per_day = 2
    per_week = 5

    [[case]]
    name = "visited, then orders twice"
    expect = [
      "sends wecom welcome_coupon within 1m",
      "no sms",
      "coupon second_order_15 issued",
      "takes on event at wait-event-order_paid",
      "at most 2 messages in any 24h",
    ]
    entry = { channel = "wecom_group" }           # the entry event's properties (entry event journeys)
    pools = { new_user_10 = 0 }                   # optional: this case's stock
    variants = { "split-A-B" = "B", guides = "A" } # optional: force splits (step id, or the name
                                                  # of a label right before the split) to a variant
    [case.user]                                   # optional: everything has a default
    id = "u1"
    identities = { wecom_external_userid = "wm-1", phone = "13800001111", app_user_id = "app-1" }
    tags = ["visited"]
    attributes = { name = "小王", term_start = "2027-02-20" }
    timezone = "Asia/Shanghai"
    opted_out = ["sms"]
    first_seen = "-40d"                           # the lifecycle stage reads it
    past_events = [{ name = "order_paid", at = "-10d", properties = { amount = 120 } }]
    recent_sends = [{ channel = "wecom", at = "-2h" }]   # other journeys' sends, for the global cap
    [[case.events]]
    at = "+1d2h"                                  # or a date-time with its offset
    name = "order_paid"
    properties = { amount = 120 }

The words of ``expect`` are listed in ``runtime/journey_expect.py``.
A split not forced draws its variant at random (``workflow.random()``, which
a test cannot seed): force it in ``variants`` to test what one variant
does, or expect only what holds for every variant. A split or variant the
journey does not have fails the file before anything runs, naming the case
and the splits there are.

Bounds, each reported with the file and the case: a file of at most 256 KB,
64 cases, 200 events and 100 expectations a case, a horizon of 400 days.
"""

from __future__ import annotations

import tomllib
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from temporalio.testing import WorkflowEnvironment

from dsl import JourneyError, compile_source
from engine.temporal import start_time_skipping
from runtime.journey_expect import Expectation, ExpectationError, parse_expectation
from runtime.simulate import simulate
from runtime.simulate_model import (
    DEFAULT_HORIZON,
    MAX_CASES,
    MAX_HORIZON,
    Case,
    CaseResult,
    Pool,
    SimulationResult,
    Template,
    World,
    parse_span,
)
from runtime.simulate_text import format_case

SUFFIX = ".test.toml"
MAX_FILE_BYTES = 256 * 1024
MAX_EXPECTATIONS = 100
_TOP_KEYS = {"journey", "for", "start", "templates", "pools", "caps", "case"}


class JourneyTestError(ValueError):
    """A test file that cannot be run; the message names the file (and case)."""


@dataclass
class TestCase:
    __test__ = False  # not a pytest class

    case: Case
    expectations: list[Expectation]


@dataclass
class TestFile:
    __test__ = False

    path: Path
    journey_path: Path
    source: str
    world: World
    cases: list[TestCase]
    horizon: timedelta = DEFAULT_HORIZON
    start: str | None = None


@dataclass
class CaseReport:
    name: str
    failures: list[tuple[str, str]]  # (expectation, what was found)
    expectations: list[str]
    result: CaseResult

    @property
    def passed(self) -> bool:
        return not self.failures


@dataclass
class FileReport:
    path: Path
    cases: list[CaseReport] = field(default_factory=list)
    error: str | None = None
    simulation: SimulationResult | None = None

    @property
    def passed(self) -> bool:
        return self.error is None and all(c.passed for c in self.cases)


def discover(paths: Sequence[str | Path]) -> list[Path]:
    """Test files: the given files, and every ``*.test.toml`` under the given folders."""
    found: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            found.extend(sorted(path.rglob(f"*{SUFFIX}")))
        elif path.exists():
            found.append(path)
        else:
            raise JourneyTestError(f"{path}: no such file or folder")
    return found


def load_test_file(path: Path) -> TestFile:
    """Read and validate one test file (nothing runs yet)."""
    size = path.stat().st_size
    if size > MAX_FILE_BYTES:
        raise JourneyTestError(f"{path}: {size} bytes, over the {MAX_FILE_BYTES} a test file may have")
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise JourneyTestError(f"{path}: not TOML: {exc}") from None
    unknown = set(data) - _TOP_KEYS
    if unknown:
        raise JourneyTestError(
            f"{path}: unknown key(s) {', '.join(sorted(unknown))} (known: {', '.join(sorted(_TOP_KEYS))})"
        )
    name = str(data.get("journey") or path.name.removesuffix(SUFFIX) + ".journey")
    journey_path = (path.parent / name).resolve()
    if not journey_path.exists():
        raise JourneyTestError(f"{path}: the journey {name} is not there")
    source = journey_path.read_text(encoding="utf-8")
    horizon = _horizon(path, data.get("for"))
    world = _world(path, data)
    raw_cases = data.get("case") or []
    if not isinstance(raw_cases, list) or not raw_cases:
        raise JourneyTestError(f"{path}: no [[case]]")
    if len(raw_cases) > MAX_CASES:
        raise JourneyTestError(f"{path}: {len(raw_cases)} cases, at most {MAX_CASES}")
    cases = [_case(path, number, raw) for number, raw in enumerate(raw_cases, 1)]
    start = data.get("start")
    return TestFile(path, journey_path, source, world, cases, horizon, str(start) if start is not None else None)


def _horizon(path: Path, value: Any) -> timedelta:
    if value is None:
        return DEFAULT_HORIZON
    try:
        horizon = parse_span(str(value))
    except ValueError as exc:
        raise JourneyTestError(f"{path}: for: {exc}") from None
    if not timedelta(0) < horizon <= MAX_HORIZON:
        raise JourneyTestError(f"{path}: for = {value!r}: more than 0 and at most {MAX_HORIZON.days}d")
    return horizon


def _world(path: Path, data: dict[str, Any]) -> World:
    caps = data.get("caps") or {}
    try:
        return World(
            templates={k: Template(**v) for k, v in (data.get("templates") or {}).items()},
            pools={k: Pool(**v) for k, v in (data.get("pools") or {}).items()},
            cap_per_day=caps.get("per_day", 2),
            cap_per_week=caps.get("per_week", 5),
            channel_caps=caps.get("channels") or {},
        )
    except (ValidationError, TypeError) as exc:
        raise JourneyTestError(f"{path}: templates, pools or caps: {exc}") from None


def _case(path: Path, number: int, raw: Any) -> TestCase:
    where = f"{path}: case {number}"
    if not isinstance(raw, dict):
        raise JourneyTestError(f"{where}: a [[case]] table, not {type(raw).__name__}")
    raw = dict(raw)
    where += f" {raw.get('name', '')!r}" if raw.get("name") else ""
    expect = raw.pop("expect", [])
    if not isinstance(expect, list) or not all(isinstance(e, str) for e in expect):
        raise JourneyTestError(f"{where}: expect is a list of texts")
    if not expect:
        raise JourneyTestError(f"{where}: no expectations (a case without them tests nothing)")
    if len(expect) > MAX_EXPECTATIONS:
        raise JourneyTestError(f"{where}: {len(expect)} expectations, at most {MAX_EXPECTATIONS}")
    raw.setdefault("name", f"case {number}")
    try:
        case = Case(**raw)
    except ValidationError as exc:
        raise JourneyTestError(f"{where}: {exc}") from None
    try:
        expectations = [parse_expectation(e) for e in expect]
    except ExpectationError as exc:
        raise JourneyTestError(f"{where}: {exc}") from None
    return TestCase(case, expectations)


async def run_test_file(test: TestFile, env: WorkflowEnvironment | None = None) -> FileReport:
    """Simulate every case of the file in one call and check its expectations."""
    report = FileReport(test.path)
    try:
        compile_source(test.source, str(test.journey_path))
    except JourneyError as exc:
        report.error = f"{test.journey_path}: the journey does not compile:\n{exc}"
        return report
    # A fixed start needs a clock that has not passed it: its own server
    # (``simulate`` gives a `once at` broadcast's start its own too).
    shared = env if test.start is None else None
    try:
        result = await simulate(
            test.source,
            [c.case for c in test.cases],
            world=test.world,
            start=test.start,
            horizon=test.horizon,
            env=shared,
            name=str(test.journey_path),
        )
    except ValueError as exc:
        report.error = f"{test.path}: {exc}"
        return report
    report.simulation = result
    for case, outcome in zip(test.cases, result.cases, strict=True):
        failures = [(e.text, found) for e in case.expectations if (found := e.check(outcome)) is not None]
        report.cases.append(CaseReport(case.case.name, failures, [e.text for e in case.expectations], outcome))
    return report


async def run_tests(paths: Sequence[str | Path]) -> list[FileReport]:
    """Every test file under ``paths``, on one time-skipping server."""
    files = discover(paths)
    reports: list[FileReport] = []
    env = await start_time_skipping()
    try:
        for path in files:
            try:
                test = load_test_file(path)
            except JourneyTestError as exc:
                reports.append(FileReport(path, error=str(exc)))
                continue
            reports.append(await run_test_file(test, env))
    finally:
        await env.shutdown()
    return reports


def format_report(report: FileReport) -> str:
    """``ok``/``FAIL`` per case; a failing case with what each failed
    expectation found, all its expectations and the actual timeline."""
    if report.error is not None:
        return f"ERROR {report.path}\n  {report.error}\n"
    lines: list[str] = []
    for case in report.cases:
        if case.passed:
            lines.append(f"ok    {report.path} :: {case.name}")
            continue
        lines.append(f"FAIL  {report.path} :: {case.name}")
        for text, found in case.failures:
            lines.append(f"  expected: {text}")
            lines.append(f"  actual:   {found}")
        lines.append("  expected (all):")
        failed = {text for text, _ in case.failures}
        lines.extend(f"    {'✗' if text in failed else '✓'} {text}" for text in case.expectations)
        lines.append("  actual timeline:")
        lines.extend("  " + line for line in format_case(case.result))
    return "\n".join(lines) + "\n"
