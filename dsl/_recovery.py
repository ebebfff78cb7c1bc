"""Recovery: parse, and on a syntax error patch the offending line with a
harmless placeholder (``pass``, an empty block…) and parse again, so one run
reports every mistake of the file, not just the first.

Every attempt re-reads the text from the top to the next error (Lark's LALR
parser stops there), so the work grows with the file's size times its
errors: a 265,000-character file with 25 errors spread through it re-read
about 7 million characters, seconds of a CPU that ``/check`` — open to every
viewer, on every typing pause — gives anyone who asks. So recovery has a
budget of characters read, ``REPARSE_BUDGET_CHARS``: a normal file shows all
its errors at once (a 5,000-character journey could be re-read 120 times),
and a big broken one shows the first ones and E119, "more may follow; fix
these first", where it stopped looking.
"""

from __future__ import annotations

from dataclasses import dataclass

from lark import Tree
from lark.exceptions import LarkError, UnexpectedInput

from dsl._diagnose import diagnose, is_code
from dsl._grammar import INDENTER, lark
from dsl._indenter import indent_of
from dsl.errors import Diagnostic
from dsl.limits import MAX_SOURCE_CHARS

MAX_SYNTAX_ERRORS = 25
MAX_ATTEMPTS = 120

REPARSE_BUDGET_CHARS = 2 * MAX_SOURCE_CHARS
"""Characters recovery may read in all its parses of one text (each parse
counts up to where it stopped). Twice the biggest text, so a broken file
costs about what two clean parses of the biggest one do; the first parse is
always made. A 5,000-character journey still gets every attempt."""


@dataclass
class Reads:
    """What recovery read: parses made and characters read by them (up to
    each error, or the whole text), for tests to count the work."""

    parses: int = 0
    chars: int = 0


# The placeholders are per block context, not per step kind: a line that opens
# a block becomes an if, an on-event branch or a split variant (whichever the
# parser accepts there), any other line a pass, an inline branch or a variant.


def _children_end(lines: list[str], index: int) -> int:
    """Index just past the lines indented under ``lines[index]``."""
    base = indent_of(lines[index])
    end = index + 1
    j = index + 1
    while j < len(lines):
        if not is_code(lines[j]):
            j += 1
            continue
        if indent_of(lines[j]) <= base:
            break
        j += 1
        end = j
    return end


def _candidates(original: list[str], work: list[str], index: int) -> list[list[str] | None]:
    """Replacement texts for a broken line (and its indented block), tried in
    order until the error moves on; ``None`` means give up."""
    text = original[index]
    ind = text[: len(text) - len(text.lstrip(" \t"))]
    end = _children_end(original, index)
    block = work[index + 1 : end]
    blank_all = [""] * (end - index)
    if all(not is_code(x) for x in original[:index]):
        return [[ind + 'journey "_"', *block], None]
    if block:
        return [
            [ind + "if tag _:", *block],
            [ind + "on event:", *block],
            [ind + "100% _:", *block],
            [ind + "pass"] + [""] * len(block),
            blank_all,
            None,
        ]
    return [[ind + "pass"], [ind + "100% _"], [ind + "on event: pass"], [""], None]


def _read_up_to(err: UnexpectedInput | None, text: str) -> int:
    """Characters a parse read: up to its error, or all of them."""
    pos = getattr(err, "pos_in_stream", None) if err is not None else None
    return pos + 1 if isinstance(pos, int) and 0 <= pos < len(text) else len(text)


def _more_may_follow(reported: int, line: int, column: int, why: str) -> Diagnostic:
    """E119: recovery stopped looking; the errors above are real, the rest
    of the file is unread."""
    noun = "error" if reported == 1 else "errors"
    return Diagnostic(
        "E119",
        f"stopped looking after {reported} syntax {noun} ({why}); more may follow from here",
        line,
        column,
        "fix these first, then check again",
    )


def parse_tree(source: str, reads: Reads | None = None) -> tuple[Tree | None, set[int], list[Diagnostic]]:
    """Parse, recovering from syntax errors line by line. Returns the tree of
    the (possibly patched) text, the 1-based lines that were patched, and the
    syntax diagnostics; ``reads``, when given, is filled in with the work."""
    reads = reads if reads is not None else Reads()
    lines = source.split("\n")
    work = list(lines)
    diagnostics: dict[int, Diagnostic] = {}
    indent_problems: dict[int, Diagnostic] = {}
    tries: dict[int, int] = {}  # patched line index -> next candidate
    patched: set[int] = set()
    tree: Tree | None = None
    stopped: Diagnostic | None = None
    for attempt in range(MAX_ATTEMPTS + 1):
        text = "\n".join(work) + "\n"
        over_budget = attempt > 0 and reads.chars + len(text) > REPARSE_BUDGET_CHARS  # if it read it all
        if over_budget or attempt == MAX_ATTEMPTS:
            why = "the file is big: each one costs a re-read of it" if over_budget else "too many tries"
            line = _after(patched, len(lines))
            unread = lines[line - 1]
            column = len(unread) - len(unread.lstrip(" \t")) + 1
            stopped = _more_may_follow(len(diagnostics), line, column, why)
            break
        err: UnexpectedInput | None = None
        reads.parses += 1
        try:
            tree = lark().parse(text)
        except UnexpectedInput as exc:
            err = exc
        except LarkError as exc:  # pragma: no cover - grammar-level surprises still become diagnostics
            diagnostics.setdefault(1, Diagnostic("E100", f"could not parse: {exc}", 1, 1))
            break
        finally:
            for line, col, message in INDENTER.problems:
                indent_problems.setdefault(
                    line,
                    Diagnostic(
                        "E109", message, line, col, "indent with the same number of spaces as the block it belongs to"
                    ),
                )
        reads.chars += _read_up_to(err, text)
        if err is None:
            break
        tree = None
        diag = diagnose(err, lines)
        index = max(0, min(diag.line, len(work)) - 1)
        if index not in tries:
            if len(diagnostics) >= MAX_SYNTAX_ERRORS:
                stopped = _more_may_follow(len(diagnostics), diag.line, diag.column, "the most shown at once")
                break
            diagnostics.setdefault(diag.line, diag)
            tries[index] = 0
        options = _candidates(lines, work, index)
        choice = options[min(tries[index], len(options) - 1)]
        tries[index] += 1
        if choice is None:
            break
        end = _children_end(lines, index)
        work[index:end] = choice + [""] * (end - index - len(choice))
        patched.update(range(index, end))
    found = list(diagnostics.values()) + [d for ln, d in indent_problems.items() if ln not in diagnostics]
    if stopped is not None:
        tree = None  # the text was never read to its end
        found.append(stopped)
    if tree is None and not found:  # pragma: no cover - attempts exhausted without a diagnostic
        found.append(Diagnostic("E100", "could not parse this journey", 1, 1))
    return tree, {i + 1 for i in patched}, found


def _after(patched: set[int], line_count: int) -> int:
    """The 1-based line after the last patched one: where reading stopped."""
    return min(max(patched, default=-1) + 2, line_count)
