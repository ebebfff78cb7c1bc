"""100k runs waiting at once (issue 15, measure 2), on the product as shipped.

Starts ``journeys up`` in a temporary data directory (its Temporal dev
server, its ``journeys worker`` process, the API on uvicorn; SQLite, or the
PostgreSQL of ``--database-url``), deploys one journey that enters on an
event, sends, and waits up to 7 days for a second event::

    entry event bench_joined → send webhook "bench_hello"
    → wait for event bench_woken up to 7d → send webhook "bench_woken"

inserts N users straight into the store (Core executemany: a user and a
``member_id`` identity each) and starts N runs with ``engine.starts.start_run``
(the ingest's own signal-with-start, concurrent, straight on the dev server).
It prints, each figure with the load average:

- the worker process's RSS (``/proc``), sampled the whole time: before the
  starts, during them, once every run waits (target: flat, < 400 MB);
- ``GET /v1/journeys/{id}/stats``, the console journey page and the node
  panel over HTTP through the real uvicorn server, p50/p99 over repeated
  calls, at 0 runs, at ``--baseline`` runs and at N (targets at N: stats p99
  < 200 ms, page p99 < 1 s). The first stats call is printed apart (the
  first poll of a page nobody had open: on a big journey nobody has counted
  yet, a quick 503 "counting" while its counts begin); 503s after it are
  printed apart from the answers with numbers, asked again after their
  Retry-After as the console does;
- the visibility count per waiting node (``engine.visibility``): how long it
  takes, and the store's own count of runs waiting there beside it;
- then ``--wake`` of the runs woken by ``bench_woken`` events through
  ``POST /v1/track`` at ``--rate``/s: event → delivery p50/p99 as
  ``bench/latency_bench.py`` measures it (request sent → delivery row).

    .venv/bin/python bench/waiting_bench.py [--runs 100000] [--baseline 1000] [--wake 10000] [--rate 40]
        [--database-url postgresql+psycopg://...] [--concurrency 50] [--calls 30] [--fill N]

``--broadcast`` measures a 100k-user broadcast (``bench/broadcast_bench.py``)
and the 100k runs it leaves waiting in one run (each takes over an hour on
two cores). The journey then enters by audience instead of by event, with
the same body::

    entry audience where tag bench_pool once at 2099-01-01 10:00 (never fires by itself)
    → send webhook "bench_hello" → wait for event bench_woken up to 7d → …

and the N seeded users carry the tag ``bench_pool`` (their ``member_id``
identities stay, so the wake events find them). After the reads at 0 runs:

- **raw**: ``engine.starts.start_run`` of a second deployed copy,
  ``bench-waiting-raw``, for ``--raw-users`` other users (untagged, after a
  200-run warm-up) at ``--concurrency``, with the start, input, options and
  memo a broadcast uses, timed to the last run *begun* (its row in ``runs``,
  ``broadcast_bench.wait_begun``). Those runs wait too, in that other
  journey: no per-journey figure below counts them, but the worker and
  the Temporal server hold them (the RSS and the load include them);
- **broadcast**: ``engine.schedules.start_broadcast`` (the API's "run now")
  of ``bench-waiting``, timed from the call to the last of the N runs begun
  (the store polled every 0.25 s), as users entered/s beside the raw rate
  and their ratio (target ≥ 0.9 × raw), with the worker's per-page split
  from its log (``journeys up``'s log, ``up.log`` in the data directory);
- the ``--baseline`` reads are taken while the broadcast runs, once the
  store first counts ``--baseline`` runs waiting: labelled so, since they
  compete with the broadcast for the two cores (and it with them: the
  seconds they overlapped are printed beside the broadcast's rate). There
  is no visibility count there (the count moves while it is taken).

Then, once all N wait, the same as without it: visibility, reads at N,
``--fill``, the wake. For the 100k run::

    .venv/bin/python bench/waiting_bench.py --broadcast [--runs 100000] [--raw-users 2000] [--page-size 500]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
from sqlalchemy import distinct, func, insert, inspect, select  # noqa: E402
from temporalio.service import RPCError  # noqa: E402

from api.deps import COOKIE_NAME  # noqa: E402
from bench.broadcast_bench import bounded, page_split, runs_begun, wait_begun  # noqa: E402
from bench.latency_bench import _label, _tree, _ts, free_port, paced, ready_and_deployed, summary  # noqa: E402
from contracts.broadcast import DEFAULT_PAGE_SIZE, BroadcastProgress  # noqa: E402
from contracts.runs import UserEvent  # noqa: E402
from dsl import compile_source  # noqa: E402
from engine import broadcasts, catalog  # noqa: E402
from engine.node_numbers import waiting_nodes  # noqa: E402
from engine.schedules import start_broadcast  # noqa: E402
from engine.starts import run_input, start_run  # noqa: E402
from engine.store import Store  # noqa: E402
from engine.store.models import Delivery, Identity, Run, StepRecord, Tag, User  # noqa: E402
from engine.temporal import connect  # noqa: E402
from engine.visibility import waiting_counts  # noqa: E402

NODE = "wait-event-bench_woken"  # the wait-for-event step's id (sends "wait" too, in quiet hours)

JOURNEY = "bench-waiting"
BODY = """  reentry always
  send webhook "bench_hello"
  wait for event bench_woken up to 7d:
    on event:
      send webhook "bench_woken"
    on timeout:
      exit
