"""``engine.shelf``: a kept count on the store's shelf is served by another
process (the second API process, one just restarted) without counting, its
recount is left to whoever finds it due, and a count that is cheap again or
whose recount failed is taken off. Two ``CountCache`` objects over one real
store (SQLite and PostgreSQL) stand for two processes."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from types import SimpleNamespace

import pytest
from sqlalchemy import func, select, update

from dsl import load
from engine import count_cache, node_numbers
from engine.count_cache import CountCache
from engine.shelf import Shelf
from engine.store import Store, utcnow
from engine.store.models import KeptCount


@pytest.fixture
def expensive(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every count is expensive; kept counts are young for a minute."""
    for name in ("EXPENSIVE", "EXPENSIVE_CPU", "EXPENSIVE_REMOTE"):
        monkeypatch.setattr(count_cache, name, 0.0)
    monkeypatch.setattr(count_cache, "MIN_AGE", 60.0)
    monkeypatch.setattr(count_cache, "SPACING", 0.0)


def shelf(store: Store, name: str = "nodes j1") -> Shelf[dict[str, int]]:
    return Shelf(store, "j1", name, dict, lambda found: {k: int(v) for k, v in found.items()})


def counter(values: list[dict[str, int]]) -> tuple[Callable[[], dict[str, int]], list[int]]:
    calls: list[int] = []

    def count() -> dict[str, int]:
        calls.append(1)
        return values[min(len(calls), len(values)) - 1]

    return count, calls


def shelved(store: Store) -> int:
    with store.read() as s:
        return int(s.execute(select(func.count()).select_from(KeptCount)).scalar_one())


def until(check: Callable[[], bool]) -> bool:
    for _ in range(300):
        if check():
            return True
        time.sleep(0.01)
    return False


def test_a_second_process_serves_the_kept_count_without_counting(store: Store, expensive: None) -> None:
    first, second = CountCache(), CountCache()
    count, calls = counter([{"a": 1}, {"a": 2}, {"a": 99}])
    assert first.get("k", count, shelf=shelf(store)) == {"a": 1}
    assert shelved(store) == 0  # over once: not kept, not shelved
    assert first.get("k", count, shelf=shelf(store)) == {"a": 2}
    assert shelved(store) == 1
    assert second.get("k", count, shelf=shelf(store)) == {"a": 2}  # the shelf's, not a count of its own
    assert len(calls) == 2
    age = second.age("k")
    assert age is not None and age >= 0  # and it says how old it is
    assert second.get("k", count, shelf=None) == {"a": 2}  # now kept in this process too


def test_without_a_shelf_each_process_counts_for_itself(store: Store, expensive: None) -> None:
    first, second = CountCache(), CountCache()
    count, calls = counter([{"a": 1}, {"a": 2}, {"a": 3}])
    first.get("k", count)
    first.get("k", count)
    assert second.get("k", count) == {"a": 3} and len(calls) == 3 and shelved(store) == 0


def test_small_counts_never_write_to_the_shelf(store: Store) -> None:
    cache = CountCache()
    count, calls = counter([{"a": 1}, {"a": 2}, {"a": 3}])
    assert [cache.get("k", count, shelf=shelf(store))["a"] for _ in range(3)] == [1, 2, 3]
    assert shelved(store) == 0 and cache.age("k") is None


