"""Back-pressure on a broadcast's starts (``engine.broadcast_backlog``): at
most ``runs_ahead`` of the runs it started wait to begin, so the runs' queue
stays short; a worker that begins nothing does not stall it for ever."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

import pytest
from temporalio.testing import WorkflowEnvironment

from engine import broadcast_activities
from engine.broadcast_backlog import Backlog
from engine.schedules import start_broadcast
from engine.store import Store
from tests.audience.harness import audience_journey, engine, population
from tests.audience.test_broadcast_queue import WHERE, _result, _version


class _Runs:
    """A stand-in for the store's runs: which users' runs have begun."""

    def __init__(self) -> None:
        self.begun: set[str] = set()
        self.asked: list[list[str]] = []

    def __call__(self, user_ids: list[str]) -> Iterable[str]:
        self.asked.append(user_ids)
        return [u for u in user_ids if u in self.begun]


async def test_room_waits_until_a_started_run_begins() -> None:
    runs = _Runs()
    backlog = Backlog(runs, limit=2, stall_seconds=60, poll_seconds=0.01)
    await backlog.room()  # empty: no question asked
    backlog.started("a")
    await backlog.room()
    backlog.started("b")
    assert runs.asked == [] and backlog.waiting == 2
    waiter = asyncio.create_task(backlog.room())
    await asyncio.sleep(0.05)
    assert not waiter.done()  # two runs started, neither begun
    assert runs.asked and runs.asked[-1] == ["a", "b"]
    runs.begun.add("b")
    await asyncio.wait_for(waiter, 5)
    assert backlog.waiting == 1 and backlog.deepest == 2 and backlog.stalls == 0


async def test_runs_that_never_begin_are_let_go_after_the_stall() -> None:
    runs = _Runs()
    backlog = Backlog(runs, limit=1, stall_seconds=0.05, poll_seconds=0.01)
    backlog.started("a")
    await asyncio.wait_for(backlog.room(), 5)  # "a" never begins: let go
    assert (backlog.waiting, backlog.stalls) == (0, 1)


def test_a_limit_below_one_is_refused() -> None:
    with pytest.raises(ValueError):
        Backlog(_Runs(), limit=0)


async def test_a_broadcast_keeps_at_most_runs_ahead_waiting_to_begin(
    dev_env: WorkflowEnvironment, db: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """40 users, at most 3 runs started and not begun (one start at a time,
    so none passes the bound uncounted): every user still enters once and the
    broadcast's counts are exact."""
    seen: list[Backlog] = []

    class Recorded(Backlog):
        def __init__(self, *args: object, **kwargs: object) -> None:
            super().__init__(*args, **kwargs)  # type: ignore[arg-type]
            seen.append(self)

    monkeypatch.setattr(broadcast_activities, "Backlog", Recorded)
    expected = population(db, 40)
    journey_id, ir = audience_journey(WHERE)
    async with engine(dev_env.client, db, runs_ahead=3, start_concurrency=1) as eng:
        wid = await start_broadcast(
            dev_env.client, eng.task_queue, _version(journey_id, ir), ir, trigger="api", page_size=7
        )
        done = await _result(dev_env, wid, timeout=120)
        assert (done.status, done.matched, done.entered, done.skipped) == ("completed", len(expected), len(expected), 0)
        assert await eng.wait_runs_ended(journey_id, len(expected)) == len(expected)
        assert eng.admitted_runs(journey_id) == dict.fromkeys(expected, 1)
        assert eng.outbox_users(journey_id) == dict.fromkeys(expected, 1)
    assert seen and max(b.deepest for b in seen) == 3  # the bound was reached, and held
    assert sum(b.stalls for b in seen) == 0


async def test_with_no_journey_worker_a_broadcast_still_starts_everyone(
    dev_env: WorkflowEnvironment, db: Store
) -> None:
    """Nobody begins the runs: each time the bound is full and nothing began
    for the stall time, the broadcast goes on, so it completes."""
    expected = population(db, 12)
    journey_id, ir = audience_journey(WHERE)
    async with engine(dev_env.client, db, journey_worker=False, runs_ahead=2, stall_seconds=0.2) as eng:
        wid = await start_broadcast(
            dev_env.client, eng.task_queue, _version(journey_id, ir), ir, trigger="api", page_size=5
        )
        done = await _result(dev_env, wid, timeout=120)
        assert (done.status, done.entered) == ("completed", len(expected))
        assert eng.runs_total(journey_id) == 0
