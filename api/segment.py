"""The Segment tracking API's message shapes, and how they map onto users.

Bodies are Segment's (``userId``, ``anonymousId``, ``event``, ``properties``,
``traits``, ``context``, ``timestamp``, ``messageId``, ``integrations``,
``sentAt``; batches are ``{"batch": [...]}`` with a ``type`` per message), so
Segment's libraries work unchanged. Unknown fields are ignored, as Segment
does. Identifiers:

- ``userId`` → the identity kind ``segment_user_id_kind`` (default ``member_id``);
- ``anonymousId`` → ``anonymous_id``;
- ``traits`` / ``context.traits`` keys naming an identifier (``phone``,
  ``mobile``, ``email``, ``openid``, ``unionid``, ``app_user_id``…) → that kind;
  the other traits of an ``identify`` become profile attributes.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints, model_validator

from api.schemas import JsonDict, MessageId, SegmentId

log = logging.getLogger("journeys.api")

TRAIT_KINDS: dict[str, str] = {
    "phone": "phone",
    "mobile": "phone",
    "email": "email",
    "openid": "openid",
    "openId": "openid",
    "unionid": "unionid",
    "unionId": "unionid",
    "member_id": "member_id",
    "memberId": "member_id",
    "app_user_id": "app_user_id",
    "appUserId": "app_user_id",
    "wecom_external_userid": "wecom_external_userid",
    "externalUserId": "wecom_external_userid",
    "wecom_group_chat_id": "wecom_group_chat_id",
    "miniprogram_openid": "miniprogram_openid",
}

_EARLIEST = datetime(1970, 1, 2, tzinfo=UTC)
_LATEST = datetime(2200, 1, 1, tzinfo=UTC)


def _sane_time(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    try:
        value = value.astimezone(UTC)
    except (OverflowError, ValueError) as exc:
        raise ValueError("timestamp out of range") from exc
    if not (_EARLIEST <= value <= _LATEST):
        raise ValueError("timestamp must be between 1970 and 2200")
    return value


Timestamp = Annotated[datetime | None, AfterValidator(_sane_time)]
EventName = Annotated[str, StringConstraints(min_length=1, max_length=128, pattern=r"^[^\x00-\x1f\x7f]+$")]
WriteKey = Annotated[str, StringConstraints(max_length=255)]


class _Message(BaseModel):
    model_config = ConfigDict(extra="ignore")
    userId: SegmentId | None = None
    anonymousId: SegmentId | None = None
    context: JsonDict = Field(default_factory=dict)
    integrations: JsonDict = Field(default_factory=dict)
    timestamp: Timestamp = None
    sentAt: Timestamp = None
    messageId: MessageId | None = Field(None, description="De-duplicates: a message id already stored is ignored")
    writeKey: WriteKey | None = None

    @model_validator(mode="after")
    def _who(self) -> _Message:
        if not self.userId and not self.anonymousId:
            raise ValueError("either userId or anonymousId is required")
        return self


class Track(_Message):
    type: Literal["track"] = "track"
    event: EventName
    properties: JsonDict = Field(default_factory=dict)


class Identify(_Message):
    type: Literal["identify"] = "identify"
    traits: JsonDict = Field(default_factory=dict)


class Page(_Message):
    """Stored as an event named ``page`` (``screen`` for screens) with the
    page name in ``properties.name``."""

    type: Literal["page"] = "page"
    name: Annotated[str, StringConstraints(max_length=255)] | None = None
    properties: JsonDict = Field(default_factory=dict)


class Screen(Page):
    type: Literal["screen"] = "screen"  # type: ignore[assignment]


class Group(_Message):
    """Accepted for compatibility; groups are not modelled (ignored)."""

    type: Literal["group"] = "group"
    groupId: SegmentId | None = None
    traits: JsonDict = Field(default_factory=dict)


class Alias(BaseModel):
    model_config = ConfigDict(extra="ignore")
    type: Literal["alias"] = "alias"
    userId: SegmentId
    previousId: SegmentId
    context: JsonDict = Field(default_factory=dict)
    integrations: JsonDict = Field(default_factory=dict)
    timestamp: Timestamp = None
    sentAt: Timestamp = None
    messageId: MessageId | None = None
    writeKey: WriteKey | None = None


Message = Annotated[Track | Identify | Page | Screen | Group | Alias, Field(discriminator="type")]


class Batch(BaseModel):
    model_config = ConfigDict(extra="ignore")
    batch: Annotated[list[Message], Field(max_length=5000)]
    context: JsonDict = Field(default_factory=dict)
    integrations: JsonDict = Field(default_factory=dict)
    sentAt: Timestamp = None
    writeKey: WriteKey | None = None


class SegmentOk(BaseModel):
    success: bool = True


def _trait_identifiers(traits: Any) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    if not isinstance(traits, dict):
        return out
    for key, kind in TRAIT_KINDS.items():
        value = traits.get(key)
        if isinstance(value, bool) or not isinstance(value, (str, int)):
            continue
        text = str(value).strip()
        if not text or len(text) > 255 or any(ord(c) < 32 for c in text):
            log.info("ignored an unusable %s trait", kind)
            continue
        out.append((kind, text))
    return out


def identifiers(msg: _Message, user_id_kind: str, traits: dict[str, Any] | None = None) -> list[tuple[str, str]]:
    """Every identifier a message carries, in order of authority."""
    out: list[tuple[str, str]] = []
    if msg.userId:
        out.append((user_id_kind, msg.userId))
    if msg.anonymousId:
        out.append(("anonymous_id", msg.anonymousId))
    out += _trait_identifiers(traits or {})
    out += _trait_identifiers(msg.context.get("traits"))
    seen: set[tuple[str, str]] = set()
    return [p for p in out if not (p in seen or seen.add(p))]


def _valid_zone(name: Any) -> str | None:
    if not isinstance(name, str) or not name or len(name) > 64:
        return None
    try:
        ZoneInfo(name)
    except (ValueError, KeyError, OSError):
        return None
    return name


def profile_attributes(msg: Identify) -> dict[str, Any]:
    """Traits that are not identifiers become attributes; a valid IANA
    ``timezone`` (trait or ``context.timezone``) sets the user's zone, an
    invalid one is dropped (quiet hours and local-time waits depend on it)."""
    attrs = {k: v for k, v in msg.traits.items() if k not in TRAIT_KINDS}
    zone = attrs.pop("timezone", None) or msg.context.get("timezone")
    if zone is not None:
        valid = _valid_zone(zone)
        if valid:
            attrs["timezone"] = valid
    return attrs