def test_a_recount_another_process_just_did_is_not_done_again(store: Store, expensive: None) -> None:
    first, second = CountCache(), CountCache()
    count, calls = counter([{"a": 1}, {"a": 2}, {"a": 3}, {"a": 4}])
    first.get("k", count, shelf=shelf(store))
    first.get("k", count, shelf=shelf(store))  # kept and shelved: {"a": 2}
    assert second.get("k", count, shelf=shelf(store)) == {"a": 2}
    first._kept["k"].taken_at -= 120  # a couple of minutes later: due (MIN_AGE is a minute here)
    with store.session() as s:
        s.execute(update(KeptCount).values(taken_at=utcnow() - timedelta(minutes=2)))
    assert first.get("k", count, shelf=shelf(store)) == {"a": 2}  # due: recounted in the background
    assert until(lambda: (found := shelf(store).load()) is not None and found.value == {"a": 3})  # and shelved
    assert first.get("k", count, shelf=shelf(store)) == {"a": 3}
    assert second.get("k", count, shelf=shelf(store)) == {"a": 2}  # the second's own is still young
    second._kept["k"].taken_at -= 120  # ...until it is a couple of minutes old
    assert second.get("k", count, shelf=shelf(store)) == {"a": 2}
    assert until(lambda: second.get("k", count, shelf=shelf(store)) == {"a": 3})
    time.sleep(0.05)
    assert len(calls) == 3  # the second took the first's recount instead of counting


