"""Diagnostics: the one error type of the language, and how it is shown.

Every problem found in a journey — a syntax error from Lark or a rule broken in
the checker — becomes a ``Diagnostic``. They are collected, never raised one by
one, so an operator sees every problem at once. ``JourneyError`` is the only
exception the language raises; it carries all diagnostics of a file.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Literal

Severity = Literal["error", "warning"]


@dataclass(frozen=True)
class Diagnostic:
    code: str  # e.g. "E101"; stable, documented in dsl/README
    message: str
    line: int  # 1-based
    column: int  # 1-based
    hint: str | None = None
    severity: Severity = "error"
    end_column: int | None = None  # for a wider caret

    def render(self, source: str, filename: str = "<journey>") -> str:
        """``file:line:col: error[E101]: message``, the source line, a caret, the hint."""
        lines = source_lines(source)
        text = shown(lines[self.line - 1]) if 0 < self.line <= len(lines) else ""
        width = max(1, (self.end_column or self.column + 1) - self.column)
        prefix = " " * _display_width(text[: self.column - 1])
        caret = prefix + "^" * min(width, max(1, _display_width(text[self.column - 1 :])))
        out = [
            f"{filename}:{self.line}:{self.column}: {self.severity}[{self.code}]: {self.message}",
            f"    {text}",
            f"    {caret}",
        ]
        if self.hint:
            out.append(f"    hint: {self.hint}")
        return "\n".join(out)

    def as_dict(self) -> dict[str, object]:
        return {
            "code": self.code,
            "severity": self.severity,
            "message": self.message,
            "line": self.line,
            "column": self.column,
            "hint": self.hint,
        }


def source_lines(source: str) -> list[str]:
    """The lines of a journey as the parser, the diagnostics and the formatter
    count them: a line ends at ``\n`` (a ``\r`` right before it belongs to the
    line ending), and nowhere else. A lone ``\r``, a form feed, U+0085, U+2028
    and U+2029 are characters on their line — Lark counts lines that way, and
    ``str.splitlines``, which breaks at all of them, put carets on the wrong
    line (246 of 7,218 fuzzed errors did)."""
    return [line[:-1] if line.endswith("\r") else line for line in source.split("\n")]


# What a terminal would not show as one column on the line: controls (a lone
# \r would move the cursor back), the Unicode line and paragraph separators,
# and surrogates (which cannot even be written out as UTF-8).
_UNSHOWABLE = re.compile("[\x00-\x08\x0b-\x1f\x7f\x85\u2028\u2029\ud800-\udfff]")


def shown(line: str) -> str:
    """A source line made safe to print above a caret: each character that a
    terminal would not print in one column becomes ``�``, so the caret stays
    under the column the diagnostic names."""
    return _UNSHOWABLE.sub("\ufffd", line)


_CLOSERS = re.compile(r"(?:[ \t]*[:)])+")


def end_with_closers(text: str, end_column: int) -> int:
    """``end_column`` moved past the ``)`` and ``:`` right after it on the line
    ``text``. A node's span ends at its last word because the parser drops
    punctuation; a caret under ``if (tag a or tag b):`` or ``split:`` should
    still cover the whole head."""
    found = _CLOSERS.match(text, end_column - 1) if 0 < end_column <= len(text) + 1 else None
    return found.end() + 1 if found else end_column


def _display_width(text: str) -> int:
    """Terminal columns: CJK characters take two, so the caret lines up under
    Chinese text."""
    import unicodedata

    return sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in text)


@dataclass
class JourneyError(Exception):
    """Raised by ``parse``/``check`` with every diagnostic of one source."""

    diagnostics: list[Diagnostic]
    source: str = ""
    filename: str = "<journey>"
    extra: dict[str, object] = field(default_factory=dict)

    def __str__(self) -> str:
        return self.render()

    def render(self) -> str:
        return "\n".join(d.render(self.source, self.filename) for d in self.diagnostics)

    @property
    def errors(self) -> list[Diagnostic]:
        return [d for d in self.diagnostics if d.severity == "error"]
