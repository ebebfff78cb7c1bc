"""Back-pressure on a broadcast's starts: how many of the runs it started have
not begun yet (no ``runs`` row: their first workflow task still waits in the
task queue).

Starting is cheaper than running: a page activity starts ~70 runs a second on
two cores while the worker begins ~20, so without a bound a 100k broadcast
queued 95k first workflow tasks ahead of everything else on the runs' queue —
an event-triggered journey's welcome message then waited behind them (an hour
here), the broadcast's "entered" said 100k while most had not begun, and the
starts took the dev server's CPU from the runs (4 begun a second while they
went on, 23 without them). With at most ``limit`` runs not yet begun, the
queue stays about ``limit`` deep and starts go at the rate runs begin.

A worker that begins nothing (stopped, or crashed) must not stall a broadcast
for ever: when none of the waiting runs has begun for ``stall_seconds``, they
are let go (counted no more) and the next ``limit`` starts go out, as they
all did before this bound existed.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable

log = logging.getLogger("journeys.broadcast")

# Runs started and not begun, at most: about 25 s of this 2-core machine's
# work (the worker begins ~20 a second), deep enough that the worker never
# waits for the next start, shallow enough that an event's run waits behind
# seconds of broadcast, not the whole audience.
RUNS_AHEAD = 500
# No run of those waiting began for this long: the worker is not running them.
STALL_SECONDS = 60.0
POLL_SECONDS = 0.25

Begun = Callable[[list[str]], Iterable[str]]  # of these user ids, those whose run has begun


class Backlog:
    """Runs of one page activity call's starts that have not begun.

    ``await room()`` before a start, ``started(user_id)`` after one that made
    a new run. One caller at a time polls ``begun`` (a thread: it reads the
    store) while the others wait for its answer. The page activity
    heartbeats in the background meanwhile (``broadcast_activities._beat``)."""

    def __init__(
        self,
        begun: Begun,
        *,
        limit: int = RUNS_AHEAD,
        stall_seconds: float = STALL_SECONDS,
        poll_seconds: float = POLL_SECONDS,
    ) -> None:
        if limit < 1:
            raise ValueError("limit must be at least 1")
        self._begun = begun
        self.limit = limit
        self._stall = stall_seconds
        self._poll = poll_seconds
        self._waiting: set[str] = set()
        self._lock = asyncio.Lock()
        self._moved = time.monotonic()  # when a waiting run last began (or the first was started)
        self.deepest = 0  # the most runs waiting at once, for the page log and the tests
        self.stalls = 0  # times the waiting runs were let go

    @property
    def waiting(self) -> int:
        return len(self._waiting)

    def started(self, user_id: str) -> None:
        if not self._waiting:
            self._moved = time.monotonic()
        self._waiting.add(user_id)
        self.deepest = max(self.deepest, len(self._waiting))

    async def room(self) -> None:
        """Return once fewer than ``limit`` runs wait to begin."""
        while len(self._waiting) >= self.limit:
            async with self._lock:
                if len(self._waiting) < self.limit:
                    return
                begun = set(await asyncio.to_thread(self._begun, sorted(self._waiting)))
                if begun & self._waiting:
                    self._waiting -= begun
                    self._moved = time.monotonic()
                    continue
                if time.monotonic() - self._moved >= self._stall:
                    log.warning(
                        "none of %d started runs began in %.0f s: starting on without waiting for them",
                        len(self._waiting),
                        self._stall,
                    )
                    self._waiting.clear()
                    self.stalls += 1
                    return
                await asyncio.sleep(self._poll)
