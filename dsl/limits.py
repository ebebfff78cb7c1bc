"""The language's bounds: how big, deep, long and strange a journey may be.

Each bound is checked before the work it protects, and breaking one is a
diagnostic like any other (a code, the line and column, a caret, a hint), so
the CLI, ``/check``, deploy and the worker — which only ever receives checked
IR — agree on what is a journey. Codes:

- E130 the file is too big (characters or lines); checked before parsing
- E131 nesting too deep (blocks in blocks, and conditions in conditions)
- E132 a number with too many digits
- E133 a duration over ``MAX_DURATION_SECONDS``
- E134 an unpaired UTF-16 surrogate, written (``\\ud800``) or raw
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

from dsl.errors import Diagnostic
from dsl.ir import Cond, Journey, Span, Step

__all__ = [
    "MAX_DEPTH",
    "MAX_DURATION_SECONDS",
    "MAX_LINES",
    "MAX_NUMBER_DIGITS",
    "MAX_SOURCE_CHARS",
    "journey_depth",
    "source_problems",
]

MAX_SOURCE_CHARS = 300_000
"""The longest journey text. The biggest one measured (bench/parse_bench.py's
10,000 lines, 265,000 characters) parses and checks in about a second; real
journeys are under 5,000 characters. The API's bound is twice this
(``api.schemas.API_SOURCE_CHARS``), so a text over it gets this E130, with its
line and caret, rather than a validator's generic refusal."""

MAX_LINES = 12_000
"""The most lines a journey may have (the same 10,000-line journey, with room)."""

MAX_DEPTH = 32
"""How deeply a journey may nest: every block inside a step (an ``if``
branch, a split variant, ``on event:``, ``on out_of_stock:``) is a level, and
so is every ``not``, ``and``/``or`` inside another condition, counted from the
block the condition is in; on its own, a line may not open more than this
many parentheses or write more ``not``s in a row either. The IR goes through JSON between the API, the
store and Temporal, and pydantic's JSON reader stops at 200 levels: each
nested ``if`` adds four (the step, its branches, the branch, its steps), so
before this bound 50 nested ifs deployed and then failed in the worker, and
the builder itself overflowed Python's stack near 250. At 32 levels the IR is
at most about 135 levels deep."""

MAX_NUMBER_DIGITS = 15
"""Digits in a number, before and after the point together: a float holds 15
significant digits exactly, and ``int()`` is never asked to read more (Python
refuses over 4,300 digits with a ``ValueError``)."""

MAX_DURATION_SECONDS = 3650 * 86400
"""The longest wait, timeout, window, cooldown or offset: 10 years (3650d).
The interpreter adds a duration to the workflow's clock, and Python's
``datetime`` ends at the year 9999 (``wait 10000000d`` used to pass the
checker and fail the run forever with an ``OverflowError``); Temporal's timers
go further, but no journey waits a decade for a user."""

MAX_DURATION_PART_DIGITS = 9
"""Digits in one part of a duration (``1000000000s`` is already 31 years), so
the parser never reads a long one."""

_SURROGATE = re.compile("[\ud800-\udfff]")
REPLACEMENT = "\ufffd"

# What nests within a line: parentheses and ``not not …``, outside texts and
# comments. Lark's LALR stack grows with each, and so does its time: 30,000
# parentheses around one tag (a 60,000-character line) took 8 s to parse.
_NOT = re.compile("not")
_NOT_CHAIN = re.compile(r"(?<!\w)not(?:[ \t]+not(?!\w))" + f"{{{MAX_DEPTH},}}")
_NESTING = re.compile(r'"(?:[^"\\\n]|\\.)*"|#[^\n]*|(\()|(\))|(' + _NOT_CHAIN.pattern + ")")


def _position(source: str, index: int) -> tuple[int, int]:
    """1-based line and column of ``source[index]``; lines end at ``\\n``
    (``dsl.errors.source_lines``)."""
    line_start = source.rfind("\n", 0, index) + 1
    return source.count("\n", 0, index) + 1, index - line_start + 1


@dataclass(frozen=True)
class Screened:
    """A journey text after the whole-text bounds: what to parse, what to show
    under the diagnostics, and what was found."""

    text: str  # to parse: surrogates replaced, nesting past MAX_DEPTH blanked (same length)
    shown: str  # to show: surrogates replaced, nothing else changed
    diagnostics: list[Diagnostic]
    too_big: bool = False  # over MAX_SOURCE_CHARS or MAX_LINES: not to be parsed at all


def _too_big(source: str, message: str) -> Screened:
    return Screened("", source[:200], [Diagnostic("E130", message, 1, 1, "split it into several journeys")], True)


