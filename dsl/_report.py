"""What the checker's rules share: the workspace ``Registry`` they check
names against, the ``Report`` they add diagnostics to, and small helpers."""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass

from dsl.errors import Diagnostic, end_with_closers, source_lines
from dsl.ir import Span

__all__ = ["Profiles", "Registry", "Report", "did_you_mean", "valid_time"]

_TIME = re.compile(r"(\d{1,2}):(\d{2})")


Profile = tuple[str, str | None]  # (lifecycle stage, RFM layer or None)


@dataclass(frozen=True)
class Profiles:
    """The (lifecycle stage, RFM layer) pairs a user can have at one moment
    under the service's rules (layer None: never paid), and why the others
    cannot occur: each sentence with the pairs it rules out, so a hint says
    only what bears on the branch."""

    possible: frozenset[Profile]
    why: tuple[tuple[str, frozenset[Profile]], ...] = ()

    def reasons(self, wanted: set[Profile]) -> list[str]:
        return [sentence for sentence, ruled_out in self.why if ruled_out & wanted]


@dataclass
class Registry:
    """What exists in the workspace. ``None`` means "not checked"."""

    templates: set[str] | None = None
    pools: set[str] | None = None
    events: set[str] | None = None
    channels: set[str] | None = None
    # the other live journeys' priorities (journey id -> 1..10), for W307
    priorities: dict[str, int] | None = None
    # the (stage, RFM layer) pairs the service's rules allow, for W309
    profiles: Profiles | None = None


class Report:
    def __init__(self, source: str) -> None:
        self.lines = source_lines(source)
        self.out: list[Diagnostic] = []

    def add(
        self,
        code: str,
        message: str,
        span: Span | None,
        hint: str | None = None,
        *,
        line: int | None = None,
    ) -> None:
        severity = "warning" if code.startswith("W") else "error"
        if span is not None:
            end = None
            if span.end_line == span.line:
                text = self.lines[span.line - 1] if 0 < span.line <= len(self.lines) else ""
                end = end_with_closers(text, span.end_column)
            self.out.append(Diagnostic(code, message, span.line, span.column, hint, severity, end))
        else:
            ln = line or 1
            text = self.lines[ln - 1] if 0 < ln <= len(self.lines) else ""
            col = len(text) - len(text.lstrip()) + 1
            self.out.append(Diagnostic(code, message, ln, col, hint, severity, len(text.rstrip()) + 1 or None))

    def find_line(self, word: str) -> int | None:
        """The first line starting with ``word``, for header values without a span."""
        for number, text in enumerate(self.lines, start=1):
            if re.match(rf"\s*{word}\b", text):
                return number
        return None


def did_you_mean(name: str, known: set[str] | tuple[str, ...]) -> str | None:
    close = difflib.get_close_matches(name, list(known), n=1)
    return f"did you mean {close[0]!r}?" if close else None


def valid_time(text: str | None) -> bool:
    match = _TIME.fullmatch(text or "")
    return bool(match) and int(match.group(1)) < 24 and int(match.group(2)) < 60
