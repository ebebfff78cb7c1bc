"""Journeys and their versions, as deployed.

A run is pinned to the IR of the version the user entered; redeploying a
journey adds a version and moves ``current_version``, it never edits one. The
IR's content hash makes redeploying unchanged text a no-op.

Versions are checked when deployed, against the language of that day; when
the language tightens (the bounds of ``dsl.limits``: 50 nested ifs once
deployed and then failed every run in the worker), ``recheck_current`` finds
the current versions today's language refuses and pauses them.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pydantic import ValidationError
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from dsl import Diagnostic, JourneyError, check, parse
from dsl.ir import DEFAULT_PRIORITY
from dsl.ir import Journey as JourneyIR
from engine import lifecycle
from engine.store import Store
from engine.store.models import Journey, JourneyVersion
from engine.store.types import utcnow

log = logging.getLogger("journeys.engine")


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


def priorities(store: Store) -> dict[str, int]:
    """Each live (active or paused) journey's priority, from its current
    version (``priority`` unset: normal): who may win a user's last cap slot."""
    q = (
        select(Journey.id, JourneyVersion.ir)
        .join(
            JourneyVersion,
            (JourneyVersion.journey_id == Journey.id) & (JourneyVersion.version == Journey.current_version),
        )
        .where(Journey.status.in_(("active", "paused")))
    )
    with store.read() as s:
        return {jid: int((ir or {}).get("priority") or DEFAULT_PRIORITY) for jid, ir in s.execute(q)}


def list_versions(store: Store, journey_id: str) -> list[VersionInfo]:
    with store.read() as s:
        rows = s.scalars(
            select(JourneyVersion).where(JourneyVersion.journey_id == journey_id).order_by(JourneyVersion.version)
        )
        return [_v(r) for r in rows]


# ---------------------------------------------------------------- re-checking


@dataclass(frozen=True)
class Refused:
    """A current version today's language refuses: the errors it finds, and
    what the re-check did about it."""

    journey: JourneyInfo  # as it is after the re-check
    version: int
    errors: list[Diagnostic]
    previous: str  # the status it had
    paused: bool  # this re-check paused it (it was active)


# Statuses whose current version may still run or admit someone: a stopped
# or archived journey does neither, so it is not re-checked.
_RECHECKED = frozenset({"draft", "active", "paused"})


def version_errors(info: VersionInfo) -> list[Diagnostic]:
    """The errors today's language finds in a stored version: in its IR as
    the worker would read it (``dsl.check``, which also refuses an IR nested
    past ``MAX_DEPTH``), and in its text as a redeploy would parse it (the
    bounds on size, numbers, durations and characters are the parser's).
    Empty when it passes both."""
    errors: list[Diagnostic] = []
    try:
        ir = JourneyIR.model_validate(info.ir)
    except (ValidationError, RecursionError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        errors.append(Diagnostic("E100", f"the stored IR cannot be read: {first}", 1, 1))
    else:
        try:
            found = check(ir, info.source, f"<{info.journey_id} v{info.version}>")
        except RecursionError:  # pragma: no cover - check refuses deep IR before its recursive walks
            found = [Diagnostic("E131", "the stored IR is nested too deeply to check", 1, 1)]
        errors += [d for d in found if d.severity == "error"]
    try:
        parse(info.source, f"<{info.journey_id} v{info.version}>")
    except JourneyError as exc:
        seen = {(d.code, d.line) for d in errors}
        errors += [d for d in exc.errors if (d.code, d.line) not in seen]
    return errors


def recheck_current(store: Store, *, pause: bool = False) -> list[Refused]:
    """Re-check the current version of every draft, active and paused journey
    with today's language; answers those it refuses (each logged). With
    ``pause``, an active one is paused — the one lifecycle move that refuses
    new entries and can be undone (``resume`` once a fixed version is
    deployed); its running runs go on as before. A draft admits nobody and a
    paused journey nobody new, so they are only reported.

    Meant for start-up, after migrations: it reads every current version
    once, so it is slow on a big store but never on a request's path."""
    refused: list[Refused] = []
    for info in list_journeys(store):
        if info.status not in _RECHECKED or info.current_version is None:
            continue
        version = get_version(store, info.id, info.current_version)
        if version is None:
            continue
        errors = version_errors(version)
        if not errors:
            continue
        journey, paused = info, False
        if pause and info.status == lifecycle.ADMITTING:
            change = change_status(store, info.id, ["paused"])
            journey, paused = change.journey, change.previous == lifecycle.ADMITTING
        first = errors[0]
        log.warning(
            "journey %s v%d is refused by today's language (%d error%s, first %s at line %d: %s)%s",
            info.id,
            version.version,
            len(errors),
            "" if len(errors) == 1 else "s",
            first.code,
            first.line,
            first.message,
            "; paused it" if paused else "",
        )
        refused.append(Refused(journey, version.version, errors, info.status, paused))
    return refused
