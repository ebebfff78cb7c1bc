"""Journey text → IR.

Lark's LALR parser with an indentation postlexer reads the text; a small
builder turns the tree into ``dsl.ir`` models. Operators are not programmers,
so a file with mistakes must show *every* mistake at once, in words they know:

- syntax errors are recovered line by line — the offending line is replaced
  by a harmless placeholder and the text is parsed again, so later errors are
  still found (``dsl._recovery``), within a budget of characters re-read
  (E119 where it stopped looking);
- Lark's LALR errors are turned into friendly messages (``dsl._diagnose``);
- problems that are grammatical but wrong (an unknown channel, a bare field in
  an ``if``…) are collected by the builder (``dsl._builder``);
- the bounds (``dsl.limits``): the text's size first, then characters that
  are not text (unpaired surrogates), while building numbers, durations and
  nesting — before anything could overflow or run long.

Everything ends in one ``JourneyError`` carrying all diagnostics. Parsing does
no I/O. The grammar and its one list of step rules: ``dsl._grammar``; models
built without validation: ``dsl._fastmodel``.
"""

from __future__ import annotations

from dsl._builder import Builder
from dsl._gc import gc_paused
from dsl._grammar import keywords
from dsl._recovery import parse_tree
from dsl.durations import parse_duration
from dsl.errors import Diagnostic, JourneyError
from dsl.ir import Journey
from dsl.limits import source_problems

__all__ = ["keywords", "parse", "parse_duration"]


def _parse(source: str) -> tuple[Journey | None, list[Diagnostic]]:
    tree, patched, diagnostics = parse_tree(source)
    if tree is None:
        return None, diagnostics
    builder = Builder(source)
    journey: Journey | None
    try:
        journey = builder.journey(tree)
    except (ValueError, AssertionError):
        if not diagnostics:
            raise
        journey = None
    diagnostics += [d for d in builder.diagnostics if d.line not in patched]
    return journey, diagnostics


def _said_already(diag: Diagnostic, screened: list[Diagnostic]) -> bool:
    """A too-deep line the builder finds again, or the U+FFFD put in place of
    a raw surrogate that the lexer trips over: the screen's diagnostic says it."""
    if diag.code == "E131":
        return any(d.code == "E131" and d.line == diag.line for d in screened)
    if diag.code == "E101":
        return any(d.code == "E134" and (d.line, d.column) == (diag.line, diag.column) for d in screened)
    return False


def parse(source: str, filename: str = "<journey>") -> Journey:
    """Parse journey text into the IR (steps carry ids and spans). Raises
    ``JourneyError`` with every syntax problem found."""
    if source.startswith("\ufeff"):
        source = source[1:]
    screened = source_problems(source)
    diagnostics = screened.diagnostics
    if screened.too_big:
        raise JourneyError(diagnostics, source=screened.shown, filename=filename)
    with gc_paused():  # builds no garbage cycles, even when recovering from errors
        journey, found = _parse(screened.text)
    diagnostics += [d for d in found if not _said_already(d, diagnostics)]
    if diagnostics or journey is None:
        diagnostics.sort(key=lambda d: (d.line, d.column, d.code))
        raise JourneyError(diagnostics, source=screened.shown, filename=filename)
    return journey
