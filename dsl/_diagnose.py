"""Syntax errors in the operator's words: a Lark error → one ``Diagnostic``.

Lark's LALR errors are turned into friendly messages with ``match_examples``
(as in Lark's ``error_reporting_lalr.py`` example: malformed journeys that fail
in the same parser state get the same message) plus a few heuristics (a
typographic quote, a missing ``:``, a misspelt statement word).
"""

from __future__ import annotations

import difflib
import re
from functools import lru_cache

from lark import Token
from lark.exceptions import UnexpectedCharacters, UnexpectedInput, UnexpectedToken
from lark.lexer import PatternStr

from dsl._grammar import HEADER_WORDS, STEP_WORDS, lark
from dsl.errors import Diagnostic

_STRUCTURAL = ("_NL", "_INDENT", "_DEDENT")

_TERMINAL_WORDS = {
    "_NL": "end of line",
    "_INDENT": "an indented block",
    "_DEDENT": "end of block",
    "$END": "end of file",
    "NAME": "a name",
    "STRING": 'a quoted text like "welcome"',
    "NUMBER": "a number",
    "DURATION": "a duration like 30m, 2h, 3d or 1w",
    "TIME": "a time like 10:00",
    "DATE": "a date like 2026-12-01",
    "CMP": "a comparison (== != < <= > >=)",
    "SIGN": "+ or -",
    "TRUE": "true",
    "FALSE": "false",
}

# (code, message, hint) → malformed journeys that fail in the same parser state.
_EXAMPLES: list[tuple[tuple[str, str, str], list[str]]] = [
    (
        (
            "E110",
            "a send needs a channel and a template",
            'write e.g. send sms "nudge_a" or send best of wecom, sms "nudge_a"',
        ),
        [
            'journey "x"\n  send "tpl"\n',
            'journey "x"\n  send sms\n',
            'journey "x"\n  send sms, push "tpl"\n',
            'journey "x"\n  send best wecom "tpl"\n',
            'journey "x"\n  send best of "tpl"\n',
            'journey "x"\n  send best of wecom\n',
        ],
    ),
    (
        (
            "E111",
            "incomplete wait",
            "write wait 3d, wait until 10:00, wait until monday 10:00 or wait for event order_paid up to 3d",
        ),
        [
            'journey "x"\n  wait\n',
            'journey "x"\n  wait 3\n',
            'journey "x"\n  wait 3 days\n',
            'journey "x"\n  wait until\n',
            'journey "x"\n  wait for order_paid\n',
            'journey "x"\n  wait for event\n',
            'journey "x"\n  wait until monday\n',
        ],
    ),
    (
        (
            "E118",
            "incomplete date wait",
            "write wait until user.term_start - 7d at 10:00 or wait until event.appointment_at - 2h "
            "(a date the user or the event carries; the offset and the time are optional)",
        ),
        [
            'journey "x"\n  wait until user.\n',
            'journey "x"\n  wait until user term_start\n',
            'journey "x"\n  wait until user.term_start 7d\n',
            'journey "x"\n  wait until event.\n',
            'journey "x"\n  wait until event appointment_at\n',
            'journey "x"\n  wait until event.appointment_at 2h\n',
            'journey "x"\n  wait until event.appointment_at - 2\n',
            'journey "x"\n  wait until event.appointment_at at\n',
        ],
    ),
    (
        (
            "E112",
            "a split variant needs a percentage and a name",
            'write e.g. 40% A: send sms "nudge_a" or 20% holdout',
        ),
        [
            'journey "x"\n  split:\n    40 A: pass\n',
            'journey "x"\n  split:\n    A: pass\n',
            'journey "x"\n  split:\n    40%: pass\n',
            'journey "x"\n  split:\n    send sms "a"\n',
        ],
    ),
    (
        (
            "E113",
            "incomplete condition",
            'conditions look like: tag vip, user.city == "上海", stage is silent, rfm is high, '
            "count order_paid within 30d >= 2, reachable push — joined with and / or / not",
        ),
        [
            'journey "x"\n  if:\n    pass\n',
            'journey "x"\n  if tag:\n    pass\n',
            'journey "x"\n  if user.city:\n    pass\n',
            'journey "x"\n  if user.city = "a":\n    pass\n',
            'journey "x"\n  if user.city == :\n    pass\n',
            'journey "x"\n  if stage silent:\n    pass\n',
            'journey "x"\n  if count order_paid:\n    pass\n',
            'journey "x"\n  if tag a and:\n    pass\n',
            'journey "x"\n  if user:\n    pass\n',
        ],
    ),
    (
        (
            "E114",
            "a `wait for event` block holds `on event:` and `on timeout:` branches",
            "indent the steps under on event: / on timeout:",
        ),
        [
            'journey "x"\n  wait for event a up to 1d:\n    send sms "a"\n',
            'journey "x"\n  wait for event a up to 1d:\n    on event:\n      pass\n    send sms "a"\n',
        ],
    ),
    (
        ("E115", "incomplete tag step", "write tag add vip, first_order or tag remove vip"),
        [
            'journey "x"\n  tag vip\n',
            'journey "x"\n  tag add\n',
            'journey "x"\n  tag remove\n',
        ],
    ),
    (
        (
            "E116",
            "incomplete entry",
            'write entry event joined_group where channel == "x", entry audience where tag vip every day at 10:00, or entry api',
        ),
        [
            'journey "x"\n  entry\n',
            'journey "x"\n  entry joined_group\n',
            'journey "x"\n  entry event\n',
            'journey "x"\n  entry audience tag vip\n',
            'journey "x"\n  entry audience where tag vip every\n',
            'journey "x"\n  entry audience where tag vip every day\n',
            'journey "x"\n  entry audience where tag vip once 2026-01-01\n',
        ],
    ),
    (
        ("E117", "a journey file starts with its name", 'write journey "my journey" on the first line'),
        [
            'send sms "a"\n',
            "journey\n",
            "journey x y\n",
        ],
    ),
]