"""
SOURCE = f"""
journey "{JOURNEY}"
  entry event bench_joined
{BODY}"""
# --broadcast: the same body entered by audience. The schedule is required
# and never fires during the bench; the broadcast is started as "run now" is.
TAG = "bench_pool"
AUDIENCE = f"entry audience where tag {TAG} once at 2099-01-01 10:00"
RAW_JOURNEY = "bench-waiting-raw"  # the raw baseline's copy


def audience_source(journey: str) -> str:
    return f"""
journey "{journey}"
  {AUDIENCE}
{BODY}"""


BATCH = 5000
RAW_WARMUP = 200  # raw starts before the measured ones (worker start-up, caches), as broadcast_bench


def load() -> str:
    one, five, _ = os.getloadavg()
    return f"[load {one:.2f} {five:.2f}]"


def percentiles(values: list[float]) -> tuple[float, float]:
    ordered = sorted(values)
    return ordered[len(ordered) // 2], ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))]


# -- the product's processes --------------------------------------------------


def worker_rss_mb(root: int) -> float:
    """Resident memory of the ``journeys worker`` process(es) under ``root``."""
    total = 0
    for pid in _tree(root):
        if _label(pid) != "worker process":
            continue
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            continue
    return total / 1024


class RssSampler:
    """The worker's RSS every ``every`` seconds, labelled by phase."""

    def __init__(self, root: int, every: float = 2.0) -> None:
        self.root, self.every, self.phase = root, every, "start"
        self.samples: list[tuple[str, float]] = []
        self._task: asyncio.Task[None] | None = None

    def sample(self) -> None:
        self.samples.append((self.phase, worker_rss_mb(self.root)))

    async def _run(self) -> None:
        while True:
            self.sample()
            await asyncio.sleep(self.every)

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        self.sample()
        if self._task:
            self._task.cancel()

    def report(self) -> str:
        lines = []
        for phase in dict.fromkeys(p for p, _ in self.samples):
            values = [v for p, v in self.samples if p == phase]
            lines.append(
                f"    {phase:28} n={len(values):4d}  first={values[0]:6.1f}  min={min(values):6.1f}"
                f"  max={max(values):6.1f}  last={values[-1]:6.1f} MB"
            )
        peak = max(v for _, v in self.samples)
        verdict = "met" if peak < 400 else "NOT met"
        lines.append(f"    target peak < 400 MB: {verdict} ({peak:.0f} MB) {load()}")
        return "\n".join(lines)


# -- seeding and starting -------------------------------------------------------


def user_of(i: int) -> str:
    return f"wu-{i:07d}"


def member_of(i: int) -> str:
    return f"wm-{i:07d}"


def seed_users(store: Store, first: int, last: int, tag: str | None = None) -> None:
    """Users ``first..last-1`` with a member id each (and the tag ``tag``,
    if given, as ``broadcast_bench.tag_everyone`` tags), by Core executemany."""
    with store.session() as s:
        for lo in range(first, last, BATCH):
            hi = min(last, lo + BATCH)
            s.execute(insert(User), [{"id": user_of(i), "attributes": {}} for i in range(lo, hi)])
            s.execute(
                insert(Identity),
                [{"kind": "member_id", "value": member_of(i), "user_id": user_of(i)} for i in range(lo, hi)],
            )
            if tag is not None:
                now = datetime.now(UTC)
                s.execute(
                    insert(Tag),
                    [{"user_id": user_of(i), "tag": tag, "source": "bench", "added_at": now} for i in range(lo, hi)],
                )


