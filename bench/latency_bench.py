"""Event → delivery latency through the API on the embedded default.

A steady stream of Segment-style ``POST /v1/track`` events (20/s by default)
each starts an event-triggered journey whose first step is a send; latency is
from the moment the request was sent to the moment the delivery row was
written. The baseline in the same run is the same journey started directly on
Temporal (signal-with-start from Python, no HTTP, no ingest), so the figure
shows what the service adds. Target (issue 4): p99 < 250 ms.

    .venv/bin/python bench/latency_bench.py [events_per_second] [seconds]
"""

from __future__ import annotations

import asyncio
import socket
import statistics
import sys
import tempfile
import time
from datetime import UTC
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx  # noqa: E402
import uvicorn  # noqa: E402
from sqlalchemy import select  # noqa: E402

from api.app import create_app  # noqa: E402
from api.settings import ApiSettings  # noqa: E402
from dsl import compile_source  # noqa: E402
from engine import templates  # noqa: E402
from engine.channels.config import ChannelsConfig  # noqa: E402
from engine.store import Store  # noqa: E402
from engine.store.models import Delivery  # noqa: E402
from engine.temporal import start_dev_server  # noqa: E402
from engine.worker import run_worker  # noqa: E402
from workflows.journey import JourneyWorkflow  # noqa: E402
from workflows.models import JourneyInput, UserEvent, workflow_id  # noqa: E402

SOURCE = """
journey "ping"
  entry event clicked
  reentry always
  send webhook "ping"
"""
ADMIN, WRITE = "bench-admin", "bench-write"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def paced(rate: float, seconds: float, fire) -> dict[str, float]:
    """Call ``fire(i)`` at a steady rate; returns when each was fired (wall clock)."""
    sent: dict[str, float] = {}
    tasks = []
    start = time.perf_counter()
    for i in range(int(rate * seconds)):
        delay = start + i / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        sent[f"{i}"] = time.time()
        tasks.append(asyncio.create_task(fire(i)))
    await asyncio.gather(*tasks)
    return sent


async def latencies(store: Store, sent: dict[str, float], prefix: str, timeout: float = 120) -> list[float]:
    deadline = time.time() + timeout
    while True:
        with store.read() as s:
            rows = s.execute(
                select(Delivery.user_id, Delivery.created_at).where(Delivery.user_id.like(f"{prefix}%"))
            ).all()
        if len(rows) >= len(sent) or time.time() > deadline:
            break
        await asyncio.sleep(0.5)
    out = []
    for user_id, created in rows:
        i = user_id.removeprefix(prefix)
        created_ts = created.replace(tzinfo=UTC).timestamp() if created.tzinfo is None else created.timestamp()
        out.append((created_ts - sent[i]) * 1000)
    if len(out) < len(sent):
        print(f"  warning: only {len(out)} of {len(sent)} deliveries recorded in time")
    return sorted(out)


def summary(label: str, values: list[float]) -> str:
    if not values:
        return f"{label:22} no deliveries"
    p = lambda q: values[min(len(values) - 1, int(q * len(values)))]  # noqa: E731
    return (
        f"{label:22} n={len(values):4d}  p50={p(0.50):7.1f} ms  p99={p(0.99):7.1f} ms  "
        f"max={values[-1]:7.1f} ms  mean={statistics.mean(values):7.1f} ms"
    )


async def main(rate: float, seconds: float) -> None:
    data = Path(tempfile.mkdtemp(prefix="journeys-latency-"))
    settings = ApiSettings(
        database_url=f"sqlite:///{data / 'bench.db'}",
        channels=ChannelsConfig(mode="outbox"),
        api_keys={ADMIN: "admin"},
        write_keys=[WRITE],
        log_json=False,
        log_level="WARNING",
    )
    store = Store(settings.database_url)
    store.migrate()
    templates.upsert_template(store, "ping", "ping {{ user.id }}")
    env = await start_dev_server()
    stop = asyncio.Event()
    port = free_port()
    app = create_app(settings, client=env.client, store=store)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    worker = asyncio.create_task(run_worker(settings, client=env.client, stop=stop))
    api = asyncio.create_task(server.serve())
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as http:
            for _ in range(100):
                try:
                    if (await http.get("/health")).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                await asyncio.sleep(0.1)
            deployed = await http.post(
                "/v1/journeys", json={"id": "ping", "source": SOURCE}, headers={"Authorization": f"Bearer {ADMIN}"}
            )
            deployed.raise_for_status()

            async def track(i: int) -> None:
                r = await http.post(
                    "/v1/track",
                    auth=(WRITE, ""),
                    json={"userId": f"api-{i}", "event": "clicked", "messageId": f"api-msg-{i}"},
                )
                r.raise_for_status()

            print(f"{rate:g} events/s for {seconds:g} s through POST /v1/track …")
            api_sent = await paced(rate, seconds, track)
            # the ingest maps userId to a member id; deliveries carry our user id
            api_lat = await latencies_by_member(store, api_sent)

        journey = compile_source(SOURCE)

        async def direct(i: int) -> None:
            user = f"direct-{i}"
            event = UserEvent(id=f"direct-msg-{i}", name="clicked")
            await env.client.start_workflow(
                JourneyWorkflow.run,
                JourneyInput(
                    journey_id="ping-direct",
                    version=1,
                    hash=journey.content_hash(),
                    user_id=user,
                    ir=journey,
                    trigger_event=event,
                ),
                id=workflow_id("ping-direct", user),
                task_queue=settings.task_queue,
                start_signal="event",
                start_signal_args=[event],
            )

        print(f"{rate:g} starts/s for {seconds:g} s straight to Temporal (baseline) …")
        direct_sent = await paced(rate, seconds, direct)
        direct_lat = await latencies(store, direct_sent, "direct-")
    finally:
        stop.set()
        server.should_exit = True
        await asyncio.gather(api, worker, return_exceptions=True)
        await env.shutdown()
    print(summary("API ingest → delivery", api_lat))
    print(summary("direct start → delivery", direct_lat))
    if api_lat:
        p99 = api_lat[min(len(api_lat) - 1, int(0.99 * len(api_lat)))]
        print(f"target p99 < 250 ms: {'met' if p99 < 250 else 'NOT met'} ({p99:.0f} ms)")


async def latencies_by_member(store: Store, sent: dict[str, float]) -> list[float]:
    """Deliveries for users created from ``userId=api-<i>`` (member ids)."""
    from engine.store.models import Identity

    deadline = time.time() + 120
    while True:
        with store.read() as s:
            rows = s.execute(
                select(Identity.value, Delivery.created_at)
                .join(Delivery, Delivery.user_id == Identity.user_id)
                .where(Identity.kind == "member_id", Identity.value.like("api-%"))
            ).all()
        if len(rows) >= len(sent) or time.time() > deadline:
            break
        await asyncio.sleep(0.5)
    out = []
    for member, created in rows:
        created_ts = created.replace(tzinfo=UTC).timestamp() if created.tzinfo is None else created.timestamp()
        out.append((created_ts - sent[member.removeprefix("api-")]) * 1000)
    if len(out) < len(sent):
        print(f"  warning: only {len(out)} of {len(sent)} deliveries recorded in time")
    return sorted(out)


if __name__ == "__main__":
    args = [float(a) for a in sys.argv[1:3]]
    asyncio.run(main(*(args + [20.0, 30.0][len(args) :])))
