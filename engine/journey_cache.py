"""Parsed IR of deployed versions, cached by (journey, version).

Every ingested event asks "which active journeys start on this event?"; the
journeys table is read each time (one small query, so pause/stop take effect
at once, in every API process) but a version's IR is parsed only once:
versions never change after they are published.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from dsl.ir import EventEntry, Journey
from engine import catalog, lifecycle
from engine.catalog import JourneyInfo, VersionInfo
from engine.store import Store
from engine.store.models import Journey as JourneyRow

_JOURNEYS = JourneyRow.__table__
_ADMITTING = (
    select(_JOURNEYS.c.id, _JOURNEYS.c.name, _JOURNEYS.c.status, _JOURNEYS.c.current_version)
    .where(_JOURNEYS.c.status == lifecycle.ADMITTING, _JOURNEYS.c.current_version.is_not(None))
    .order_by(_JOURNEYS.c.id)
)


@dataclass(frozen=True)
class Deployed:
    info: JourneyInfo
    version: VersionInfo
    ir: Journey


class JourneyCache:
    def __init__(self, store: Store, max_entries: int = 512) -> None:
        self.store = store
        self.max_entries = max_entries
        self._irs: dict[tuple[str, int], tuple[VersionInfo, Journey]] = {}
        self._lock = threading.Lock()

    def version(self, journey_id: str, version: int) -> tuple[VersionInfo, Journey] | None:
        key = (journey_id, version)
        with self._lock:
            hit = self._irs.get(key)
        if hit is not None:
            return hit
        row = catalog.get_version(self.store, journey_id, version)
        if row is None:
            return None
        parsed = (row, Journey.model_validate(row.ir))
        with self._lock:
            if len(self._irs) >= self.max_entries:
                self._irs.pop(next(iter(self._irs)))
            self._irs[key] = parsed
        return parsed

    def current(self, info: JourneyInfo) -> Deployed | None:
        if info.current_version is None:
            return None
        found = self.version(info.id, info.current_version)
        return Deployed(info, found[0], found[1]) if found else None

    def pinned(self, info: JourneyInfo, version: int | None = None) -> Deployed | None:
        """That version of the journey, else its current one; None when there
        is no such version (or none is deployed)."""
        if version is None:
            return self.current(info)
        found = self.version(info.id, version)
        return Deployed(info, found[0], found[1]) if found else None

    def event_triggered(self, event_name: str) -> list[Deployed]:
        """Active journeys whose current version enters on ``event_name``."""
        with self.store.read() as s:
            return self.event_triggered_in(s, event_name)

    def event_triggered_in(self, session: Session, event_name: str) -> list[Deployed]:
        """``event_triggered`` inside a read transaction the caller holds
        (dispatch reads the user's runs in the same one); only the admitting
        journeys' rows are read, in Core (every ingested event asks)."""
        out: list[Deployed] = []
        for row in session.execute(_ADMITTING):
            deployed = self.current(JourneyInfo(row.id, row.name, row.status, row.current_version))
            if deployed is None:
                continue
            entry = deployed.ir.entry
            if isinstance(entry, EventEntry) and entry.event == event_name:
                out.append(deployed)
        return out
