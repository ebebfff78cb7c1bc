"""Durations as the language writes them (``30m``, ``2h``, ``1d12h``, ``1w``).

The one parser of duration text for the whole repo (the language, the API's
query parameters), and its inverse, the canonical text the formatter and step
ids use.
"""

from __future__ import annotations

import re

__all__ = ["format_duration", "parse_duration"]

_UNITS = {"w": 7 * 86400, "d": 86400, "h": 3600, "m": 60, "s": 1}
_DURATION_PART = re.compile(r"(\d+)([wdhms])")


def parse_duration(text: str) -> int:
    """``1d12h`` → seconds (the parts are summed; text that is not a duration
    gives 0, the grammar only lets durations through)."""
    return sum(int(n) * _UNITS[u] for n, u in _DURATION_PART.findall(text))


def format_duration(seconds: int) -> str:
    """Canonical duration text: ``1d12h``, ``30m``, ``0s``. Weeks are written as
    days (``14d``), which is how operators count campaign windows."""
    if seconds <= 0:
        return "0s" if seconds == 0 else "-" + format_duration(-seconds)
    out = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if seconds >= size:
            out.append(f"{seconds // size}{unit}")
            seconds %= size
    return "".join(out)
