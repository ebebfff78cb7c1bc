"""Issue 13 item 8 with a real Temporal dev server that dies and comes back:
the API on uvicorn (its own lifespan: it connects to Temporal itself and
runs the redelivery sweep), a worker, SQLite.

With the server killed (``kill -9``), ``/v1/track`` and ``/v1/batch`` store
their events and answer ``202`` while the deliveries are still under way
(Temporal's client would retry for about ten seconds a call: inline, that
was the answer's time); stopping the API then does not wait for them (they
are cancelled after the grace and stay undispatched).
An API started while Temporal is still down has no client: it stores events
and answers 202 until it connects by itself. Once the server is
back, that API connects, its sweep delivers every one of the events left
undispatched, and each user gets the send exactly once: in the ledger and
in the outbox.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import time
from contextlib import suppress
from pathlib import Path

import httpx
from sqlalchemy import select

from api.app import create_app
from api.child_guard import children_of
from engine.channels.config import ChannelsConfig
from engine.queries import lookup
from engine.store import Store
from engine.store.models import Delivery, Event
from engine.temporal import connect, start_dev_server
from runtime.worker import build_activities, build_worker
from tests.api.conftest import ADMIN, WRITE, LiveServer, eventually, make_settings

SOURCE = """
journey "down"
  entry event clicked
  reentry always
  send webhook "ping"
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _dev_server_pid(port: int) -> int:
    """The dev server the SDK started for us on ``port`` (our child)."""
    for pid in children_of(os.getpid()):
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"start-dev" in cmd and str(port).encode() in cmd:
            return pid
    raise AssertionError(f"no dev server on port {port} among our children")


def _gone(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] == "Z"


def _events(store: Store, ids: list[str]) -> dict[str, Event]:
    with store.read() as s:
        return {e.id: e for e in s.scalars(select(Event).where(Event.id.in_(ids)))}


def _deliveries(store: Store) -> list[tuple[str, str]]:
    with store.read() as s:
        rows = s.execute(select(Delivery.user_id, Delivery.status).where(Delivery.journey_id == "down")).all()
    return sorted((user, status) for user, status in rows)


def _outbox(path: Path) -> list[str]:
    """The user ids of the messages the channel wrote."""
    if not path.exists():
        return []
    return sorted(json.loads(line)["message"]["user_id"] for line in path.read_text().splitlines() if line.strip())


def _user(store: Store, member_id: str) -> str:
    found = lookup(store, "member_id", member_id)
    assert found is not None, member_id
    return found


async def _async(value):  # noqa: ANN001, ANN202
    return value


