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
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass
from typing import Any, TypeVar

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
        self._lock = threading.Lock()
        self._tasks: set[asyncio.Task[None]] = set()  # background recounts of ``aget`` (kept from the GC)

    def get(self, key: Hashable, count: Callable[[], T], *, in_process: bool = False) -> T:
        """``count()``'s value: fresh when counting is cheap, else the last
        one kept (refreshed in the background once it is old enough).
        ``in_process``: the database counts in this thread (SQLite), so its
        CPU time is the cost."""
        kept = self._served(key)
        if kept is None:
            return self._take(key, count, in_process).value
        if _due(kept):
            self._refresh(key, count, in_process)
        return kept.value

    async def aget(self, key: Hashable, count: Callable[[], Awaitable[T]]) -> T:
        """``get`` for a count another server takes (awaited; its cost is the
        wall time, against ``EXPENSIVE_REMOTE``), recounted in a background
        task of the running loop."""
        kept = self._served(key)
        if kept is None:
            return (await self._atake(key, count)).value
        if _due(kept):
            self._arefresh(key, count)
        return kept.value

    def _served(self, key: Hashable) -> _Kept | None:
        """The kept count served for ``key``; None: count afresh."""
        with self._lock:
            kept = self._kept.get(key)
        return kept if kept is not None and kept.expensive else None

    async def _atake(self, key: Hashable, count: Callable[[], Awaitable[T]]) -> _Kept:
        t0 = time.monotonic()
        value = await count()
        now = time.monotonic()
        return self._keep(key, value, now, now - t0, EXPENSIVE_REMOTE)

    def _arefresh(self, key: Hashable, count: Callable[[], Awaitable[T]]) -> None:
        if not self._claim(key):
            return

        async def run() -> None:
            try:
                await self._atake(key, count)
            except Exception:  # noqa: BLE001 - see _failed
                self._failed(key)
            finally:
                self._release(key)

        task = asyncio.get_running_loop().create_task(run(), name="journeys-recount")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _take(self, key: Hashable, count: Callable[[], T], in_process: bool) -> _Kept:
        t0, cpu0 = time.monotonic(), time.thread_time()
        value = count()
        now = time.monotonic()
        cost = time.thread_time() - cpu0 if in_process else now - t0
        return self._keep(key, value, now, cost, EXPENSIVE_CPU if in_process else EXPENSIVE)

    def _keep(self, key: Hashable, value: Any, now: float, cost: float, threshold: float) -> _Kept:
        over = cost >= threshold
        with self._lock:
            before = self._kept.get(key)
            # Kept only when two counts in a row were over: a process's first
            # count of a kind also pays for compiling its statements and a cold
            # cache (a small journey's first one went over 50 ms of CPU on a
            # loaded machine), and a kept count lags behind what just happened.
            kept = _Kept(value, now, cost, over, over and before is not None and before.over)
            self._kept[key] = kept
            while len(self._kept) > MAX_KEYS:
                self._kept.pop(next(iter(self._kept)))
        return kept

    def _refresh(self, key: Hashable, count: Callable[[], T], in_process: bool) -> None:
        if not self._claim(key):
            return

        def run() -> None:
            try:
                self._take(key, count, in_process)
            except Exception:  # noqa: BLE001 - see _failed
                self._failed(key)
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

    def _failed(self, key: Hashable) -> None:
        """Drop a kept count whose recount failed: serving it on would hide the
        failure (a Temporal gone away) behind numbers that only grow old; the
        next call counts afresh and its caller sees the failure."""
        log.warning("recounting %s failed", key, exc_info=True)
        with self._lock:
            self._kept.pop(key, None)

    def age(self, key: Hashable) -> float | None:
        """Seconds since the count served for ``key`` was taken; None when
        counts for it are taken fresh on every call."""
        kept = self._served(key)
        return None if kept is None else time.monotonic() - kept.taken_at


def _due(kept: _Kept) -> bool:
    """Whether a kept count is old enough to be retaken."""
    return time.monotonic() - kept.taken_at >= max(MIN_AGE, SPACING * kept.cost)


COUNTS = CountCache()
