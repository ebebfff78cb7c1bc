"""What a send reads about its recipient, in two statements instead of six.

Every send reads the user behind the run (following merges), their profile
for the template, their identities (addresses), opt-outs and tags. Read one
by one that was six statements of the send's nine; each statement is about
0.25 ms of the worker's CPU (SQLAlchemy and psycopg: 38–44 % of the worker's
busy samples in ``bench/process_bench.py --profile``). Here the id and the
profile come in one row (a second only when the user was merged away), and
identities, opt-outs and tags in one ``UNION ALL``, each part in the order
its own lookup gives (``engine.identity.identities_of``, ``engine.tags.tags_of``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import String, bindparam, cast, literal, null, select, union_all

from engine import identity
from engine.consent import UNKNOWN_USER, Reach, addresses_from
from engine.store.models import Consent, Identity, Tag, User

_USERS = User.__table__
_PROFILE_COLUMNS = (_USERS.c.attributes, _USERS.c.timezone, _USERS.c.stage, _USERS.c.rfm)
_WITH_MERGED_INTO = select(_USERS.c.merged_into, *_PROFILE_COLUMNS).where(_USERS.c.id == bindparam("uid"))
_PROFILE = select(*_PROFILE_COLUMNS).where(_USERS.c.id == bindparam("uid"))

_IDS, _CONSENTS, _TAGS = Identity.__table__, Consent.__table__, Tag.__table__
_PART_IDS, _PART_OPTED_OUT, _PART_TAGS = 0, 1, 2
_ALL_OF = union_all(
    select(literal(_PART_IDS).label("part"), _IDS.c.id.label("n"), _IDS.c.kind.label("a"), _IDS.c.value.label("b"))
    .where(_IDS.c.user_id == bindparam("uid")),
    select(literal(_PART_OPTED_OUT), literal(0), _CONSENTS.c.channel, cast(null(), String))
    .where(_CONSENTS.c.user_id == bindparam("uid"), _CONSENTS.c.opted_out.is_(True)),
    select(literal(_PART_TAGS), literal(0), _TAGS.c.tag, cast(null(), String))
    .where(_TAGS.c.user_id == bindparam("uid")),
)  # fmt: skip
_PARTS = select(_ALL_OF.subquery("parts")).order_by("part", "n", "a")


@dataclass(frozen=True)
class Profile:
    attributes: dict[str, Any]
    timezone: str | None
    stage: str | None
    rfm: str | None


@dataclass(frozen=True)
class Recipient:
    """The user's identities (kind → values, oldest first), where they can be
    reached, and their tags (sorted)."""

    identities: dict[str, list[str]] = field(default_factory=dict)
    reach: Reach = UNKNOWN_USER
    tags: list[str] = field(default_factory=list)


def canonical_profile(session: Any, user_id: str) -> tuple[str, Profile | None]:
    """The live user ``user_id`` stands for (itself when unknown) and their
    profile (None when unknown): one statement unless they were merged."""
    row = session.execute(_WITH_MERGED_INTO, {"uid": user_id}).first()
    if row is None:
        return user_id, None
    uid = user_id
    if row.merged_into is not None:
        uid = identity.canonical_user_id(session, row.merged_into) or user_id
        row = session.execute(_PROFILE, {"uid": uid}).first()
        if row is None:
            return uid, None
    return uid, Profile(dict(row.attributes or {}), row.timezone, row.stage, row.rfm)


def recipient(session: Any, user_id: str) -> Recipient:
    """Identities, opt-outs and tags of a known user, in one statement."""
    ids: dict[str, list[str]] = {}
    opted_out: set[str] = set()
    tags: list[str] = []
    for part, _, a, b in session.execute(_PARTS, {"uid": user_id}):
        if part == _PART_IDS:
            ids.setdefault(a, []).append(b)
        elif part == _PART_OPTED_OUT:
            opted_out.add(a)
        else:
            tags.append(a)
    return Recipient(ids, Reach(addresses_from(ids), frozenset(opted_out)), tags)