def raw_user_of(i: int) -> str:
    return f"wr-{i:07d}"


def seed_raw_users(store: Store, n: int) -> None:
    """The raw baseline's users: untagged (no broadcast selects them), no
    identity (no event wakes them)."""
    with store.session() as s:
        for lo in range(0, n, BATCH):
            s.execute(insert(User), [{"id": raw_user_of(i), "attributes": {}} for i in range(lo, min(n, lo + BATCH))])


async def start_runs(client, store: Store, first: int, last: int, concurrency: int) -> float:  # noqa: ANN001
    """Start runs for users ``first..last-1``; returns starts per second."""
    version = catalog.get_version(store, JOURNEY)
    assert version is not None
    ir = compile_source(version.source)
    gate = asyncio.Semaphore(concurrency)

    async def one(i: int) -> None:
        trigger = UserEvent(id=f"wb-join-{i}", name="bench_joined")
        async with gate:
            for attempt in range(5):
                try:
                    await start_run(client, "journeys", run_input(version, ir, user_of(i), trigger))
                    return
                except RPCError:  # an overloaded dev server times out; the start is idempotent (its trigger id)
                    if attempt == 4:
                        raise
                    await asyncio.sleep(2**attempt)

    t0 = time.perf_counter()
    await asyncio.gather(*(one(i) for i in range(first, last)))
    return (last - first) / (time.perf_counter() - t0)


def fill(store: Store, template: int, first: int, last: int) -> None:
    """Copies of the store rows run ``template`` wrote (its run, step records
    and deliveries), for users ``first..last-1``: the store as 100k waiting
    runs leave it, without asking Temporal to run them (visibility still
    holds only the real ones)."""
    tmpl = user_of(template)
    with store.session() as s:
        found = {}
        for model in (Run, StepRecord, Delivery):
            cols = [c.key for c in inspect(model).column_attrs if c.key != "id"]
            rows = s.scalars(select(model).where(model.user_id == tmpl)).all()
            found[model] = [{c: getattr(r, c) for c in cols} for r in rows]
    for lo in range(first, last, BATCH):
        with store.session() as s:
            for model, rows in found.items():
                batch = []
                for i in range(lo, min(last, lo + BATCH)):
                    new = user_of(i)
                    batch += [
                        {k: v.replace(tmpl, new) if isinstance(v, str) else v for k, v in r.items()} for r in rows
                    ]
                if batch:
                    s.execute(insert(model), batch)


def store_waiting(store: Store, node: str, journey: str = JOURNEY) -> int:
    """Runs the store has seen waiting at the node (distinct runs)."""
    with store.read() as s:
        q = select(func.count(distinct(StepRecord.run_key))).where(
            StepRecord.journey_id == journey, StepRecord.node_id == node, StepRecord.outcome == "waiting"
        )
        return int(s.scalar(q) or 0)


async def until_waiting(store: Store, node: str, expected: int, timeout: float) -> float:
    """Seconds until the store has ``expected`` runs waiting at the node."""
    t0 = time.perf_counter()
    while (n := store_waiting(store, node)) < expected:
        if time.perf_counter() - t0 > timeout:
            print(f"  warning: only {n} of {expected} runs waiting after {timeout:.0f} s")
            break
        await asyncio.sleep(1.0)
    return time.perf_counter() - t0


# -- reads ---------------------------------------------------------------------


async def timed(
    calls: int, call: Callable[[], Awaitable[httpx.Response]], counting: list[float] | None = None
) -> list[float]:
    """``calls`` answers' times in ms after one unmeasured call (caches and
    compiled statements, as a live page has them). With ``counting``: a 503
    "counting" answer (a big journey's first counts, ``api.routes.stats``)
    is noted there and asked again after its Retry-After, as the console
    does, not counted among the answers."""
    await call()
    out: list[float] = []
    while len(out) < calls:
        t0 = time.perf_counter()
        r = await call()
        took = 1000 * (time.perf_counter() - t0)
        if counting is not None and r.status_code == 503 and str(r.json().get("type", "")).endswith("/counting"):
            counting.append(took)
            await asyncio.sleep(float(r.headers.get("Retry-After", "1")))
            continue
        out.append(took)
        r.raise_for_status()
    return out


