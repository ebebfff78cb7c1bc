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
journeys are under 5,000 characters. The API refuses texts over 200,000
characters before they get here."""

MAX_LINES = 12_000
"""The most lines a journey may have (the same 10,000-line journey, with room)."""

MAX_DEPTH = 32
"""How deeply a journey may nest: every block inside a step (an ``if``
branch, a split variant, ``on event:``, ``on out_of_stock:``) is a level, and
so is every ``not``, ``and``/``or`` inside another condition, counted from the
block the condition is in. The IR goes through JSON between the API, the
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


def _position(source: str, index: int) -> tuple[int, int]:
    """1-based line and column of ``source[index]``; lines end at ``\\n``
    (``dsl.errors.source_lines``)."""
    line_start = source.rfind("\n", 0, index) + 1
    return source.count("\n", 0, index) + 1, index - line_start + 1


def source_problems(source: str) -> tuple[str, list[Diagnostic], bool]:
    """The whole-text bounds, checked before the text is parsed: the text to
    parse (raw surrogates replaced by U+FFFD, same length, so the other
    mistakes are still found in place), the diagnostics, and whether the text
    is too big to parse at all."""
    if len(source) > MAX_SOURCE_CHARS:
        return (
            source,
            [
                Diagnostic(
                    "E130",
                    f"this journey is {len(source):,} characters long, over the limit of {MAX_SOURCE_CHARS:,}",
                    1,
                    1,
                    "split it into several journeys",
                )
            ],
            True,
        )
    lines = source.count("\n") + (0 if source.endswith("\n") else 1)
    if lines > MAX_LINES:
        return (
            source,
            [
                Diagnostic(
                    "E130",
                    f"this journey has {lines:,} lines, over the limit of {MAX_LINES:,}",
                    1,
                    1,
                    "split it into several journeys",
                )
            ],
            True,
        )
    found = [match.start() for match in _SURROGATE.finditer(source)]
    if not found:
        return source, [], False
    diagnostics = [surrogate(*_position(source, index), ord(source[index])) for index in found]
    return _SURROGATE.sub(REPLACEMENT, source), diagnostics, False


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
