"""The README's production profile on one machine, with a crash in the middle.

PostgreSQL for the store (a fresh database on the ``scripts/with-postgres``
server), a Temporal dev server, two ``journeys worker`` processes and two API
processes (``uvicorn 'api.app:create_app' --factory``, each its own port)
behind a round-robin proxy (``tests.integration.proxy``, nginx's
``proxy_next_upstream error``). Everything the operator does goes through the
proxy: templates, a coupon pool, two journeys deployed, a broadcast run now
over a seeded pool (``bench.seed_pool``: ~10 % of it is tagged ``vip``) and,
while it runs, events posted the way a Segment library posts them (retried
with the same message id until a 2xx). The four processes start together on
an empty database, each migrating it on start (``Store.migrate`` takes an
advisory lock: without it three of four crashed on duplicate DDL).

Mid-broadcast one worker and one API process get ``kill -9``; both are
started again a moment later, as systemd or Kubernetes would. Then nothing
may be lost or duplicated: every selected user entered once, one send per
user per send step (in the ledger, and one key per step at the receiving
vendor, which may see a key twice: the vendor de-duplicates it), one coupon
per user, every accepted event stored once and delivered to its run, and the
broadcast's progress row exact."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from sqlalchemy import create_engine, func, make_url, select, text
from temporalio.client import Client

from bench.seed_pool import seed_pool, user_id
from contracts.runs import workflow_id
from engine.store import Store, normalize_url
from engine.store.models import CouponGrant, Delivery, Event, Run, Tag, User
from engine.temporal import start_dev_server
from tests.integration.actions import billable_actions
from tests.integration.proxy import RoundRobinProxy
from tests.integration.receiver import Receiver
from tests.integration.test_crash import worker_environment

PG_URL = os.environ.get("JOURNEYS_TEST_PG_URL")
POOL = int(os.environ.get("PROFILE_TEST_POOL", "5000"))  # ~10 % vip: ~500 users broadcast to
EVENTS = int(os.environ.get("PROFILE_TEST_EVENTS", "200"))
POSTERS = 4  # events in flight at once, so a killed API is likely to be mid-request
SEED = 1
OPERATOR, WRITE_KEY = "k-profile-op", "wk-profile"
PAGE_SIZE = 100
KILL_AT = 0.25  # of the broadcast's sends at the vendor
WAIT_SECONDS = 400.0

BROADCAST = """journey "profile broadcast"
  entry audience where tag vip once at 2099-01-01 10:00
  reentry once

  send webhook "pb_first"
  coupon "pb_pool"
  send webhook "pb_second"
"""
ON_EVENT = """journey "profile event"
  entry event promo_click
  reentry once

  send webhook "pe_hello"
