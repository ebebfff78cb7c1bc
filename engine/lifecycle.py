"""A journey's lifecycle, the one place its status transitions are decided.

    draft → active ⇄ paused → stopped → archived
              └──────────────→ stopped

- ``draft``: deployed text that admits nobody yet (deployed with ``draft``);
  its first activation makes it ``active``.
- ``active``: entries admitted. ``paused``: no new entries, running runs go
  on; entries that arrive meanwhile are dropped, not queued.
- ``stopped``: no new entries and every running run cancelled. Nothing comes
  back from here (a stopped journey's audience would be re-entered by people
  whose runs were just cancelled): deploy it under another id instead.
- ``archived``: read-only, hidden from the default listing; only once no run
  is open.

Asking for the status a journey already has is allowed and changes nothing
(a retried request, or a second stop that sweeps stragglers).
"""

from __future__ import annotations

from typing import Final

STATUSES: Final[tuple[str, ...]] = ("draft", "active", "paused", "stopped", "archived")
ADMITTING: Final[str] = "active"  # the one status that lets new entries in

TRANSITIONS: Final[dict[str, frozenset[str]]] = {
    "draft": frozenset({"active"}),
    "active": frozenset({"paused", "stopped"}),
    "paused": frozenset({"active", "stopped"}),
    "stopped": frozenset({"archived"}),
    "archived": frozenset(),
}


class IllegalTransition(ValueError):
    """A status change the lifecycle does not allow (the API answers 409)."""

    def __init__(self, journey_id: str, current: str, wanted: str) -> None:
        self.journey_id = journey_id
        self.current = current
        self.wanted = wanted
        self.allowed = sorted(TRANSITIONS.get(current, frozenset()))
        can = ", ".join(self.allowed) if self.allowed else "nothing (it is final)"
        super().__init__(f"journey {journey_id!r} is {current}; it cannot become {wanted} (from {current}: {can})")


def allowed(current: str, wanted: str) -> bool:
    return wanted == current or wanted in TRANSITIONS.get(current, frozenset())


def check(journey_id: str, current: str, wanted: str) -> None:
    """Raise ``IllegalTransition`` unless ``current → wanted`` is allowed;
    ``ValueError`` for a status that does not exist."""
    if wanted not in STATUSES:
        raise ValueError(f"status must be one of {', '.join(STATUSES)} (got {wanted!r})")
    if not allowed(current, wanted):
        raise IllegalTransition(journey_id, current, wanted)


def path_to_archive(current: str) -> list[str]:
    """The statuses archiving passes through: an active or paused journey
    with no open run is stopped first (nothing to cancel), then archived."""
    if current in ("active", "paused"):
        return ["stopped", "archived"]
    return ["archived"]