async def reads(http: httpx.AsyncClient, admin: dict[str, str], node: str, calls: int) -> dict[str, list[float]]:
    base = f"/v1/journeys/{JOURNEY}"
    t0 = time.perf_counter()
    first = await http.get(f"{base}/stats", headers=admin)  # as the first poll of a page nobody had open
    first_ms = 1000 * (time.perf_counter() - t0)
    counting: list[float] = []
    stats_calls = await timed(calls, lambda: http.get(f"{base}/stats", headers=admin), counting)
    return {
        f"GET stats, first ({first.status_code})": [first_ms],
        "GET stats": stats_calls,
        "GET stats 503 counting": counting,
        "console journey page": await timed(calls, lambda: http.get(f"/console/journeys/{JOURNEY}")),
        "console node panel": await timed(calls, lambda: http.get(f"/console/journeys/{JOURNEY}/nodes/{node}")),
        "GET runs?node=&limit=50": await timed(
            calls, lambda: http.get(f"{base}/runs", params={"node": node, "limit": 50}, headers=admin)
        ),
    }


def read_report(size: int, found: dict[str, list[float]]) -> str:
    lines = []
    for label, values in found.items():
        if not values:
            lines.append(f"    {size:7d} runs  {label:26} none")
            continue
        p50, p99 = percentiles(values)
        lines.append(f"    {size:7d} runs  {label:26} p50={p50:7.1f} ms  p99={p99:7.1f} ms  n={len(values)}")
    return "\n".join(lines) + f"  {load()}"


async def visibility_report(client, store: Store, node: str, expected: int) -> str:  # noqa: ANN001
    t0 = time.perf_counter()
    counts = await waiting_counts(client, JOURNEY, [node])
    took = 1000 * (time.perf_counter() - t0)
    stored = store_waiting(store, node)
    right = "right" if counts.get(node) == expected else f"WRONG (expected {expected})"
    return (
        f"    visibility count at {node!r}: {counts.get(node)} in {took:.0f} ms; store says {stored} waited there;"
        f" {right} {load()}"
    )


# -- --broadcast: the raw baseline and the broadcast ------------------------------


async def raw_baseline(client, store: Store, users: list[str], concurrency: int) -> tuple[float, float]:  # noqa: ANN001
    """``start_run`` of the raw copy for ``users`` as a broadcast page starts
    them (marker trigger, no signal to a running run, the broadcast memo);
    returns (users begun/s to the last run begun, start calls answered/s)."""
    version = catalog.get_version(store, RAW_JOURNEY)
    assert version is not None
    ir = compile_source(version.source)
    tag = f"raw-{os.urandom(3).hex()}"
    trigger = UserEvent(
        id=broadcasts.marker(tag),
        name=broadcasts.MARKER_EVENT,
        properties={"broadcast_id": tag},
        occurred_at=datetime.now(UTC),
    )
    before = await asyncio.to_thread(runs_begun, store, RAW_JOURNEY)

    async def one(uid: str) -> None:
        inp = run_input(version, ir, uid, trigger)
        await start_run(client, "journeys", inp, signal_running=False, memo={"broadcast_id": tag})

    t0 = time.perf_counter()
    await bounded(users, concurrency, one)
    t1 = time.perf_counter()
    t2 = await wait_begun(store, RAW_JOURNEY, before + len(users), timeout=max(600.0, len(users) / 2))
    return len(users) / (t2 - t0), len(users) / (t1 - t0)