def _position(err: UnexpectedInput) -> object:
    state = err.state
    return getattr(state, "position", state)


@lru_cache(maxsize=1)
def _example_states() -> list[tuple[object, frozenset[str], tuple[str, str, str]]]:
    """Where each malformed example leaves the LALR automaton. Computed once."""
    states = []
    for label, examples in _EXAMPLES:
        for example in examples:
            try:
                lark().parse(example)
            except UnexpectedToken as err:
                states.append((_position(err), frozenset(err.accepts or ()), label))
            except UnexpectedInput:  # pragma: no cover - examples are written to fail on a token
                continue
    return states


def _match_example(err: UnexpectedToken) -> tuple[str, str, str] | None:
    """Like Lark's ``match_examples`` but matching the automaton state alone,
    not the stack depth, so an example written at the top level also matches
    the same mistake deep inside an ``if`` block."""
    position, accepts = _position(err), frozenset(err.accepts or ())
    fallback = None
    for state, example_accepts, label in _example_states():
        if state == position:
            if example_accepts == accepts:
                return label
            fallback = fallback or label
    return fallback


def _terminal_words(name: str) -> str:
    if name in _TERMINAL_WORDS:
        return _TERMINAL_WORDS[name]
    try:
        term = lark().get_terminal(name)
    except KeyError:
        return name
    if isinstance(term.pattern, PatternStr):
        return f'"{term.pattern.value}"'
    return name.lower()


def _describe(token: Token) -> str:
    if token.type in _TERMINAL_WORDS and token.type not in ("NAME", "STRING", "NUMBER", "DURATION", "TIME", "DATE"):
        return _TERMINAL_WORDS[token.type]
    return f'"{token.value}"' if token.type != "STRING" else str(token.value)


def is_code(line: str) -> bool:
    stripped = line.strip()
    return bool(stripped) and not stripped.startswith("#")


def _prev_code_line(lines: list[str], line: int) -> int:
    """The nearest code line strictly above ``line`` (1-based), else ``line``."""
    i = min(line - 1, len(lines)) - 1
    while i >= 0:
        if is_code(lines[i]):
            return i + 1
        i -= 1
    return line


def _last_code_line(lines: list[str]) -> int:
    for i in range(len(lines) - 1, -1, -1):
        if is_code(lines[i]):
            return i + 1
    return 1


