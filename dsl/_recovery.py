"""Recovery: parse, and on a syntax error patch the offending line with a
harmless placeholder (``pass``, an empty block…) and parse again, so one run
reports every mistake of the file, not just the first.
"""

from __future__ import annotations

from lark import Tree
from lark.exceptions import LarkError, UnexpectedInput

from dsl._diagnose import diagnose, is_code
from dsl._grammar import INDENTER, lark
from dsl._indenter import indent_of
from dsl.errors import Diagnostic

MAX_SYNTAX_ERRORS = 25
MAX_ATTEMPTS = 120

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


def parse_tree(source: str) -> tuple[Tree | None, set[int], list[Diagnostic]]:
    """Parse, recovering from syntax errors line by line. Returns the tree of
    the (possibly patched) text, the 1-based lines that were patched, and the
    syntax diagnostics."""
    lines = source.split("\n")
    work = list(lines)
    diagnostics: dict[int, Diagnostic] = {}
    indent_problems: dict[int, Diagnostic] = {}
    tries: dict[int, int] = {}  # patched line index -> next candidate
    patched: set[int] = set()
    tree: Tree | None = None
    for _ in range(MAX_ATTEMPTS):
        err: UnexpectedInput | None = None
        try:
            tree = lark().parse("\n".join(work) + "\n")
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
        if err is None:
            break
        tree = None
        diag = diagnose(err, lines)
        index = max(0, min(diag.line, len(work)) - 1)
        if index not in tries:
            if len(diagnostics) >= MAX_SYNTAX_ERRORS:
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
    if tree is None and not found:  # pragma: no cover - attempts exhausted without a diagnostic
        found.append(Diagnostic("E100", "could not parse this journey", 1, 1))
    return tree, {i + 1 for i in patched}, found
