"""``engine.count_cache``: cheap counts are always fresh; an expensive one is
served as kept and retaken once in the background when old enough."""

from __future__ import annotations

import threading
import time

import pytest

from engine import count_cache
from engine.count_cache import CountCache


def test_cheap_counts_are_taken_every_time() -> None:
    cache, calls = CountCache(), []
    for i in range(3):
        assert cache.get("k", lambda i=i: calls.append(i) or i) == i
    assert calls == [0, 1, 2] and cache.age("k") is None


def test_an_expensive_count_is_kept_then_retaken_once(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(count_cache, "EXPENSIVE", 0.0)  # every count is "expensive"
    monkeypatch.setattr(count_cache, "MIN_AGE", 0.05)
    monkeypatch.setattr(count_cache, "SPACING", 0.0)
    cache, calls, gate = CountCache(), [], threading.Event()

    def count() -> int:
        calls.append(len(calls))
        if len(calls) > 2:
            gate.wait(5)  # the background recount is slow
        return len(calls)

    assert cache.get("k", count) == 1 and cache.age("k") is None  # once over: not kept yet
    assert cache.get("k", count) == 2  # twice in a row: kept
    assert cache.get("k", count) == 2 and calls == [0, 1]  # young: served as kept
    age = cache.age("k")
    assert age is not None and age >= 0  # the answer can say how old it is
    time.sleep(0.06)
    assert cache.get("k", count) == 2 and cache.get("k", count) == 2  # old: kept value, one recount started
    gate.set()
    for _ in range(100):
        if cache.get("k", count) == 3:
            break
        time.sleep(0.01)
    assert calls[:3] == [0, 1, 2] and cache.get("k", count) in (3, 4)


def test_one_slow_count_is_not_kept() -> None:
    """A process's first count also compiles its statements: one slow take
    alone (then cheap ones) keeps every answer fresh."""
    cache, calls = CountCache(), []

    def count() -> int:
        calls.append(1)
        if len(calls) == 1:
            time.sleep(count_cache.EXPENSIVE + 0.05)
        return len(calls)

    assert [cache.get("k", count) for _ in range(3)] == [1, 2, 3]
    assert cache.age("k") is None


def test_in_process_counts_cost_their_cpu_not_their_waits() -> None:
    """A small SQLite count slowed by a loaded machine (waiting, not working)
    stays exact; the same wait from a server (wall time) is kept."""
    local, served, calls = CountCache(), CountCache(), []

    def count() -> int:
        calls.append(1)
        time.sleep(count_cache.EXPENSIVE + 0.05)
        return len(calls)

    assert local.get("k", count, in_process=True) == 1
    assert local.get("k", count, in_process=True) == 2  # taken again: it cost no CPU
    assert served.get("k", count) == 3
    assert served.get("k", count) == 4
    assert served.get("k", count) == 4  # kept: it took long on the wall clock, twice


def test_stats_say_how_old_kept_counts_are(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:  # noqa: ANN001
    """``stats.counts_age``: None while a journey is counted for each answer,
    the kept counts' age once they are expensive enough to be kept."""
    from engine import stats
    from engine.store import Store

    store = Store(f"sqlite:///{tmp_path / 'age.db'}")
    store.migrate()
    monkeypatch.setattr(count_cache, "EXPENSIVE_CPU", float("inf"))  # cheap, however cold this process is
    fresh = stats.node_counts(store, "j-age")
    assert stats.counts_age(store, "j-age") is None and stats.node_counts_are_fresh(store, "j-age")
    assert stats.if_fresh(fresh, store, "j-age") is fresh
    monkeypatch.setattr(count_cache, "EXPENSIVE_CPU", 0.0)  # every count is "expensive"
    stats.node_counts(store, "j-age")
    assert stats.counts_age(store, "j-age") is None  # expensive once: still counted for each answer
    stats.node_counts(store, "j-age")
    age = stats.counts_age(store, "j-age")
    assert age is not None and age >= 0
    assert not stats.node_counts_are_fresh(store, "j-age")  # kept: live_waiting is not given them
    assert stats.if_fresh(fresh, store, "j-age") is None
    store.dispose()


def test_an_expensive_awaited_count_is_kept_and_retaken_in_a_task(monkeypatch: pytest.MonkeyPatch) -> None:
    """``aget``: the same policy for a count another server takes (Temporal
    visibility), its recount a task of the running loop."""
    import asyncio

    monkeypatch.setattr(count_cache, "EXPENSIVE_REMOTE", 0.0)
    monkeypatch.setattr(count_cache, "MIN_AGE", 0.05)
    monkeypatch.setattr(count_cache, "SPACING", 0.0)
    cache, calls = CountCache(), []

    async def main() -> None:
        gate = asyncio.Event()

        async def count() -> int:
            calls.append(len(calls))
            if len(calls) > 2:
                await gate.wait()
            return len(calls)

        assert await cache.aget("k", count) == 1 and cache.age("k") is None
        assert await cache.aget("k", count) == 2  # twice over: kept
        assert await cache.aget("k", count) == 2 and calls == [0, 1]
        await asyncio.sleep(0.06)
        assert await cache.aget("k", count) == 2 and await cache.aget("k", count) == 2
        await asyncio.sleep(0)
        assert calls == [0, 1, 2]  # one recount, in the background
        gate.set()
        for _ in range(100):
            if await cache.aget("k", count) == 3:
                break
            await asyncio.sleep(0.01)
        assert await cache.aget("k", count) in (3, 4)

    asyncio.run(main())


def test_quick_awaited_counts_are_taken_every_time() -> None:
    import asyncio

    cache, calls = CountCache(), []

    async def count() -> int:
        calls.append(1)
        return len(calls)

    async def main() -> list[int]:
        return [await cache.aget("k", count) for _ in range(3)]

    assert asyncio.run(main()) == [1, 2, 3] and cache.age("k") is None


def test_waiting_counts_are_kept_once_visibility_is_slow(monkeypatch: pytest.MonkeyPatch) -> None:
    """``live_waiting`` (stats, the diagram's badges) counts each waiting node
    in visibility; at 100k runs that took 1.8 s a call, so a slow count is
    kept like the store's, and ``waiting_age`` says how old it is."""
    import asyncio
    from pathlib import Path
    from types import SimpleNamespace

    from dsl import load
    from engine import node_numbers

    ir = load(Path(__file__).parents[2] / "journeys" / "01_new_user_first_order.journey")
    nodes = node_numbers.waiting_nodes(ir)
    assert nodes
    asked: list[str] = []
    answer = {"count": 0}

    async def count_workflows(query: str) -> SimpleNamespace:
        asked.append(query)
        return SimpleNamespace(count=answer["count"])

    client = SimpleNamespace(count_workflows=count_workflows)
    monkeypatch.setattr(node_numbers, "COUNTS", CountCache())

    def waiting(count: int) -> dict[str, int] | None:
        answer["count"] = count
        return asyncio.run(node_numbers.live_waiting(client, "j-kept", ir, None))[0]  # type: ignore[arg-type]

    monkeypatch.setattr(count_cache, "EXPENSIVE_REMOTE", float("inf"))
    assert [waiting(n) for n in (1, 2, 3)] == [dict.fromkeys(nodes, n) for n in (1, 2, 3)]
    assert node_numbers.waiting_age(client, "j-kept", ir, None) is None  # type: ignore[arg-type]
    monkeypatch.setattr(count_cache, "EXPENSIVE_REMOTE", 0.0)
    assert [waiting(n) for n in (4, 5, 6)] == [dict.fromkeys(nodes, n) for n in (4, 5, 5)]  # slow twice: kept
    assert len(asked) == 5 * len(nodes) and any(f'JourneyStep = "{nodes[0]}"' in q for q in asked)
    age = node_numbers.waiting_age(client, "j-kept", ir, None)  # type: ignore[arg-type]
    assert age is not None and age >= 0


def test_only_nodes_where_a_run_ever_waited_are_counted_in_visibility(monkeypatch: pytest.MonkeyPatch) -> None:
    """A run records "waiting" at a node in the workflow task that upserts
    it there, so a node the store never saw a run wait at has nobody waiting:
    stats ask visibility about the others only (one count each, each reading
    every running run of the journey)."""
    import asyncio
    from pathlib import Path
    from types import SimpleNamespace

    from dsl import load
    from engine import node_numbers
    from engine.stats import NodeStats

    ir = load(Path(__file__).parents[2] / "journeys" / "01_new_user_first_order.journey")
    nodes = node_numbers.waiting_nodes(ir)
    assert len(nodes) >= 2
    asked: list[str] = []

    async def count_workflows(query: str) -> SimpleNamespace:
        asked.append(query)
        return SimpleNamespace(count=7)

    client = SimpleNamespace(count_workflows=count_workflows)
    monkeypatch.setattr(node_numbers, "COUNTS", CountCache())
    stored = {
        nodes[0]: NodeStats(node_id=nodes[0], entered=9, waiting=9),
        nodes[1]: NodeStats(node_id=nodes[1], entered=3, waiting=0),  # reached, never waited at
    }

    def waiting(known: dict[str, NodeStats] | None) -> dict[str, int] | None:
        asked.clear()
        return asyncio.run(node_numbers.live_waiting(client, "j-asked", ir, None, known))[0]  # type: ignore[arg-type]

    assert waiting(stored) == {nodes[0]: 7} and len(asked) == 1 and f'JourneyStep = "{nodes[0]}"' in asked[0]
    rows = node_numbers.node_rows(ir, stored, waiting(stored))
    assert {r.node_id: r.waiting for r in rows if r.node_id in nodes} == {n: 7 if n == nodes[0] else 0 for n in nodes}
    assert waiting({}) == {} and asked == []  # nobody ever waited anywhere: no count at all
    assert waiting(None) == dict.fromkeys(nodes, 7) and len(asked) == len(nodes)  # no store counts: every node


def test_a_failed_recount_forgets_the_kept_count(monkeypatch: pytest.MonkeyPatch) -> None:
    """A kept count whose recount fails is dropped: the next caller counts
    afresh and sees the failure (Temporal gone: the stats say so) instead of
    numbers that only grow old."""
    import asyncio

    monkeypatch.setattr(count_cache, "EXPENSIVE_REMOTE", 0.0)
    monkeypatch.setattr(count_cache, "MIN_AGE", 0.0)
    monkeypatch.setattr(count_cache, "SPACING", 0.0)
    cache, calls = CountCache(), []

    async def count() -> int:
        calls.append(1)
        if len(calls) > 2:
            raise ConnectionError("visibility is gone")
        return len(calls)

    async def main() -> None:
        assert await cache.aget("k", count) == 1
        assert await cache.aget("k", count) == 2  # kept
        assert await cache.aget("k", count) == 2  # served; the recount starts and fails
        for _ in range(100):
            if cache.age("k") is None:
                break
            await asyncio.sleep(0.01)
        assert cache.age("k") is None and len(calls) == 3
        with pytest.raises(ConnectionError):
            await cache.aget("k", count)

    asyncio.run(main())


def test_a_first_count_the_caller_will_not_wait_for_goes_on_behind_it() -> None:
    """``wait``: a big journey's first count is waited for only so long
    (``Counting``); every caller meanwhile shares that one count, and it is
    kept once done (slow: no second count needed to find that out)."""
    cache, calls, gate = CountCache(), [], threading.Event()

    def count() -> int:
        calls.append(1)
        gate.wait(5)
        time.sleep(count_cache.EXPENSIVE + 0.01)
        return 7

    for _ in range(2):
        with pytest.raises(count_cache.Counting) as counting:
            cache.get("k", count, wait=lambda: 0.05)
        assert counting.value.seconds >= 0.05
    assert len(calls) == 1  # one count, not one per caller
    gate.set()
    for _ in range(300):
        try:
            if cache.get("k", count, wait=lambda: 0.05) == 7:
                break
        except count_cache.Counting:
            time.sleep(0.01)
    assert cache.get("k", count, wait=lambda: 0.05) == 7 and len(calls) == 1  # kept at once
    assert cache.age("k") is not None


def test_a_quick_first_count_answers_and_a_failed_one_says_why() -> None:
    cache = CountCache()
    assert cache.get("fast", lambda: 3, wait=lambda: 1.0) == 3
    assert cache.age("fast") is None  # fast: not kept, counted afresh next time

    def broken() -> int:
        raise ConnectionError("the store is gone")

    with pytest.raises(ConnectionError):
        cache.get("broken", broken, wait=lambda: 1.0)
    with pytest.raises(ConnectionError):  # not a first count stuck "under way"
        cache.get("broken", broken, wait=lambda: 1.0)


def test_an_awaited_first_count_goes_on_behind_the_caller() -> None:
    import asyncio

    cache, calls = CountCache(), []

    async def main() -> None:
        gate = asyncio.Event()

        async def count() -> int:
            calls.append(1)
            await gate.wait()
            await asyncio.sleep(count_cache.EXPENSIVE_REMOTE + 0.01)
            return 9

        async def quickly() -> float:
            return 0.05

        for _ in range(2):
            with pytest.raises(count_cache.Counting):
                await cache.aget("k", count, wait=quickly)
        assert len(calls) == 1
        gate.set()
        await asyncio.sleep(count_cache.EXPENSIVE_REMOTE + 0.1)
        assert await cache.aget("k", count, wait=quickly) == 9 and len(calls) == 1
        assert cache.age("k") is not None

    asyncio.run(main())


def test_a_first_count_that_outlived_the_wait_is_served_however_cheap() -> None:
    """On a loaded machine a big journey's cheap count (little CPU: SQLite,
    ``in_process``) can outlive the wait on the wall clock. Its callers were
    told to come back: it is kept and served then, not counted again into
    another "counting" answer."""
    cache, calls, gate = CountCache(), [], threading.Event()

    def count() -> int:
        calls.append(1)
        gate.wait(5)  # waiting, not working: no CPU
        return 5

    with pytest.raises(count_cache.Counting):
        cache.get("k", count, in_process=True, wait=lambda: 0.05)
    gate.set()
    for _ in range(300):
        try:
            assert cache.get("k", count, in_process=True, wait=lambda: 0.05) == 5
            break
        except count_cache.Counting:
            time.sleep(0.01)
    assert len(calls) == 1 and cache.age("k") is not None


def test_counting_is_said_only_of_a_first_count(monkeypatch: pytest.MonkeyPatch) -> None:
    """A big journey whose recount turned out cheap is counted in the
    caller's thread after that: not told "counting" every few seconds."""
    monkeypatch.setattr(count_cache, "MIN_AGE", 0.0)
    monkeypatch.setattr(count_cache, "SPACING", 0.0)
    cache, calls, gate = CountCache(), [], threading.Event()

    def count() -> int:
        calls.append(1)
        if len(calls) == 1:
            gate.wait(5)  # the first outlives the wait, with no CPU
        return len(calls)

    with pytest.raises(count_cache.Counting):
        cache.get("k", count, in_process=True, wait=lambda: 0.05)
    gate.set()
    for _ in range(1000):
        if cache.age("k") is not None:
            break
        time.sleep(0.01)
    assert cache.get("k", count, in_process=True, wait=lambda: 0.05) == 1  # kept at once; due: recounted behind
    for _ in range(1000):
        if cache.age("k") is None:  # the recount was cheap: no longer kept
            break
        time.sleep(0.01)
    assert cache.age("k") is None
    assert cache.get("k", count, in_process=True, wait=lambda: 0.0) == 3  # counted here, not "counting"


def test_a_first_count_that_fails_slowly_hands_its_error_to_the_next_caller() -> None:
    cache, calls, gate = CountCache(), [], threading.Event()

    def count() -> int:
        calls.append(1)
        gate.wait(5)
        raise ConnectionError("the store is gone")

    with pytest.raises(count_cache.Counting):
        cache.get("k", count, wait=lambda: 0.05)
    gate.set()
    time.sleep(0.05)
    with pytest.raises(ConnectionError):  # not "counting" for ever
        cache.get("k", count, wait=lambda: 0.05)
    assert len(calls) == 1
    with pytest.raises(ConnectionError):  # the one after that counts again (failing fast now)
        cache.get("k", count, wait=lambda: 1.0)
    assert len(calls) == 2


def test_a_caller_without_a_wait_joins_the_first_count_under_way() -> None:
    """The diagram's badges and the node panel do not wait quick: they wait
    for the count a stats call began, not a second count beside it."""
    cache, calls, gate = CountCache(), [], threading.Event()

    def count() -> int:
        calls.append(1)
        gate.wait(5)
        return 4

    with pytest.raises(count_cache.Counting):
        cache.get("k", count, wait=lambda: 0.05)
    threading.Timer(0.1, gate.set).start()
    assert cache.get("k", count) == 4 and len(calls) == 1


def test_a_count_long_untaken_is_a_first_count_again() -> None:
    """A page watched at 1k runs and opened again at 50k, the process alive
    in between: its last count is older than ``SHELF_LIFE``, so the big
    count is not held for but answered "counting"."""
    cache, gate = CountCache(), threading.Event()
    assert cache.get("k", lambda: 1, wait=lambda: 0.05) == 1  # small then: counted in the caller's thread
    cache._kept["k"].taken_at -= count_cache.SHELF_LIFE + 1

    def big() -> int:
        gate.wait(5)
        return 2

    with pytest.raises(count_cache.Counting):
        cache.get("k", big, wait=lambda: 0.05)
    gate.set()


def test_a_goal_attribution_is_kept_like_the_counts(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:  # noqa: ANN001
    """``stats.goal_attribution`` (the journeys list and the stats call): taken
    for each answer while cheap, kept once expensive."""
    from engine import goals, stats
    from engine.store import Store

    store = Store(f"sqlite:///{tmp_path / 'goals.db'}")
    store.migrate()
    monkeypatch.setattr(stats, "COUNTS", CountCache())
    calls: list[int] = []

    def attribute(s: Store, journey_id: str, version: int | None = None) -> goals.Attribution:
        calls.append(1)
        return goals.Attribution([], incomplete=len(calls) > 99)

    monkeypatch.setattr(goals, "attribute", attribute)
    monkeypatch.setattr(count_cache, "EXPENSIVE_CPU", float("inf"))
    for _ in range(3):
        stats.goal_attribution(store, "j-goals")
    assert len(calls) == 3  # cheap: taken each time
    monkeypatch.setattr(count_cache, "EXPENSIVE_CPU", 0.0)
    monkeypatch.setattr(count_cache, "MIN_AGE", 60.0)
    for _ in range(4):
        stats.goal_attribution(store, "j-goals")
    assert len(calls) == 5  # expensive twice in a row, then kept
    store.dispose()