"""

pytestmark = [
    pytest.mark.skipif(
        not PG_URL and not os.environ.get("JOURNEYS_REQUIRE_PG"),
        reason="JOURNEYS_TEST_PG_URL not set: the production profile needs PostgreSQL (make test sets it)",
    ),
    pytest.mark.timeout(WAIT_SECONDS + 200),
]


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def pg_database() -> Iterator[str]:
    """A database of its own on the test server (other tests use schemas in
    ``journeys_test``), dropped afterwards with whoever is still connected."""
    assert PG_URL, "JOURNEYS_REQUIRE_PG is set but JOURNEYS_TEST_PG_URL is not"
    name = f"profile_{uuid.uuid4().hex[:10]}"
    admin = create_engine(normalize_url(PG_URL), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f"CREATE DATABASE {name}"))
    try:
        yield make_url(normalize_url(PG_URL)).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        admin.dispose()


@dataclass
class Service:
    """One process of the profile, restartable on the same port and log."""

    name: str
    argv: list[str]
    env: dict[str, str]
    log: Path
    proc: subprocess.Popen | None = None
    starts: int = 0

    def start(self) -> None:
        self.proc = subprocess.Popen(
            self.argv, env=self.env, stdout=self.log.open("ab"), stderr=subprocess.STDOUT, start_new_session=True
        )
        self.starts += 1

    cpu_before: float = 0.0  # CPU seconds of the processes already gone

    def cpu(self) -> float:
        """CPU seconds this service used so far, restarts included (Linux)."""
        now = 0.0
        if self.proc is not None and self.proc.poll() is None:
            fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
            now = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime
        return self.cpu_before + now

    def kill9(self) -> None:
        assert self.proc is not None
        self.cpu_before = self.cpu()
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.kill9()

    def tail(self) -> str:
        return f"--- {self.name} ---\n{self.log.read_text(errors='replace')[-3000:]}"


@dataclass
class Profile:
    workers: list[Service]
    apis: list[Service]
    statuses: Counter[int] = field(default_factory=Counter)  # every answer the test got through the proxy
    started: float = field(default_factory=time.monotonic)
    phases: list[str] = field(default_factory=list)  # where the wall time went, for the summary line
    broadcast_id: str = ""

    def mark(self, phase: str) -> None:
        self.phases.append(f"{phase} {time.monotonic() - self.started:.0f}s")

    @property
    def services(self) -> list[Service]:
        return [*self.workers, *self.apis]

    def logs(self) -> str:
        return "\n".join(s.tail() for s in self.services)


def _profile(db_url: str, temporal: str, webhook: str, tmp: Path) -> Profile:
    env = {
        **worker_environment(db_url, temporal, webhook),
        "JOURNEYS_API_KEYS": f'{{"{OPERATOR}": "operator"}}',
        "JOURNEYS_WRITE_KEYS": f'["{WRITE_KEY}"]',
        # The sweep that delivers events a killed API stored but never got to
        # Temporal: every 2 s here (30 s by default) so the test is short.
        "JOURNEYS_REDISPATCH_SECONDS": "2",
        "JOURNEYS_LOG_JSON": "false",
    }
    workers = [
        Service(f"worker{i}", [sys.executable, "-m", "api.cli", "worker"], env, tmp / f"worker{i}.log") for i in (1, 2)
    ]
    apis = []
    for i in (1, 2):
        port = _port()
        argv = [sys.executable, "-m", "uvicorn", "api.app:create_app", "--factory", "--host", "127.0.0.1"]
        apis.append(Service(f"api{i}:{port}", [*argv, "--port", str(port)], env, tmp / f"api{i}.log"))
    return Profile(workers, apis)


def _api_port(api: Service) -> int:
    return int(api.argv[-1])


async def _eventually(probe: Callable[[], Awaitable[bool]], what: str, profile: Profile) -> None:
    deadline = asyncio.get_running_loop().time() + WAIT_SECONDS
    while asyncio.get_running_loop().time() < deadline:
        if await probe():
            return
        for service in profile.services:
            assert service.proc is not None and service.proc.poll() is None, f"{service.name} died\n{profile.logs()}"
        await asyncio.sleep(0.25)
    raise AssertionError(f"never: {what}\n{profile.logs()}")


async def _ready(port: int) -> bool:
    async with httpx.AsyncClient(timeout=5) as client:
        try:
            return (await client.get(f"http://127.0.0.1:{port}/ready")).status_code == 200
        except httpx.TransportError:
            return False


async def _call(http: httpx.AsyncClient, profile: Profile, method: str, path: str, **kw: object) -> httpx.Response:
    """A request through the proxy, retried (as a client library retries)
    when the connection breaks or the API answers 502/503; every answer's
    status is kept, so a 500 anywhere fails the test."""
    for _ in range(200):
        try:
            r = await http.request(method, path, **kw)  # type: ignore[arg-type]
        except httpx.TransportError:
            await asyncio.sleep(0.1)
            continue
        profile.statuses[r.status_code] += 1
        if r.status_code not in (502, 503):
            return r
        await asyncio.sleep(0.1)
    raise AssertionError(f"{method} {path}: no answer through the proxy\n{profile.logs()}")


async def _post_events(proxy: RoundRobinProxy, profile: Profile, numbers: range, accepted: list[str]) -> None:
    """Clicks of pool members (by member id), ``POSTERS`` at a time, each on a
    new connection (no keep-alive), so the proxy spreads them over both APIs
    request by request, as nginx does."""
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in numbers:
        queue.put_nowait(i)
    limits = httpx.Limits(max_keepalive_connections=0)
    async with httpx.AsyncClient(base_url=proxy.url, timeout=30, limits=limits) as http:

        async def poster() -> None:
            while not queue.empty():
                i = queue.get_nowait()
                message = {"userId": f"m{SEED}-{i}", "event": "promo_click", "messageId": f"pc-{i}"}
                r = await _call(http, profile, "POST", "/v1/track", json=message, auth=(WRITE_KEY, ""))
                assert r.status_code in (200, 202), r.text
                accepted.append(message["messageId"])
                await asyncio.sleep(0.02)

        await asyncio.gather(*(poster() for _ in range(POSTERS)))


def _selected(store: Store) -> set[str]:
    """Who ``tag vip`` selects, asked of the tables directly."""
    with store.read() as s:
        q = select(Tag.user_id).join(User, User.id == Tag.user_id).where(Tag.tag == "vip", User.merged_into.is_(None))
        return set(s.scalars(q))


def _progress(store: Store) -> tuple[int, int, int]:
    """Ended runs of the broadcast and the event journey, delivered clicks."""
    with store.read() as s:

        def ended(journey_id: str) -> int:
            q = select(func.count()).select_from(Run).where(Run.journey_id == journey_id, Run.ended_at.is_not(None))
            return int(s.scalar(q) or 0)

        q = select(func.count()).select_from(Event).where(Event.name == "promo_click", Event.dispatched_at.is_not(None))
        return ended("pb"), ended("pe"), int(s.scalar(q) or 0)


async def test_two_workers_two_apis_survive_kill_dash_nine_mid_broadcast(pg_database: str, tmp_path: Path) -> None:
    started = time.monotonic()
    env = await start_dev_server()
    store = Store(pg_database)
    profile: Profile | None = None
    try:
        with Receiver() as receiver:
            profile = _profile(pg_database, env.client.service_client.config.target_host, receiver.url, tmp_path)
            profile.started = started
            # All four on an empty database at once, as after a first deploy:
            # each migrates on start (``Store.migrate`` serialises them).
            for service in profile.services:
                service.start()
            ports = [_api_port(a) for a in profile.apis]
            for port in ports:
                await _eventually(lambda port=port: _ready(port), f"API on {port} ready", profile)
            profile.mark("APIs ready")
            await asyncio.to_thread(seed_pool, store, POOL, SEED)
            selected = await asyncio.to_thread(_selected, store)
            assert len(selected) > POOL // 20
            profile.mark("seeded")
            with RoundRobinProxy(ports) as proxy:
                async with httpx.AsyncClient(base_url=proxy.url, timeout=30) as http:
                    await _run_profile(http, profile, proxy, store, receiver, selected)
            await _print_actions(env.client, min(selected), profile.broadcast_id)
    finally:
        if profile is not None:
            for service in profile.services:
                service.stop()
        await env.shutdown()
        store.dispose()


async def _run_profile(
    http: httpx.AsyncClient,
    profile: Profile,
    proxy: RoundRobinProxy,
    store: Store,
    receiver: Receiver,
    selected: set[str],
) -> None:
    op = {"Authorization": f"Bearer {OPERATOR}"}
    for name in ("pb_first", "pb_second", "pe_hello"):
        r = await _call(
            http, profile, "POST", "/v1/templates", json={"name": name, "body": f"{name} {{{{ user.id }}}}"}, headers=op
        )
        assert r.status_code == 201, r.text
    r = await _call(
        http, profile, "POST", "/v1/pools", json={"name": "pb_pool", "stock": len(selected) * 2}, headers=op
    )
    assert r.status_code == 201, r.text
    for jid, source in (("pb", BROADCAST), ("pe", ON_EVENT)):
        r = await _call(http, profile, "POST", "/v1/journeys", json={"source": source, "id": jid}, headers=op)
        assert r.status_code in (200, 201), r.text

    r = await _call(http, profile, "POST", "/v1/journeys/pb/broadcasts", json={"page_size": PAGE_SIZE}, headers=op)
    assert r.status_code == 202, r.text
    broadcast_id = profile.broadcast_id = r.json()["broadcast_id"]
    profile.mark("deployed, run now")
    # Half the clicks while the broadcast runs, half from the moment of the
    # kill on (while one API is down and restarting: the proxy skips it).
    accepted: list[str] = []
    before = asyncio.create_task(_post_events(proxy, profile, range(EVENTS // 2), accepted))

    broadcast_sends = 2 * len(selected)
    await _eventually(
        lambda: _at_least(receiver, "pb_", int(broadcast_sends * KILL_AT)), "the broadcast a quarter done", profile
    )
    at_kill = _sent(receiver, "pb_")
    profile.mark("kill -9")
    victims = [profile.workers[0], profile.apis[1]]
    for service in victims:
        service.kill9()
    after = asyncio.create_task(_post_events(proxy, profile, range(EVENTS // 2, EVENTS), accepted))
    await asyncio.sleep(1.0)  # the supervisor's restart delay
    for service in victims:
        service.start()

    await asyncio.gather(before, after)
    total = broadcast_sends + EVENTS
    await _eventually(lambda: _at_least(receiver, "p", total), "every send at the vendor", profile)

    async def settled() -> bool:
        """Every run ended and every event marked delivered (a killed API's
        events are marked by the other's sweep); too many fails below."""
        counts = await asyncio.to_thread(_progress, store)
        return counts[0] >= len(selected) and counts[1] >= EVENTS and counts[2] >= EVENTS

    profile.mark("all sent")
    await _eventually(settled, "every run ended, every event delivered", profile)
    profile.mark("all ended")

    async def broadcast_done() -> bool:
        r = await _call(http, profile, "GET", f"/v1/journeys/pb/broadcasts/{broadcast_id}", headers=op)
        return r.status_code == 200 and r.json()["status"] != "running"

    await _eventually(broadcast_done, "the broadcast finished", profile)
    r = await _call(http, profile, "GET", f"/v1/journeys/pb/broadcasts/{broadcast_id}", headers=op)
    progress = r.json()

    # The crash came mid-broadcast, and the proxy used both APIs.
    assert 0 < at_kill < broadcast_sends, at_kill
    assert all(s.starts == 2 for s in victims)
    assert all(proxy.connections[port] > 0 for port in proxy.backends), proxy.connections
    assert proxy.refused[_api_port(victims[1])] > 0, "no request found the killed API down: the proxy never failed over"
    assert profile.statuses[500] == 0, (profile.statuses, profile.logs())
    assert not [a.name for a in profile.apis if "Logging error" in a.log.read_text(errors="replace")], profile.logs()

    # The broadcast's own account, exact.
    n = len(selected)
    assert {k: progress[k] for k in ("status", "matched", "entered", "skipped", "admitted", "refused")} == {
        "status": "completed",
        "matched": n,
        "entered": n,
        "skipped": 0,
        "admitted": n,
        "refused": 0,
    }, progress

    await asyncio.to_thread(_check_store, store, receiver, selected, sorted(accepted))
    redelivered = sum(c - 1 for c in receiver.keys().values())
    cpu = ", ".join(f"{s.name.split(':')[0]} {s.cpu():.0f}" for s in profile.services)
    print(
        f"\nproduction profile: {n} users broadcast to ({POOL} in the pool), {EVENTS} events, "
        f"kill -9 of {victims[0].name} and {victims[1].name} at {at_kill}/{broadcast_sends} broadcast sends; "
        f"{redelivered} same-key redeliveries; proxy connections {dict(proxy.connections)}, "
        f"refused {dict(proxy.refused)}; answers {dict(profile.statuses)}; at {', '.join(profile.phases)}; "
        f"CPU s {cpu}; "
        f"load {os.getloadavg()}"
    )


async def _print_actions(client: Client, user: str, broadcast_id: str) -> None:
    """Temporal Cloud actions of one run of each journey and of the whole
    broadcast, from their histories: the capacity plan's numbers."""
    for label, wid in (
        ("broadcast run", workflow_id("pb", user)),
        ("event run", workflow_id("pe", user_id(SEED, 0))),
        ("broadcast workflow", broadcast_id),
    ):
        actions = billable_actions(await client.get_workflow_handle(wid).fetch_history())
        print(f"actions of one {label}: {sum(actions.values())} {dict(actions)}")


def _sent(receiver: Receiver, prefix: str) -> int:
    """Distinct keys the vendor got for templates starting with ``prefix``."""
    with receiver.lock:
        return len({key for key, body in receiver.posts if str(body.get("template", "")).startswith(prefix)})


async def _at_least(receiver: Receiver, prefix: str, count: int) -> bool:
    return _sent(receiver, prefix) >= count


def _check_store(store: Store, receiver: Receiver, selected: set[str], accepted: list[str]) -> None:
    with store.read() as s:
        runs = s.execute(
            select(Run.journey_id, Run.user_id, Run.admitted).where(Run.journey_id.in_(["pb", "pe"]))
        ).all()
        sent = s.execute(
            select(Delivery.user_id, Delivery.template, func.count())
            .where(Delivery.status == "sent")
            .group_by(Delivery.user_id, Delivery.template)
        ).all()
        unsent = s.scalar(select(func.count()).select_from(Delivery).where(Delivery.status != "sent"))
        ledger_keys = set(s.scalars(select(Delivery.idempotency_key).where(Delivery.status == "sent")))
        grants = Counter(s.scalars(select(CouponGrant.user_id).where(CouponGrant.pool == "pb_pool")))
        events = s.execute(
            select(Event.id, Event.user_id, Event.dispatched_at).where(Event.name == "promo_click")
        ).all()

    # Every selected user entered exactly once; every clicker once.
    pb_runs = Counter(u for j, u, admitted in runs if j == "pb" and admitted)
    assert set(pb_runs) == selected and set(pb_runs.values()) == {1}
    assert len([r for r in runs if r[0] == "pb"]) == len(selected)
    clickers = {user_id(SEED, i) for i in range(EVENTS)}
    pe_runs = Counter(u for j, u, admitted in runs if j == "pe" and admitted)
    assert set(pe_runs) == clickers and set(pe_runs.values()) == {1}

    # One send per user per send step in the ledger, nothing failed or pending.
    expected = {(u, t) for u in selected for t in ("pb_first", "pb_second")} | {(u, "pe_hello") for u in clickers}
    assert {(u, t) for u, t, _ in sent} == expected and {c for *_, c in sent} == {1}
    assert unsent == 0
    # ... and at the vendor: one key per user and step, the ledger's (a kill
    # between the POST and the ledger write re-sends with the same key).
    wire = receiver.keys()
    assert set(wire) == ledger_keys
    with receiver.lock:
        per_step = Counter((b["user_id"], b["template"]) for b in {k: b for k, b in receiver.posts}.values())
    assert set(per_step) == expected and set(per_step.values()) == {1}

    assert set(grants) == selected and set(grants.values()) == {1}

    # Every accepted event stored once, for its member, and delivered.
    assert sorted(e.id for e in events) == accepted == sorted(f"pc-{i}" for i in range(EVENTS))
    assert all(e.user_id == user_id(SEED, int(e.id[3:])) and e.dispatched_at is not None for e in events)
