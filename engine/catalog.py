"""Journeys and their versions, as deployed.

A run is pinned to the IR of the version the user entered; redeploying a
journey adds a version and moves ``current_version``, it never edits one. The
IR's content hash makes redeploying unchanged text a no-op.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from engine import lifecycle
from engine.store import Store
from engine.store.models import Journey, JourneyVersion
from engine.store.types import utcnow


@dataclass(frozen=True)
class VersionInfo:
    journey_id: str
    version: int
    hash: str
    ir: dict[str, Any]
    source: str
    status: str
    created_at: datetime


@dataclass(frozen=True)
class JourneyInfo:
    id: str
    name: str
    status: str
    current_version: int | None


def _v(row: JourneyVersion) -> VersionInfo:
    return VersionInfo(row.journey_id, row.version, row.hash, dict(row.ir), row.source, row.status, row.created_at)


def _j(row: Journey) -> JourneyInfo:
    return JourneyInfo(row.id, row.name, row.status, row.current_version)


def publish(
    store: Store, journey_id: str, *, name: str, source: str, ir: dict[str, Any], hash: str, draft: bool = False
) -> VersionInfo:
    """Deploy a version; returns the current one unchanged when the hash
    matches. A new journey starts ``active``, or ``draft`` (admitting nobody
    until activated) with ``draft``; redeploying keeps the status. An archived
    journey takes no new version (``IllegalTransition``)."""

    def work(s: Session) -> VersionInfo:
        store.lock(s, f"journey:{journey_id}")
        journey = s.get(Journey, journey_id)
        if journey is not None and journey.status == "archived":
            raise lifecycle.IllegalTransition(journey_id, "archived", "deployed")
        if journey is None:
            journey = Journey(id=journey_id, name=name, status="draft" if draft else lifecycle.ADMITTING)
            s.add(journey)
            s.flush()
        if journey.current_version is not None:
            current = _version_row(s, journey_id, journey.current_version)
            if current is not None and current.hash == hash:
                return _v(current)
        latest = s.execute(
            select(func.max(JourneyVersion.version)).where(JourneyVersion.journey_id == journey_id)
        ).scalar()
        row = JourneyVersion(
            journey_id=journey_id, version=(latest or 0) + 1, source=source, ir=ir, hash=hash, status="active"
        )
        s.add(row)
        journey.current_version, journey.name, journey.updated_at = row.version, name, utcnow()
        s.flush()
        return _v(row)

    return store.transact(work)


def _version_row(s: Session, journey_id: str, version: int) -> JourneyVersion | None:
    return s.scalars(
        select(JourneyVersion).where(JourneyVersion.journey_id == journey_id, JourneyVersion.version == version)
    ).first()


def get_version(store: Store, journey_id: str, version: int | None = None) -> VersionInfo | None:
    """A given version, or the current one."""
    with store.read() as s:
        if version is None:
            journey = s.get(Journey, journey_id)
            if journey is None or journey.current_version is None:
                return None
            version = journey.current_version
        row = _version_row(s, journey_id, version)
        return _v(row) if row else None


@dataclass(frozen=True)
class StatusChange:
    journey: JourneyInfo
    previous: str


def set_status(store: Store, journey_id: str, status: str) -> JourneyInfo:
    """Move the journey to ``status`` if the lifecycle allows it from where it
    is (``lifecycle.IllegalTransition`` otherwise; ``KeyError`` for an unknown
    journey). Read and written under the journey's lock, so two requests
    racing cannot both pass the check."""
    return change_status(store, journey_id, [status]).journey


def change_status(store: Store, journey_id: str, path: list[str]) -> StatusChange:
    """Walk ``path`` (each step checked against the lifecycle) in one
    transaction; answers the journey afterwards and the status it had."""

    def work(s: Session) -> StatusChange:
        store.lock(s, f"journey:{journey_id}")
        journey = s.get(Journey, journey_id)
        if journey is None:
            raise KeyError(journey_id)
        previous = journey.status
        for status in path:
            lifecycle.check(journey_id, journey.status, status)
            journey.status = status
        journey.updated_at = utcnow()
        return StatusChange(_j(journey), previous)

    return store.transact(work)


def list_journeys(store: Store) -> list[JourneyInfo]:
    with store.read() as s:
        return [_j(r) for r in s.scalars(select(Journey).order_by(Journey.id))]


def list_versions(store: Store, journey_id: str) -> list[VersionInfo]:
    with store.read() as s:
        rows = s.scalars(
            select(JourneyVersion).where(JourneyVersion.journey_id == journey_id).order_by(JourneyVersion.version)
        )
        return [_v(r) for r in rows]
