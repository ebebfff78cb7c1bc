"""What a callback becomes: journey events on a person, a delivery report,
or nothing (with why). The vendors' modules build these from a message;
``engine.callbacks.processing`` carries them out."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from engine.callbacks.messages import Message, text


@dataclass(frozen=True)
class JourneyEvent:
    """One event for one person. ``suffix`` tells apart the events of one
    message (a group change names several members); the event id is the
    receipt id plus it, so it is the same however often the message comes.
    ``placement`` is the state / scene a channel code may own; ``contact``:
    the person became a contact by it (added a staff member, followed the
    account), which channel codes count as a new contact. ``following``:
    the vendor says the person follows (True) or stopped following (False)
    its channel, which decides whether messages can reach them there
    (``engine.consent.follow_state``); None: it does not say. ``via``: the
    staff member that relation is with, where it is one per staff member
    (WeCom), else None."""

    name: str
    identifiers: tuple[tuple[str, str], ...]
    properties: dict[str, Any]
    occurred_at: datetime | None
    suffix: str = ""
    placement: str | None = None
    contact: bool = False
    following: bool | None = None
    via: str | None = None


@dataclass(frozen=True)
class DeliveryReport:
    """A vendor's word on a message we sent (the Official Account's
    ``TEMPLATESENDJOBFINISH``): the provider message id and how it ended."""

    channel: str
    provider_message_id: str
    status: str  # sent | failed
    reason: str | None
    # the recipient: the ledger's rows are found through the user's
    # (indexed) sends, not a scan of every send for the message id
    identifiers: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class Mapped:
    kind: str  # MsgType/Event/ChangeType[/UpdateDetail]: what the receipt says it was
    events: list[JourneyEvent] = field(default_factory=list)
    report: DeliveryReport | None = None
    ignored: str | None = None  # why nothing comes of it


def kind_of(message: Message, *names: str) -> str:
    """``event/change_external_contact/add_external_contact``: the fields
    that say what a message is, joined, bounded for the receipt's column."""
    parts = [text(message, "MsgType")] + [text(message, n) for n in names]
    return "/".join(p for p in parts if p)[:128] or "unknown"


def occurred(message: Message) -> datetime | None:
    """``CreateTime`` (Unix seconds) as an aware UTC datetime; None when
    absent or absurd (the event then happened when it was received)."""
    raw = text(message, "CreateTime")
    if not raw.isdigit():
        return None
    seconds = int(raw)
    if not 0 < seconds < 32503680000:  # before year 3000
        return None
    return datetime.fromtimestamp(seconds, UTC)


def member_suffix(member: str) -> str:
    """A bounded, stable suffix for one member of a message that names many."""
    return ":" + hashlib.sha256(member.encode("utf-8")).hexdigest()[:16]
