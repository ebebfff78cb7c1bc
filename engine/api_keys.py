"""API keys created, listed and revoked through the API.

A key is ``jk_`` plus 32 random URL-safe characters, shown once when it is
created; the store keeps its SHA-256 (a key is random enough that a plain
digest cannot be guessed back) and its last four characters so a list can
tell keys apart. Keys from settings (``JOURNEYS_API_KEYS`` / write keys) are
not stored here and cannot be revoked through the API.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import bindparam, select, update

from engine.store import Store
from engine.store.models import ApiKey
from engine.store.types import utcnow

ROLES = ("viewer", "operator", "admin", "write")
PREFIX = "jk_"

_KEYS = ApiKey.__table__
_ROLE_OF = select(_KEYS.c.role).where(_KEYS.c.key_hash == bindparam("digest"), _KEYS.c.revoked_at.is_(None))


@dataclass(frozen=True)
class KeyInfo:
    id: str
    name: str
    role: str
    hint: str
    created_at: datetime
    revoked_at: datetime | None


def digest(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def _info(row: ApiKey) -> KeyInfo:
    return KeyInfo(row.id, row.name, row.role, row.hint, row.created_at, row.revoked_at)


def create(store: Store, name: str, role: str) -> tuple[KeyInfo, str]:
    """A new key: its record and the key itself (not kept anywhere)."""
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r} (known: {', '.join(ROLES)})")
    key = PREFIX + secrets.token_urlsafe(24)
    row = ApiKey(
        id="key_" + secrets.token_hex(6), name=name, role=role, key_hash=digest(key), hint=key[-4:], created_at=utcnow()
    )
    store.transact(lambda s: s.add(row))
    return _info(row), key


def listing(store: Store) -> list[KeyInfo]:
    with store.read() as s:
        return [_info(r) for r in s.scalars(select(ApiKey).order_by(ApiKey.created_at, ApiKey.id))]


def revoke(store: Store, key_id: str) -> KeyInfo | None:
    """Revoke a key (again is a no-op); None when there is no such key."""

    def work(s) -> KeyInfo | None:  # type: ignore[no-untyped-def]
        s.execute(update(ApiKey).where(ApiKey.id == key_id, ApiKey.revoked_at.is_(None)).values(revoked_at=utcnow()))
        row = s.get(ApiKey, key_id)
        return _info(row) if row is not None else None

    return store.transact(work)


def role_of(store: Store, key: str) -> str | None:
    """The role of a live stored key, or None (unknown or revoked)."""
    with store.read() as s:
        return s.execute(_ROLE_OF, {"digest": digest(key)}).scalar_one_or_none()
