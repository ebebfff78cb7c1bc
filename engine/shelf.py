"""Kept counts on a shelf in the store, shared by every API process.

``engine.count_cache`` keeps a big journey's counts in the memory of the
process that took them. Behind a proxy with two API processes each took its
own, and each process started (a deploy, a crash) paid the full count again
on its first calls: a 100k journey's stats p99 of 3.6 s came from those
first calls (p50 17.5 ms, ``bench/waiting_bench.py``). A count kept on the
shelf is served by a process that has not taken it yet, and its recount is
left to whoever finds it due first.

Only counts expensive enough to be kept are shelved (a row per journey,
version and kind of count, rewritten at most once per recount); small
journeys never write here.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Generic, TypeVar

from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError

from engine.store import Store, utcnow
from engine.store.models import KeptCount

log = logging.getLogger("journeys.stats")

T = TypeVar("T")
FORGOTTEN = timedelta(days=1)  # a row not rewritten for this long is deleted
MAX_VALUE_CHARS = 1_000_000  # a journey's node counts are a few kB; anything far larger is not shelved


@dataclass(frozen=True)
class Shelved:
    value: Any  # as decoded
    cost: float  # seconds the count took
    age: float  # seconds since it was taken


@dataclass(frozen=True)
class Shelf(Generic[T]):
    """One count's place on the shelf: the store, a name that is the same in
    every process, and how its value goes to JSON and back."""

    store: Store
    journey_id: str
    name: str
    encode: Callable[[T], Any]
    decode: Callable[[Any], T]

    @property
    def key(self) -> str:
        return hashlib.sha256(self.name.encode()).hexdigest()

    def load(self) -> Shelved | None:
        """The count another process (or this one, before a restart) kept."""
        try:
            with self.store.read() as s:
                row = s.execute(
                    select(KeptCount.value, KeptCount.cost, KeptCount.taken_at).where(KeptCount.key == self.key)
                ).first()
            if row is None:
                return None
            value = self.decode(json.loads(row.value))
        except Exception:  # noqa: BLE001 - a shelf that cannot be read is a count taken afresh
            log.warning("reading the kept count %s failed", self.name, exc_info=True)
            return None
        return Shelved(value, float(row.cost), max(0.0, (utcnow() - row.taken_at).total_seconds()))

    def save(self, value: T, cost: float) -> None:
        text = json.dumps(self.encode(value), separators=(",", ":"), sort_keys=True)
        if len(text) > MAX_VALUE_CHARS:
            return
        values = {"value": text, "cost": cost, "taken_at": utcnow()}
        try:
            with self.store.session() as s:
                found = s.execute(update(KeptCount).where(KeptCount.key == self.key).values(**values)).rowcount
                if not found:
                    s.add(KeptCount(key=self.key, journey_id=self.journey_id[:128], **values))
                    # rows nobody recounts any more (old versions, archived journeys, the waiting
                    # counts of a node set since changed) go when a new one comes
                    s.execute(delete(KeptCount).where(KeptCount.taken_at < values["taken_at"] - FORGOTTEN))
        except IntegrityError:
            pass  # another process shelved the same count at the same moment: theirs stands
        except Exception:  # noqa: BLE001 - the count is still kept in this process
            log.warning("shelving the kept count %s failed", self.name, exc_info=True)

    def drop(self) -> None:
        try:
            with self.store.session() as s:
                s.execute(delete(KeptCount).where(KeptCount.key == self.key))
        except Exception:  # noqa: BLE001 - a stale shelf entry is dropped by the next cheap recount
            log.warning("dropping the kept count %s failed", self.name, exc_info=True)