async def test_temporal_down_ingest_answers_shutdown_is_bounded_and_every_event_is_sent_once_it_is_back(
    tmp_path: Path,
) -> None:
    port = _free_port()
    temporal_db = str(tmp_path / "temporal.db")
    outbox = tmp_path / "outbox.jsonl"
    settings = make_settings(
        tmp_path,
        "tq-temporal-down",
        temporal_address=f"127.0.0.1:{port}",
        redispatch_seconds=1.0,
        ingest_answer_seconds=0.5,
        delivery_deadline_seconds=600.0,  # longer than the test: shutdown, not the deadline, ends them
        shutdown_grace_seconds=0.5,
    )
    settings.channels = ChannelsConfig.demo(outbox)
    store = Store(settings.database_url)
    store.migrate()
    env = await start_dev_server(temporal_db, port=port)
    back = None
    try:
        worker_client = await connect(settings.temporal_address)
        async with build_worker(worker_client, build_activities(settings, store).all(), settings.task_queue):
            first = create_app(settings, store=store)
            live = LiveServer(first)
            with live as url:
                async with httpx.AsyncClient(base_url=url, timeout=60) as http:
                    admin = {"Authorization": f"Bearer {ADMIN}"}
                    r = await http.put("/v1/templates/ping", json={"body": "ping {{ user.id }}"}, headers=admin)
                    assert r.status_code in (200, 201), r.text
                    r = await http.post("/v1/journeys", json={"id": "down", "source": SOURCE}, headers=admin)
                    assert r.status_code == 201, r.text
                    r = await http.post(
                        "/v1/track", auth=(WRITE, ""), json={"userId": "up-1", "event": "clicked", "messageId": "up-1"}
                    )
                    assert r.status_code in (200, 202)
                    assert await eventually(lambda: _async([s for _, s in _deliveries(store)] == ["sent"]))

                    server = _dev_server_pid(port)
                    os.kill(server, signal.SIGKILL)
                    assert await eventually(lambda: _async(_gone(server)))

                    track = {"userId": "down-1", "event": "clicked", "messageId": "down-1"}
                    took = {"track": -time.perf_counter()}
                    r = await http.post("/v1/track", auth=(WRITE, ""), json=track)
                    took["track"] += time.perf_counter()
                    assert (r.status_code, r.json()) == (202, {"success": True})
                    # answered while its delivery was still waiting on Temporal
                    assert "down-1" in first.state.dispatcher.in_flight
                    batch = [
                        {"type": "track", "userId": f"down-b{i}", "event": "clicked", "messageId": f"down-b{i}"}
                        for i in range(3)
                    ]
                    took["batch"] = -time.perf_counter()
                    r = await http.post("/v1/batch", auth=(WRITE, ""), json={"batch": batch})
                    took["batch"] += time.perf_counter()
                    assert (r.status_code, r.json()) == (202, {"success": True})
                    assert {"down-1", "down-b0", "down-b1", "down-b2"} <= first.state.dispatcher.in_flight
                    took["shutdown"] = -time.perf_counter()
            # Stopping the API with those deliveries under way and Temporal still
            # down took a Temporal client's retries per event; now the grace.
            took["shutdown"] += time.perf_counter()
            assert not live.thread.is_alive(), "the API did not stop while Temporal was down"
            print("\nTemporal down: " + ", ".join(f"{k} {v:.2f} s" for k, v in took.items()))  # for reading only
            waiting = ["down-1", "down-b0", "down-b1", "down-b2"]
            stored = _events(store, waiting)
            assert sorted(stored) == sorted(waiting) and all(e.dispatched_at is None for e in stored.values())

            # An API started while Temporal is down has no client: it stores the
            # event all the same (202) and its sweep delivers it once it connects.
            second = create_app(settings, store=store)
            with LiveServer(second) as url:
                assert second.state.client is None
                async with httpx.AsyncClient(base_url=url, timeout=60) as http:
                    track = {"userId": "down-2", "event": "clicked", "messageId": "down-2"}
                    r = await http.post("/v1/track", auth=(WRITE, ""), json=track)
                    assert (r.status_code, r.json()) == (202, {"success": True})
                    assert _events(store, ["down-2"])["down-2"].dispatched_at is None

                    # Temporal is back (same port, same state): the sweep connects
                    # and delivers; the worker reconnects and sends
                    back = await start_dev_server(temporal_db, port=port)
                    assert await eventually(lambda: _async(second.state.client is not None), attempts=600)
                    r = await http.post("/v1/track", auth=(WRITE, ""), json=track)  # a resend: still once
                    assert r.status_code in (200, 202)
                    waiting.append("down-2")
                    users = sorted(_user(store, member) for member in ["up-1", *waiting])

                    def settled() -> list[tuple[str, str]] | None:
                        found = _deliveries(store)
                        done = len(found) >= len(users) and all(status != "reserved" for _, status in found)
                        return found if done else None

                    sent = await eventually(lambda: _async(settled()), attempts=1200)
                    assert sent == [(user, "sent") for user in users], sent
                    assert await eventually(
                        lambda: _async(all(e.dispatched_at is not None for e in _events(store, waiting).values()))
                    )
                    assert second.state.client is not None
                    # a few more sweeps find nothing to deliver twice
                    await asyncio.sleep(3 * settings.redispatch_seconds)
            assert _deliveries(store) == [(user, "sent") for user in users]
            assert _outbox(outbox) == users
    finally:
        with suppress(Exception):
            await env.shutdown()
        if back is not None:
            await back.shutdown()
        store.dispose()