def source_problems(source: str) -> Screened:
    """The whole-text bounds, checked before the text is parsed, in one pass
    each: the size, then raw surrogates (replaced by U+FFFD, so the other
    mistakes are still found in place), then nesting within lines."""
    if len(source) > MAX_SOURCE_CHARS:
        return _too_big(
            source, f"this journey is {len(source):,} characters long, over the limit of {MAX_SOURCE_CHARS:,}"
        )
    lines = source.count("\n") + (0 if source.endswith("\n") else 1)
    if lines > MAX_LINES:
        return _too_big(source, f"this journey has {lines:,} lines, over the limit of {MAX_LINES:,}")
    found = [match.start() for match in _SURROGATE.finditer(source)]
    diagnostics = [surrogate(*_position(source, index), ord(source[index])) for index in found]
    shown = _SURROGATE.sub(REPLACEMENT, source) if found else source
    text = shown
    if "(" in text or "not" in text:
        text, deep = _flatten_nesting(text)
        diagnostics += deep
    return Screened(text, shown, diagnostics)


def _flatten_nesting(source: str) -> tuple[str, list[Diagnostic]]:
    """E131 for parentheses or ``not``s nested more than ``MAX_DEPTH`` deep
    on a line, and the text with the excess blanked out (same length, so
    every other position stays), so the parse that follows stays linear.
    Only a line with that many ``(`` or ``not``s in a row is looked at
    closely (a 10,000-line journey is screened in a few milliseconds)."""
    lines = source.split("\n")
    diagnostics: list[Diagnostic] = []
    for number, line in enumerate(lines, start=1):
        if line.count("(") <= MAX_DEPTH and not _NOT_CHAIN.search(line):
            continue
        chars = list(line)
        first: int | None = None
        depth = 0
        for match in _NESTING.finditer(line):
            opening, closing, nots = match.groups()
            start, end = match.span()
            if nots:  # keep MAX_DEPTH of them
                start = [m.end() for m in _NOT.finditer(line, start, end)][MAX_DEPTH - 1]
            elif opening:
                depth += 1
                if depth <= MAX_DEPTH:
                    continue
            elif closing:
                depth = max(0, depth - 1)
                if depth < MAX_DEPTH:
                    continue
            else:  # a text or a comment
                continue
            chars[start:end] = " " * (end - start)
            first = start if first is None else first
        if first is not None:
            lines[number - 1] = "".join(chars)
            diagnostics.append(too_deep(number, first + 1, "this condition"))
    return ("\n".join(lines) if diagnostics else source), diagnostics


def surrogate(line: int, column: int, code: int, end_column: int | None = None) -> Diagnostic:
    return Diagnostic(
        "E134",
        f"U+{code:04X} is half of a UTF-16 pair, not a character",
        line,
        column,
        r"write the character itself, or both halves as \uD83D\uDE00 (an emoji)",
        end_column=end_column,
    )


def too_deep(line: int, column: int, what: str) -> Diagnostic:
    return Diagnostic(
        "E131",
        f"{what} is nested more than {MAX_DEPTH} levels deep",
        line,
        column,
        "flatten it: join conditions with and / elif, or move steps after a label and goto it",
    )


def _cond_depth(cond: Cond | None) -> int:
    """How deep a condition nests (a leaf is 0), without recursing."""
    deepest = 0
    stack: list[tuple[Cond, int]] = [(cond, 0)] if cond is not None else []
    while stack:
        node, depth = stack.pop()
        operands = node.operands_of()
        if operands:
            deepest = max(deepest, depth + 1)
            stack.extend((operand, depth + 1) for operand in operands)
    return deepest


def journey_depth(journey: Journey) -> Iterator[tuple[int, Span | None]]:
    """Each step's nesting (its block's level plus its conditions' own),
    without recursing, so a journey built in code rather than parsed — too
    deep for the recursive walks that follow — is measured safely too."""
    header_conds: list[Cond | None] = [getattr(journey.entry, "where", None)]
    if journey.goal is not None:
        header_conds.append(journey.goal.where)
    for rule in journey.exits:
        header_conds += [rule.where, rule.cond]
    for cond in header_conds:
        yield _cond_depth(cond), None
    stack: list[tuple[list[Step], int]] = [(journey.steps, 0)]
    while stack:
        steps, level = stack.pop()
        for step in steps:
            conds = step.conds()
            yield level + max((_cond_depth(c) for c, _ in conds), default=0), step.span
            stack.extend((block, level + 1) for block in step.blocks())