class Broadcast:
    """``start_broadcast`` of the journey, as the API's "run now" calls it,
    polled to the last run begun; the ``--baseline`` reads are taken once
    the store first counts ``baseline`` runs waiting, while it runs."""

    def __init__(self, client, store: Store, log_path: Path, runs: int, page_size: int) -> None:  # noqa: ANN001
        self.client, self.store, self.log_path = client, store, log_path
        self.runs, self.page_size = runs, page_size
        self.lines: list[str] = []

    async def run(self, baseline: int, take_reads: Callable[[], Awaitable[dict[str, list[float]]]]) -> str | None:
        """Returns the baseline reads' report (None if not taken)."""
        version = catalog.get_version(self.store, JOURNEY)
        assert version is not None
        ir = compile_source(version.source)
        since = self.log_path.stat().st_size
        reads_task: asyncio.Task[str] | None = None
        overlap = [0.0, 0.0]  # the reads' start and end, perf_counter

        async def baseline_reads() -> str:
            at = await asyncio.to_thread(store_waiting, self.store, NODE)
            overlap[0] = time.perf_counter()
            found = await take_reads()
            overlap[1] = time.perf_counter()
            after = await asyncio.to_thread(store_waiting, self.store, NODE)
            return read_report(baseline, found) + f" (during the broadcast: {at} → {after} runs waiting)"

        t0 = time.perf_counter()
        wid = await start_broadcast(self.client, "journeys", version, ir, trigger="api", page_size=self.page_size)
        deadline = t0 + max(3600.0, self.runs / 2)
        last_print, seen = t0, 0
        while True:
            seen = await asyncio.to_thread(runs_begun, self.store, JOURNEY)
            now = time.perf_counter()
            if seen >= self.runs:
                break
            if now > deadline:
                print(f"  warning: only {seen} of {self.runs} runs begun {now - t0:.0f} s after run now", flush=True)
                break
            if reads_task is None and 0 < baseline < self.runs:
                if await asyncio.to_thread(store_waiting, self.store, NODE) >= baseline:
                    print(f"  {baseline} runs waiting: baseline reads, while the broadcast goes on …", flush=True)
                    reads_task = asyncio.create_task(baseline_reads())
            if now - last_print >= 60:
                print(f"  broadcast: {seen} runs begun after {now - t0:.0f} s {load()}", flush=True)
                last_print = now
            await asyncio.sleep(0.25)
        t1 = time.perf_counter()
        begun_load = load()
        try:
            progress = await asyncio.wait_for(
                self.client.get_workflow_handle(wid, result_type=BroadcastProgress).result(), timeout=600
            )
            pages = f"{progress.pages} pages, entered {progress.entered}, skipped {progress.skipped}"
        except TimeoutError:
            pages = "the broadcast workflow had not finished 600 s after its last run begun"
        report = None
        if reads_task is not None:
            report = await reads_task
        rate = seen / (t1 - t0)
        if reads_task is None:
            during = "no reads during it"
        else:
            during = f"the baseline reads overlapped it for {overlap[1] - overlap[0]:.1f} s"
        self.lines.append(
            f"    broadcast: {seen} users, page size {self.page_size}: run now → last run begun {t1 - t0:.1f} s"
            f" = {rate:.1f} users entered/s; {pages}; {during} {begun_load}"
        )
        self.lines.append(page_split(self.log_path, since))
        self.rate = rate
        return report

    def ratio(self, raw: float, concurrency: int) -> str:
        ratio = self.rate / raw
        verdict = "meets" if ratio >= 0.9 else "misses"
        return (
            f"    broadcast {self.rate:.1f}/s vs raw {raw:.1f}/s (concurrency {concurrency}): {ratio:.2f} × raw"
            f" — {verdict} the target ≥ 0.9 × raw {load()}"
        )


# -- waking ----------------------------------------------------------------------


async def wake(http: httpx.AsyncClient, write_key: str, store: Store, n: int, rate: float) -> list[float]:
    """Wake runs ``0..n-1`` by a ``bench_woken`` event each at ``rate``/s;
    event sent → the woken send's delivery row, in ms."""

    async def fire(i: int) -> None:
        body = {"userId": member_of(i), "event": "bench_woken", "messageId": f"wb-woken-{i}"}
        (await http.post("/v1/track", auth=(write_key, ""), json=body)).raise_for_status()

    sent = await paced(rate, n / rate, fire)
    deadline = time.time() + 300
    while True:
        with store.read() as s:
            rows = s.execute(
                select(Delivery.user_id, Delivery.created_at).where(
                    Delivery.journey_id == JOURNEY, Delivery.template == "bench_woken"
                )
            ).all()
        if len(rows) >= len(sent) or time.time() > deadline:
            break
        await asyncio.sleep(0.5)
    if len(rows) < len(sent):
        print(f"  warning: only {len(rows)} of {len(sent)} woken deliveries recorded in time")
    return sorted((_ts(at) - sent[str(int(uid.removeprefix("wu-")))]) * 1000 for uid, at in rows)


# -- the run ---------------------------------------------------------------------