def test_a_count_cheap_again_is_taken_off_the_shelf(
    store: Store, expensive: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = CountCache()
    count, _ = counter([{"a": 1}, {"a": 2}, {"a": 3}, {"a": 4}])
    first.get("k", count, shelf=shelf(store))
    first.get("k", count, shelf=shelf(store))
    assert shelved(store) == 1
    monkeypatch.setattr(count_cache, "EXPENSIVE", float("inf"))
    monkeypatch.setattr(count_cache, "MIN_AGE", 0.0)
    first.get("k", count, shelf=shelf(store))  # served; the recount is cheap
    assert until(lambda: shelved(store) == 0)
    assert CountCache().get("k", count, shelf=shelf(store)) == {"a": 4}  # a new process counts afresh


def test_a_failed_recount_takes_it_off_the_shelf(store: Store, expensive: None) -> None:
    async def main() -> None:
        calls: list[int] = []

        async def count() -> dict[str, int]:
            calls.append(1)
            if len(calls) > 2:
                raise ConnectionError("visibility is gone")
            return {"a": len(calls)}

        first = CountCache()
        await first.aget("k", count, shelf=shelf(store))
        assert await first.aget("k", count, shelf=shelf(store)) == {"a": 2}
        assert shelved(store) == 1
        first._kept["k"].taken_at -= 120  # due, here and on the shelf
        with store.session() as s:
            s.execute(update(KeptCount).values(taken_at=utcnow() - timedelta(minutes=2)))
        assert await first.aget("k", count, shelf=shelf(store)) == {"a": 2}  # served; the recount fails
        for _ in range(300):
            if shelved(store) == 0:
                break
            await asyncio.sleep(0.01)
        assert shelved(store) == 0 and first.age("k") is None
        with pytest.raises(ConnectionError):
            await CountCache().aget("k", count, shelf=shelf(store))  # nobody serves the stale count

    asyncio.run(main())


def test_an_unreadable_shelf_counts_afresh(store: Store, expensive: None) -> None:
    first = CountCache()
    count, calls = counter([{"a": 1}, {"a": 2}, {"a": 3}])
    first.get("k", count, shelf=shelf(store))
    first.get("k", count, shelf=shelf(store))
    with store.session() as s:
        s.execute(update(KeptCount).values(value="{not json"))
    assert CountCache().get("k", count, shelf=shelf(store)) == {"a": 3} and len(calls) == 3


def test_the_shelf_is_read_only_without_a_count_of_its_own(store: Store) -> None:
    """A small journey's calls do not read the shelf every time: never once
    this process has its own count (one it found cheap is its own to take),
    and after a miss not again for ``MIN_AGE`` seconds."""
    reads: list[int] = []
    probe = shelf(store)

    class Counting(Shelf[dict[str, int]]):
        def load(self):  # noqa: ANN202
            reads.append(1)
            return super().load()

    counted = Counting(probe.store, probe.journey_id, probe.name, probe.encode, probe.decode)
    cache = CountCache()
    count, _ = counter([{"a": 1}])
    cache.get("k", count, shelf=counted)
    assert reads == [1]
    cache.get("k", count, shelf=counted)  # cheap: counted again, the shelf not read
    assert reads == [1]
    cache._kept.clear()  # its own count gone (evicted): the miss a moment ago still holds
    cache.get("k", count, shelf=counted)
    assert reads == [1]
    cache._kept.clear()
    cache._missed["k"] -= 60  # a minute later it is read again
    cache.get("k", count, shelf=counted)
    assert reads == [1, 1]


def test_an_old_shelved_count_is_not_served(store: Store, expensive: None) -> None:
    """A row nobody has recounted for ``SHELF_LIFE`` (every process that
    served it gone) is a miss: counted afresh, not served as current."""
    first = CountCache()
    count, calls = counter([{"a": 1}, {"a": 2}, {"a": 3}])
    first.get("k", count, shelf=shelf(store))
    first.get("k", count, shelf=shelf(store))
    with store.session() as s:
        s.execute(update(KeptCount).values(taken_at=utcnow() - timedelta(seconds=count_cache.SHELF_LIFE + 60)))
    assert CountCache().get("k", count, shelf=shelf(store)) == {"a": 3} and len(calls) == 3


def test_waiting_counts_are_shelved_for_the_other_api_processes(
    store: Store, expensive: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    ir = load(Path(__file__).parents[2] / "journeys" / "01_new_user_first_order.journey")
    nodes = node_numbers.waiting_nodes(ir)
    asked: list[str] = []

    async def count_workflows(query: str) -> SimpleNamespace:
        asked.append(query)
        return SimpleNamespace(count=len(asked))

    client = SimpleNamespace(count_workflows=count_workflows)

    def waiting() -> dict[str, int] | None:
        return asyncio.run(node_numbers.live_waiting(client, "j-shelf", ir, None, None, store))[0]  # type: ignore[arg-type]

    monkeypatch.setattr(node_numbers, "COUNTS", CountCache())
    waiting()
    kept = waiting()
    assert kept is not None and shelved(store) == 1
    asked_before = len(asked)
    monkeypatch.setattr(node_numbers, "COUNTS", CountCache())  # another API process
    assert waiting() == kept and len(asked) == asked_before
    assert node_numbers.waiting_age(client, "j-shelf", ir, None) is not None  # type: ignore[arg-type]
    assert set(kept) == set(nodes)


def test_a_503_begins_visibilitys_first_count_without_waiting_for_it(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The stats call that answers "counting" starts the waiting counts too
    (``begin_only``: no wait of their own), so the next call has them."""
    from engine import stats
    from tests.api.many_runs import seed_waiting

    ir = load(Path(__file__).parents[2] / "journeys" / "01_new_user_first_order.journey")
    seed_waiting(store, "j-begin", 2)
    monkeypatch.setattr(stats, "BIG_RUNS", 2)
    monkeypatch.setattr(node_numbers, "COUNTS", CountCache())

    async def main() -> None:
        gate = asyncio.Event()
        asked: list[str] = []

        async def count_workflows(query: str) -> SimpleNamespace:
            asked.append(query)
            await gate.wait()
            return SimpleNamespace(count=6)

        client = SimpleNamespace(count_workflows=count_workflows)
        waiting, why = await node_numbers.live_waiting(
            client, "j-begin", ir, None, None, store, quick=True, begin_only=True
        )  # type: ignore[arg-type]
        assert waiting is None and why is not None and why.startswith("counting who waits where")
        await asyncio.sleep(0.05)
        assert asked  # begun, in the background
        gate.set()
        for _ in range(300):
            waiting, why = await node_numbers.live_waiting(client, "j-begin", ir, None, None, store, quick=True)  # type: ignore[arg-type]
            if waiting is not None:
                break
            await asyncio.sleep(0.01)
        assert waiting == dict.fromkeys(node_numbers.waiting_nodes(ir), 6) and why is None

    asyncio.run(main())
