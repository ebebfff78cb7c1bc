"""Keeping a journey's counts when they are expensive to take.

A journey with 100k runs waiting has ~400k step records; counting distinct
runs per node and outcome read them all (10 s on SQLite on a loaded 2-core
machine, ``bench/waiting_bench.py``) on every stats call and every poll of
the journey page. Counts that cheap (under ``EXPENSIVE`` seconds: every
small journey, every test) are taken fresh on every call, as before. Counts
that took longer twice in a row are served from the last count while a single background
thread takes the next one, no sooner than ``SPACING`` × what the last one
took after it: the counts lag by at most about that, and counting takes at
most ~1/``SPACING`` of a core however many pages poll.

"Took" is the counting thread's CPU time when the database runs in it
(SQLite: a loaded machine's waits do not make a small count look
expensive, so small journeys stay exact), wall time when a server counts
(PostgreSQL).

Who waits at each node comes from Temporal visibility, one count per
waiting node (``engine.visibility.waiting_counts``), each reading every
running run of the journey: at 100k running, one count took 0.6 s on the
dev server and the three of a send-wait-send journey 1.8 s together
(``bench/visibility_bench.py``), most of a stats call's 3.1 s p99 at 100k
real runs. ``aget`` keeps those the same way, by wall time.

A count given a ``shelf`` (``engine.shelf``) is also kept in the store while
it is expensive: a process that has not taken it yet (the second API process
behind a proxy, one just restarted) serves it from there instead of paying
the full count on its first calls, and a recount first looks whether
another process has just done it.

A caller may also give a ``wait``: how long it waits for a first count
(nothing kept anywhere) before answering without it (``Counting``). The
count goes on in the background, shared by every caller meanwhile, and is
kept as soon as it is done if it was slow: the stats call of a journey
that grew to 100k runs unwatched answers in a moment instead of a few
seconds, once, and the operator is told the numbers are being counted.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import threading
import time
from collections.abc import Awaitable, Callable, Hashable
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from engine.shelf import Shelf

log = logging.getLogger("journeys.stats")

T = TypeVar("T")
EXPENSIVE = 0.3  # seconds on the wall clock (a server counts): counts faster than this are never kept
# CPU seconds when the count runs in this thread (SQLite): 100k runs' admitted-per-variant
# count takes 80 ms of CPU (300 ms on the wall, loaded); a small journey's, about 1 ms.
EXPENSIVE_CPU = 0.05
# A count from another server over the network (Temporal visibility): a journey's waiting
# counts took 0.19 s at 10k running runs and 0.87 s at 50k on the dev server. Higher than
# EXPENSIVE because the wall clock is all there is to go by, and a loaded machine's waits
# must not keep a small journey's waiting numbers.
EXPENSIVE_REMOTE = 0.5
SPACING = 10.0  # a kept count is retaken no sooner than this many times its own cost after it
MIN_AGE = 5.0  # seconds: nor sooner than this
MAX_KEYS = 1000  # journeys × versions × kinds of count kept at once (oldest dropped)
SHELF_LIFE = 600.0  # seconds: a shelved count older than this (or 3 recount spacings) is not served


class Counting(Exception):  # noqa: N818 - it is a state the caller answers with, not a failure
    """A first count outlived the caller's ``wait``: it goes on in the
    background and is served once done."""

    def __init__(self, seconds: float) -> None:
        super().__init__(f"counting for {seconds:.1f} s")
        self.seconds = seconds  # since the count began


@dataclass
class _Kept:
    value: Any
    taken_at: float  # time.monotonic() when the count was finished
    cost: float  # seconds it took
    over: bool  # it took longer than its threshold
    expensive: bool  # so did the count before it: kept and served while a recount runs


class CountCache:
    def __init__(self) -> None:
        self._kept: dict[Hashable, _Kept] = {}
        self._refreshing: set[Hashable] = set()
        self._missed: dict[Hashable, float] = {}  # key -> when the shelf last had nothing for it
        self._firsts: dict[Hashable, tuple[Future[Any], float]] = {}  # first counts under way, since when
        self._afirsts: dict[Hashable, tuple[asyncio.Task[Any], float]] = {}
        self._lock = threading.Lock()
        self._tasks: set[asyncio.Task[Any]] = set()  # background recounts of ``aget`` (kept from the GC)

    def get(
        self,
        key: Hashable,
        count: Callable[[], T],
        *,
        in_process: bool = False,
        shelf: Shelf[T] | None = None,
        wait: Callable[[], float | None] | None = None,
    ) -> T:
        """``count()``'s value: fresh when counting is cheap, else the last
        one kept (refreshed in the background once it is old enough).
        ``in_process``: the database counts in this thread (SQLite), so its
        CPU time is the cost. ``shelf``: where every process keeps it.
        ``wait()``: seconds to wait for this process's first count of
        ``key`` in a while, None: until done; raises ``Counting``."""
        kept = self._served(key)
        if kept is None and self._may_look(key, shelf):
            kept = self._unshelve(key, shelf)
        if kept is None:
            with self._lock:
                running = self._firsts.get(key)
                first = _first_in_a_while(self._kept.get(key))
            if running is not None:  # join the first count under way, never a second one beside it
                return self._await_first(running, None if wait is None else wait())
            limit = wait() if wait is not None and first else None
            if limit is not None:
                return self._first(key, count, in_process, shelf, limit)
            return self._shelve(self._take(key, count, in_process), shelf).value
        if _due(kept):
            self._refresh(key, count, in_process, shelf)
        return kept.value

    async def aget(
        self,
        key: Hashable,
        count: Callable[[], Awaitable[T]],
        *,
        shelf: Shelf[T] | None = None,
        wait: Callable[[], Awaitable[float | None]] | None = None,
    ) -> T:
        """``get`` for a count another server takes (awaited; its cost is the
        wall time, against ``EXPENSIVE_REMOTE``), recounted in a background
        task of the running loop; the shelf is read and written in threads."""
        kept = self._served(key)
        if kept is None and self._may_look(key, shelf):
            kept = await asyncio.to_thread(self._unshelve, key, shelf)
        if kept is None:
            running = self._afirsts.get(key)
            if running is not None:
                return await self._await_afirst(running, None if wait is None else await wait())
            limit = await wait() if wait is not None and _first_in_a_while(self._kept.get(key)) else None
            if limit is not None:
                return await self._afirst(key, count, shelf, limit)
            taken = await self._atake(key, count)
            if shelf is None:
                return taken.kept.value
            return (await asyncio.to_thread(self._shelve, taken, shelf)).value
        if _due(kept):
            self._arefresh(key, count, shelf)
        return kept.value

    def _first(
        self, key: Hashable, count: Callable[[], T], in_process: bool, shelf: Shelf[T] | None, limit: float
    ) -> T:
        """This process's first count of ``key`` (``_first_in_a_while``), in
        a thread every caller meanwhile waits on (``_await_first``)."""
        with self._lock:
            running = self._firsts.get(key)
            if running is None:
                running = self._firsts[key] = (Future(), time.monotonic())
                begin = True
            else:
                begin = False
        future, since = running

        def run() -> None:
            try:
                taken = self._take(key, count, in_process)
                outlived = time.monotonic() - since >= limit
                future.set_result(self._shelve(self._kept_at_once(taken, outlived), shelf).value)
                with self._lock:
                    self._firsts.pop(key, None)
            except BaseException as exc:  # noqa: BLE001 - handed to the next caller (see _await_first)
                log.warning("the first count of %s failed", key, exc_info=True)
                future.set_exception(exc)

        if begin:
            threading.Thread(target=run, name="journeys-first-count", daemon=True).start()
        return self._await_first(running, limit)

    def _await_first(self, running: tuple[Future[Any], float], limit: float | None) -> Any:
        """The first count's value; ``Counting`` after ``limit`` seconds. A
        failed one stays until a caller has been given its error: one that
        fails slowly must not look like "counting" for ever."""
        future, since = running
        try:
            return future.result(timeout=limit)
        except FutureTimeout:
            raise Counting(time.monotonic() - since) from None
        except BaseException:
            with self._lock:
                for key, found in list(self._firsts.items()):
                    if found is running:
                        del self._firsts[key]
            raise

    async def _afirst(
        self, key: Hashable, count: Callable[[], Awaitable[T]], shelf: Shelf[T] | None, limit: float
    ) -> T:
        """``_first`` for ``aget``: a task of the running loop."""

        async def run() -> T:
            t0 = time.monotonic()
            try:
                taken = await self._atake(key, count)
            except Exception:
                log.warning("the first count of %s failed", key, exc_info=True)
                raise  # kept in the task until a caller is given it (_await_afirst)
            taken = self._kept_at_once(taken, time.monotonic() - t0 >= limit)
            self._afirsts.pop(key, None)
            if shelf is not None:
                await asyncio.to_thread(self._shelve, taken, shelf)
            return taken.kept.value

        task = asyncio.get_running_loop().create_task(run(), name="journeys-first-count")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        task.add_done_callback(lambda t: t.cancelled() or t.exception())  # retrieved: no "never retrieved" log
        running = self._afirsts[key] = (task, time.monotonic())
        return await self._await_afirst(running, limit)

    async def _await_afirst(self, running: tuple[asyncio.Task[Any], float], limit: float | None) -> Any:
        task, since = running
        try:
            return await asyncio.wait_for(asyncio.shield(task), limit)
        except TimeoutError:
            raise Counting(time.monotonic() - since) from None
        except BaseException:
            for key, found in list(self._afirsts.items()):
                if found is running:
                    del self._afirsts[key]
            raise

    def _kept_at_once(self, taken: _Taken, outlived: bool) -> _Taken:
        """A first count of a big journey (the caller said so by giving a
        wait) is kept once it was slow: the two-in-a-row rule guards small
        journeys against a cold process's first count, not big ones. One
        that ``outlived`` the wait is kept however little CPU it took: its
        callers were told to come back for it (else a loaded machine would
        answer "counting" to every call)."""
        if taken.kept.expensive or not (taken.kept.over or outlived):
            return taken
        kept = dataclasses.replace(taken.kept, over=True, expensive=True)
        with self._lock:
            if self._kept.get(taken.key) is taken.kept:
                self._kept[taken.key] = kept
        return _Taken(taken.key, kept, taken.was_kept)

    def _served(self, key: Hashable) -> _Kept | None:
        """The kept count served for ``key``; None: count afresh."""
        with self._lock:
            kept = self._kept.get(key)
        return kept if kept is not None and kept.expensive else None

    def _may_look(self, key: Hashable, shelf: Shelf[Any] | None) -> bool:
        """Whether to read the shelf for ``key``: only while this process
        has no count of its own (one it found cheap is its own to take, not
        another's to serve), and not when the shelf had nothing a moment ago
        (a small journey's every call would read it)."""
        if shelf is None:
            return False
        with self._lock:
            if key in self._kept:
                return False
            missed = self._missed.get(key)
        return missed is None or time.monotonic() - missed >= MIN_AGE

    def _unshelve(self, key: Hashable, shelf: Shelf[T] | None) -> _Kept | None:
        """The count on the shelf, now kept here too; None: nothing there."""
        found = shelf.load() if shelf is not None else None
        if found is not None and found.age > _shelf_life(found.cost):
            found = None  # nobody has recounted it for long: not served as if current
        with self._lock:
            if found is None:
                self._missed[key] = time.monotonic()
                while len(self._missed) > MAX_KEYS:
                    self._missed.pop(next(iter(self._missed)))
                return None
            self._missed.pop(key, None)
            kept = _Kept(found.value, time.monotonic() - found.age, found.cost, over=True, expensive=True)
            self._kept[key] = kept
            self._trim()
        return kept

    def _trim(self) -> None:
        """Hold at most ``MAX_KEYS`` kept counts (the oldest go); under the lock."""
        while len(self._kept) > MAX_KEYS:
            self._kept.pop(next(iter(self._kept)))

    def _fresher_on_shelf(self, key: Hashable, shelf: Shelf[Any] | None) -> bool:
        """Whether another process has recounted since this one's kept count
        (now taken from the shelf): then no recount is due yet."""
        if shelf is None:
            return False
        with self._lock:
            mine = self._kept.get(key)
        found = shelf.load()
        # Newer by a second at least: this process's own save is a moment after its count.
        if found is None or mine is None or time.monotonic() - found.age <= mine.taken_at + 1.0:
            return False
        kept = _Kept(found.value, time.monotonic() - found.age, found.cost, over=True, expensive=True)
        with self._lock:
            self._kept[key] = kept
        return not _due(kept)

    async def _atake(self, key: Hashable, count: Callable[[], Awaitable[T]]) -> _Taken:
        t0 = time.monotonic()
        value = await count()
        now = time.monotonic()
        return self._keep(key, value, now, now - t0, EXPENSIVE_REMOTE)

    def _arefresh(self, key: Hashable, count: Callable[[], Awaitable[T]], shelf: Shelf[T] | None) -> None:
        if not self._claim(key):
            return

        async def run() -> None:
            try:
                if shelf is None:
                    await self._atake(key, count)
                elif not await asyncio.to_thread(self._fresher_on_shelf, key, shelf):
                    await asyncio.to_thread(self._shelve, await self._atake(key, count), shelf)
            except Exception:  # noqa: BLE001 - see _failed
                if shelf is None:
                    self._failed(key)
                else:
                    await asyncio.to_thread(self._failed, key, shelf)
            finally:
                self._release(key)

        task = asyncio.get_running_loop().create_task(run(), name="journeys-recount")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _take(self, key: Hashable, count: Callable[[], T], in_process: bool) -> _Taken:
        t0, cpu0 = time.monotonic(), time.thread_time()
        value = count()
        now = time.monotonic()
        cost = time.thread_time() - cpu0 if in_process else now - t0
        return self._keep(key, value, now, cost, EXPENSIVE_CPU if in_process else EXPENSIVE)

    def _keep(self, key: Hashable, value: Any, now: float, cost: float, threshold: float) -> _Taken:
        over = cost >= threshold
        with self._lock:
            before = self._kept.get(key)
            # Kept only when two counts in a row were over: a process's first
            # count of a kind also pays for compiling its statements and a cold
            # cache (a small journey's first one went over 50 ms of CPU on a
            # loaded machine), and a kept count lags behind what just happened.
            kept = _Kept(value, now, cost, over, over and before is not None and before.over)
            self._kept[key] = kept
            self._trim()
        return _Taken(key, kept, was_kept=before is not None and before.expensive)

    @staticmethod
    def _shelve(taken: _Taken, shelf: Shelf[T] | None) -> _Kept:
        """Put an expensive count on the shelf; take one off that is cheap
        again (small journeys, never kept, never write there)."""
        if shelf is not None:
            if taken.kept.expensive:
                shelf.save(taken.kept.value, taken.kept.cost)
            elif taken.was_kept:
                shelf.drop()
        return taken.kept

    def _refresh(self, key: Hashable, count: Callable[[], T], in_process: bool, shelf: Shelf[T] | None) -> None:
        if not self._claim(key):
            return

        def run() -> None:
            try:
                if not self._fresher_on_shelf(key, shelf):
                    self._shelve(self._take(key, count, in_process), shelf)
            except Exception:  # noqa: BLE001 - see _failed
                self._failed(key, shelf)
            finally:
                self._release(key)

        threading.Thread(target=run, name="journeys-recount", daemon=True).start()

    def _claim(self, key: Hashable) -> bool:
        """Whether this caller takes the one recount of ``key`` under way."""
        with self._lock:
            if key in self._refreshing:
                return False
            self._refreshing.add(key)
            return True

    def _release(self, key: Hashable) -> None:
        with self._lock:
            self._refreshing.discard(key)

    def _failed(self, key: Hashable, shelf: Shelf[Any] | None = None) -> None:
        """Drop a kept count whose recount failed: serving it on would hide the
        failure (a Temporal gone away) behind numbers that only grow old; the
        next call counts afresh and its caller sees the failure."""
        log.warning("recounting %s failed", key, exc_info=True)
        with self._lock:
            self._kept.pop(key, None)
        if shelf is not None:
            shelf.drop()

    def age(self, key: Hashable) -> float | None:
        """Seconds since the count served for ``key`` was taken; None when
        counts for it are taken fresh on every call."""
        kept = self._served(key)
        return None if kept is None else time.monotonic() - kept.taken_at


@dataclass(frozen=True)
class _Taken:
    key: Hashable
    kept: _Kept
    was_kept: bool  # the count before it was kept (and so may be on a shelf)


def _first_in_a_while(kept: _Kept | None) -> bool:
    """Whether a count would be this process's first of its key for a while
    (none, or its last older than ``SHELF_LIFE``: a page opened again at 50k
    runs after one watched at 1k): only those are answered "counting". A
    count taken a moment ago and found cheap is taken again in the caller's
    thread, so a journey near the threshold is not told "counting" every
    few seconds."""
    return kept is None or time.monotonic() - kept.taken_at > SHELF_LIFE


def _shelf_life(cost: float) -> float:
    """Seconds a shelved count is served from: past this, no process has
    recounted it (none served it) and it is counted afresh instead."""
    return max(SHELF_LIFE, 3 * SPACING * cost)


def _due(kept: _Kept) -> bool:
    """Whether a kept count is old enough to be retaken."""
    return time.monotonic() - kept.taken_at >= max(MIN_AGE, SPACING * kept.cost)


COUNTS = CountCache()