def stop(up: subprocess.Popen[bytes]) -> None:
    """Ctrl-C, as an operator stops ``journeys up``; killed after a minute."""
    up.send_signal(signal.SIGINT)
    deadline = time.monotonic() + 60
    while up.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    if up.poll() is None:
        up.kill()


async def main(args: argparse.Namespace) -> None:
    data = Path(tempfile.mkdtemp(prefix="journeys-waiting-"))
    port, temporal_port, ui_port = free_port(), free_port(), free_port()
    env = dict(os.environ)
    url = args.database_url or f"sqlite:///{data / 'journeys.db'}"
    if args.database_url:
        env["DATABASE_URL"] = args.database_url
    cmd = [sys.executable, "-m", "api.cli", "up", "--data-dir", str(data), "--port", str(port)]
    cmd += ["--temporal-port", str(temporal_port), "--ui-port", str(ui_port)]
    log_path = data / "up.log"
    log = log_path.open("w")
    up = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    store = Store(url)
    rss = RssSampler(up.pid)
    mode = " entered by a broadcast" if args.broadcast else ""
    print(f"waiting bench: {args.runs} runs{mode}, store {url.split('@')[-1]}, reads over HTTP (uvicorn) {load()}")
    fanout: list[str] = []  # --broadcast: its figures, repeated at the end
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=120) as http:
            keys = await ready_and_deployed(http, up, data)  # (it deploys latency_bench's ping journey too)
            admin = {"Authorization": f"Bearer {keys['admin']}"}
            http.cookies.set(COOKIE_NAME, keys["admin"])
            for name in ("bench_hello", "bench_woken"):
                r = await http.put(f"/v1/templates/{name}", json={"body": name + " {{ user.id }}"}, headers=admin)
                r.raise_for_status()
            deployed = [(JOURNEY, audience_source(JOURNEY) if args.broadcast else SOURCE)]
            if args.broadcast:
                deployed.append((RAW_JOURNEY, audience_source(RAW_JOURNEY)))
            for journey_id, source in deployed:
                r = await http.post("/v1/journeys", json={"id": journey_id, "source": source}, headers=admin)
                r.raise_for_status()
            node = NODE
            assert node in waiting_nodes(compile_source(deployed[0][1]))
            client = await connect(f"127.0.0.1:{temporal_port}")
            rss.start()

            t0 = time.perf_counter()
            await asyncio.to_thread(seed_users, store, 0, args.runs, TAG if args.broadcast else None)
            tagged = f", tagged {TAG}" if args.broadcast else ""
            print(f"seeded {args.runs} users{tagged} in {time.perf_counter() - t0:.1f} s {load()}", flush=True)

            print("reads at 0 runs (baseline) …", flush=True)
            figures = [read_report(0, await reads(http, admin, node, args.calls))]
            print(figures[-1], flush=True)

            async def settle(size: int, after: str) -> None:
                """Until ``size`` runs wait (the worker catching up), then the
                visibility count and the reads."""
                rss.phase = f"worker catching up to {size}"
                took = await until_waiting(store, node, size, timeout=max(120.0, size / 20))
                print(f"  all {size} waiting {took:.0f} s after {after} {load()}", flush=True)
                rss.phase = f"{size} waiting"
                await asyncio.sleep(5)
                print(await visibility_report(client, store, node, size), flush=True)
                figures.append(read_report(size, await reads(http, admin, node, args.calls)))
                print(figures[-1], flush=True)

            done = 0
            if args.broadcast:
                raw_users = [raw_user_of(i) for i in range(RAW_WARMUP + args.raw_users)]
                await asyncio.to_thread(seed_raw_users, store, len(raw_users))
                rss.phase = "raw baseline (other journey)"
                print(
                    f"raw baseline: start_run of {RAW_JOURNEY} for {args.raw_users} users at concurrency"
                    f" {args.concurrency} (after {RAW_WARMUP} unmeasured) …",
                    flush=True,
                )
                await raw_baseline(client, store, raw_users[:RAW_WARMUP], 16)
                raw_rate, call_rate = await raw_baseline(client, store, raw_users[RAW_WARMUP:], args.concurrency)
                fanout.append(
                    f"    raw start_run: {args.raw_users} users, {raw_rate:.1f} users begun/s"
                    f" (start calls {call_rate:.0f}/s), concurrency {args.concurrency} {load()}"
                )
                print(fanout[-1], flush=True)
                fanout.append(
                    f"    (the {len(raw_users)} raw runs wait too, in {RAW_JOURNEY}: not in any figure of"
                    f" {JOURNEY} below; the worker's RSS and the load include them)"
                )
                print(fanout[-1], flush=True)

                rss.phase = f"broadcast 0..{args.runs}"
                print(f"broadcast (run now) of {JOURNEY} to {args.runs} users …", flush=True)
                fan = Broadcast(client, store, log_path, args.runs, args.page_size)
                report = await fan.run(args.baseline, lambda: reads(http, admin, node, args.calls))
                fanout += fan.lines
                fanout.append(fan.ratio(raw_rate, args.concurrency))
                print("\n".join(fanout[-3:]), flush=True)
                if report is not None:
                    figures.append(report)
                    print(figures[-1], flush=True)
                else:
                    figures.append(f"    (no baseline reads: --baseline {args.baseline} is not between 0 and --runs)")
                await settle(args.runs, "the last run begun")
                done = args.runs
            for size in [] if args.broadcast else dict.fromkeys([min(args.baseline, args.runs), args.runs]):
                rss.phase = f"starting {done}..{size}"
                rate = await start_runs(client, store, done, size, args.concurrency)
                print(f"started runs {done}..{size}: {rate:.0f} starts/s {load()}", flush=True)
                await settle(size, "the last start")
                done = size

            if args.fill > done:
                rss.phase = f"store filled to {args.fill}"
                t0 = time.perf_counter()
                await asyncio.to_thread(seed_users, store, done, args.fill)
                await asyncio.to_thread(fill, store, 0, done, args.fill)
                print(
                    f"store rows of runs {done}..{args.fill} copied from run 0 in {time.perf_counter() - t0:.0f} s"
                    f" (not in Temporal: visibility holds the {done} real ones) {load()}",
                    flush=True,
                )
                print(await visibility_report(client, store, node, done), flush=True)
                figures.append(read_report(args.fill, await reads(http, admin, node, args.calls)) + " (store filled)")
                print(figures[-1], flush=True)

            woken: list[float] = []
            if args.wake:
                n = min(args.wake, args.runs)
                rss.phase = f"waking {n} at {args.rate:g}/s"
                print(f"waking {n} runs by POST /v1/track at {args.rate:g}/s …", flush=True)
                woken = await wake(http, keys["write"], store, n, args.rate)
                print(f"  {summary('event → woken delivery', woken)} {load()}", flush=True)
                rss.phase = "after waking"
                await asyncio.sleep(5)
            await rss.stop()
    except BaseException:
        print(f"journeys up's log, the end:\n{log_path.read_text()[-4000:]}")
        raise
    finally:
        stop(up)
        store.dispose()
        log.close()
        shutil.rmtree(data, ignore_errors=True)
    if fanout:
        print("broadcast (run now → last run begun) against raw start_run:")
        print("\n".join(fanout))
    print("worker RSS by phase:")
    print(rss.report())
    print("reads (p50/p99 over HTTP through uvicorn):")
    print("\n".join(figures))
    if woken:
        print(summary("event → woken delivery", woken), load())


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=100_000)
    parser.add_argument("--baseline", type=int, default=1000, help="runs waiting for the baseline reads")
    parser.add_argument("--wake", type=int, default=10_000, help="runs woken by events afterwards")
    parser.add_argument("--rate", type=float, default=40.0, help="wake events per second")
    parser.add_argument("--concurrency", type=int, default=50, help="start_run calls in flight")
    parser.add_argument("--calls", type=int, default=30, help="timed calls per read")
    parser.add_argument(
        "--fill", type=int, default=0, help="then copy run 0's store rows up to this many runs and read again"
    )
    parser.add_argument("--database-url", default=None, help="PostgreSQL URL (default: SQLite in the data dir)")
    parser.add_argument(
        "--broadcast", action="store_true", help="enter the N runs by an audience broadcast (run now), not start_run"
    )
    parser.add_argument("--raw-users", type=int, default=2000, help="--broadcast: raw start_run baseline users")
    parser.add_argument("--page-size", type=int, default=DEFAULT_PAGE_SIZE, help="--broadcast: its page size")
    asyncio.run(main(parser.parse_args()))