def _first_word(line: str) -> str:
    match = re.match(r"\s*([^\W\d]\w*)", line)
    return match.group(1) if match else ""


_CHAR_HINTS = {
    "“": 'texts use straight double quotes: "…"',
    "”": 'texts use straight double quotes: "…"',
    "‘": 'texts use straight double quotes: "…"',
    "’": 'texts use straight double quotes: "…"',
    "'": 'texts use double quotes: "…"',
    "：": 'use an ASCII colon ":"',
    "，": 'use an ASCII comma ","',
    "（": 'use ASCII parentheses "( )"',
    "）": 'use ASCII parentheses "( )"',
    "％": 'use an ASCII percent sign "%"',
    "=": "compare with == (two equal signs)",
    **dict.fromkeys(
        "\u2028\u2029\x85\x0b",
        "only a newline ends a line in a journey; this character (which some editors show as one) may only be "
        "inside a quoted text or a comment",
    ),
}


def diagnose(err: UnexpectedInput, lines: list[str]) -> Diagnostic:
    """Turn a Lark error into one friendly diagnostic at the right place."""
    if isinstance(err, UnexpectedCharacters):
        line, col = err.line, err.column
        text = lines[line - 1] if 0 < line <= len(lines) else ""
        char = text[col - 1] if 0 < col <= len(text) else ""
        if char == '"':
            return Diagnostic("E108", 'this text has no closing "', line, col, 'end the text with " on the same line')
        hint = _CHAR_HINTS.get(char)
        if hint is None and char:
            word = _first_word(text)
            hint = "this character is not part of the journey language"
            if word and text[:col].strip() == "":
                hint = "a line starts with a step or a header word: " + ", ".join(STEP_WORDS)
        return Diagnostic("E101", f"unexpected character {char!r}", line, col, hint)

    assert isinstance(err, UnexpectedToken)
    token = err.token
    expected = set(err.accepts or err.expected or ())
    line = token.line if token.line is not None else _last_code_line(lines)
    col = token.column if token.column is not None else 1
    end_col = token.end_column if token.type not in _STRUCTURAL and token.end_line == token.line else None

    if token.type == "$END":
        line = _last_code_line(lines)
        return Diagnostic(
            "E106",
            "the file ends too early",
            line,
            max(1, len(lines[line - 1]) + 1) if line <= len(lines) else 1,
            "a journey needs a name line and at least one indented step, and every block needs its steps",
        )
    if token.type == "_INDENT":
        return Diagnostic(
            "E103",
            "unexpected indentation",
            line,
            col,
            "only a line ending in ':' (or a coupon's on out_of_stock) opens an indented block; line this up with the line above",
        )
    if expected == {"_INDENT"}:
        header = _prev_code_line(lines, line) if token.type != "_NL" else line
        text = lines[header - 1] if 0 < header <= len(lines) else ""
        return Diagnostic(
            "E104",
            "expected an indented block after this line",
            header,
            max(1, len(text.rstrip()) + 1),
            "indent the steps that belong here by 2 more spaces than this line",
        )

    label = _match_example(err)
    if label is not None:
        code, message, hint = label
        return Diagnostic(code, f"{message}: unexpected {_describe(token)}", line, col, hint, end_column=end_col)

    if token.type == "_NL" and "COLON" in expected:
        return Diagnostic(
            "E105", "missing ':' at the end of this line", line, col, "a line that opens a block ends with ':'"
        )
    text = lines[line - 1] if 0 < line <= len(lines) else ""
    if token.type == "NAME" and text[: col - 1].strip() == "":
        words = STEP_WORDS + HEADER_WORDS
        close = difflib.get_close_matches(str(token.value), words, n=1)
        hint = f"did you mean {close[0]!r}?" if close else "steps start with: " + ", ".join(STEP_WORDS)
        return Diagnostic("E107", f"unknown statement {str(token.value)!r}", line, col, hint, end_column=end_col)
    names = sorted({_terminal_words(t) for t in expected if not t.startswith("__")})
    shown = ", ".join(names[:8]) + (", …" if len(names) > 8 else "")
    return Diagnostic(
        "E102",
        f"unexpected {_describe(token)}",
        line,
        col,
        f"expected {shown}" if shown else None,
        end_column=end_col,
    )
