"""What the reconciling providers share: when a vendor's "no record" can be
believed, and how "could not tell" is answered.

A request the client gave up on (timeout) may still be processed by the
vendor afterwards, so an empty query answer right after the attempt proves
nothing; only once ``settle_s`` has passed since the first attempt began is
"not found" taken as "never arrived". Until then, and whenever the query
itself fails, the answer is a retryable failure: the send path neither sends
(which could duplicate) nor gives up (which could lose the message), it tries
the step again later (see :class:`engine.channels.base.Reconcilable`).
"""

from __future__ import annotations

from datetime import UTC, datetime

from engine.channels._common import failed
from engine.channels.base import ProviderResult


def as_utc(value: datetime) -> datetime:
    """The same instant, aware and in UTC (naive input is taken as UTC)."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def could_not_tell(channel: str, why: str) -> ProviderResult:
    """The vendor could not be asked: retry the step, neither send nor give up."""
    return failed(f"{channel}: could not reconcile an earlier attempt ({why}); will ask again", retryable=True)


def too_recent(channel: str, started: datetime, now: datetime, settle_s: float) -> ProviderResult | None:
    """A retryable answer while "not found" is still meaningless, else None."""
    age = (now - started).total_seconds()
    if age < settle_s:
        return could_not_tell(channel, f"no record yet of an attempt {age:.0f}s old, believed after {settle_s:.0f}s")
    return None
