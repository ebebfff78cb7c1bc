"""Journey text → IR.

Lark's LALR parser with an indentation postlexer reads the text; a small
builder turns the tree into ``dsl.ir`` models. Operators are not programmers,
so a file with mistakes must show *every* mistake at once, in words they know:

- syntax errors are recovered line by line — the offending line is replaced
  by a harmless placeholder (``pass``, an empty block…) and the text is parsed
  again, so later errors are still found;
- Lark's LALR errors are turned into friendly messages with ``match_examples``
  (as in Lark's ``error_reporting_lalr.py`` example) plus a few heuristics;
- problems that are grammatical but wrong (an unknown channel, a bare field in
  an ``if``…) are collected by the builder.

Everything ends in one ``JourneyError`` carrying all diagnostics. Parsing does
no I/O.
"""

from __future__ import annotations

import difflib
import hashlib
import os
import re
import stat
import tempfile
import threading
from collections.abc import Iterator
from functools import lru_cache
from pathlib import Path
from typing import Any, TypeVar

from lark import Lark, Token, Tree
from lark.exceptions import LarkError, UnexpectedCharacters, UnexpectedInput, UnexpectedToken
from lark.lexer import PatternStr
from pydantic import BaseModel

from dsl._gc import gc_paused
from dsl.errors import Diagnostic, JourneyError, end_with_closers
from dsl.ids import assign_ids
from dsl.ir import (
    CHANNELS,
    WEEKDAYS,
    AndCond,
    ApiEntry,
    AudienceEntry,
    Branch,
    CompareCond,
    Cond,
    CouponStep,
    EventCountCond,
    EventEntry,
    ExitRule,
    ExitStep,
    Goal,
    GotoStep,
    IfStep,
    Journey,
    LabelStep,
    MessageLimit,
    NotCond,
    OrCond,
    PassStep,
    QuietHours,
    ReachableCond,
    Reentry,
    RfmCond,
    Schedule,
    SendStep,
    Span,
    SplitStep,
    StageCond,
    Step,
    TagCond,
    TagStep,
    Variant,
    WaitDateStep,
    WaitEventStep,
    WaitStep,
    WaitUntilStep,
)

__all__ = ["parse", "keywords", "parse_duration"]

GRAMMAR_PATH = Path(__file__).with_name("grammar.lark")
TAB_WIDTH = 4
MAX_SYNTAX_ERRORS = 25
MAX_ATTEMPTS = 120

_UNITS = {"w": 7 * 86400, "d": 86400, "h": 3600, "m": 60, "s": 1}
_DURATION_PART = re.compile(r"(\d+)([wdhms])")
_WEEKDAY_ALIASES = {**{d: i for i, d in enumerate(WEEKDAYS)}, **{d[:3]: i for i, d in enumerate(WEEKDAYS)}}
_STRUCTURAL = ("_NL", "_INDENT", "_DEDENT")
_M = TypeVar("_M", bound=BaseModel)


def parse_duration(text: str) -> int:
    """``1d12h`` → seconds."""
    return sum(int(n) * _UNITS[u] for n, u in _DURATION_PART.findall(text))


# ---------------------------------------------------------------- postlexer


class _Indenter:
    """Turns leading whitespace into ``_INDENT``/``_DEDENT`` tokens, like
    ``lark.indenter.Indenter`` but never raising: a dedent to a column that
    matches no open block is recorded (and snapped to the enclosing block) so
    the parse goes on, and the tokens carry the position of the line they
    start, which is where an operator looks."""

    always_accept = ("_NL",)

    def __init__(self) -> None:
        self._local = threading.local()

    @property
    def problems(self) -> list[tuple[int, int, str]]:
        if not hasattr(self._local, "problems"):
            self._local.problems = []
        return self._local.problems

    def process(self, stream: Iterator[Token]) -> Iterator[Token]:
        self._local.problems = []
        levels = [0]
        last: Token | None = None
        for token in stream:
            last = token
            if token.type != "_NL":
                yield token
                continue
            yield token
            indent_str = token.value.rsplit("\n", 1)[-1] if "\n" in token.value else None
            if indent_str is None:  # a comment on the first line, no newline yet
                continue
            indent = indent_str.count(" ") + indent_str.count("\t") * TAB_WIDTH
            line = token.end_line if token.end_line is not None else token.line
            col = len(indent_str) + 1
            pos = token.end_pos if token.end_pos is not None else token.start_pos
            if indent > levels[-1]:
                levels.append(indent)
                yield Token("_INDENT", indent_str, pos, line, col, line, col, pos)
                continue
            while indent < levels[-1]:
                levels.pop()
                yield Token("_DEDENT", indent_str, pos, line, col, line, col, pos)
            if indent != levels[-1]:
                self.problems.append(
                    (line, col, f"this line is indented by {indent}, which matches no enclosing block")
                )
        while len(levels) > 1:
            levels.pop()
            if last is not None:
                yield Token("_DEDENT", "", last.end_pos, last.end_line, last.end_column, last.end_line, last.end_column)
            else:
                yield Token("_DEDENT", "", 0, 1, 1, 1, 1, 0)


_KEYWORDS = frozenset(
    "SEND COUPON TAG WAIT LABEL GOTO EXIT PASS IF ELSE ELIF SPLIT ON DESCRIPTION ENTRY REENTRY GOAL TIMEZONE QUIET LIMIT ONCE ALWAYS API".split()
)


class _Node(Tree):
    """A parse-tree node without the named keyword tokens, remembering the
    first and last of them as where the node starts (and, with no other
    children, ends). The grammar keeps these keywords instead of asking Lark to
    propagate positions through every node, which costs a third of the parse;
    dropping them here, as Lark builds each node, saves a pass over the tree.

    Keywords only ever open a rule (``ELSE IF cond``, ``REENTRY ONCE``), never
    follow another child, so only the leading children are looked at — a test
    holds the grammar to that. ``data`` is a plain ``str``: Lark hands rule
    names over as ``Token``, whose ``==`` is slow in the builder's dispatch."""

    kw: Token | None = None
    kw_end: Token | None = None

    def __init__(self, data: str, children: list[Any], meta: Any = None) -> None:
        self.data = str(data)
        self._meta = meta
        self.children = children
        if children and isinstance(children[0], Token) and children[0].type in _KEYWORDS:
            n = 1
            while n < len(children) and isinstance(children[n], Token) and children[n].type in _KEYWORDS:
                n += 1
            self.kw = children[0]
            self.kw_end = children[n - 1]
            self.children = children[n:]


_INDENTER = _Indenter()


def _cache_file(grammar: str) -> str | bool:
    """Where Lark keeps the compiled grammar between processes (it loads in a
    tenth of the time; a CLI run pays the load every time): a folder of our
    own in the temp dir, since the cache is a pickle and must not be one that
    another user could have put there. ``False`` (no cache) when that folder
    cannot be had. Lark checks the file against the grammar, its options and
    its own version, and rebuilds it when they differ."""
    getuid = getattr(os, "getuid", None)
    if getuid is None:  # pragma: no cover - not on POSIX
        return False
    uid = getuid()
    folder = Path(tempfile.gettempdir()) / f"journeys-dsl-{uid}"
    try:
        folder.mkdir(mode=0o700, exist_ok=True)
        info = folder.lstat()
    except OSError:
        return False
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != uid or info.st_mode & 0o077:
        return False
    digest = hashlib.sha256(grammar.encode("utf-8")).hexdigest()[:16]
    return str(folder / f"grammar-{digest}.lark-cache")


@lru_cache(maxsize=1)
def _lark() -> Lark:
    grammar = GRAMMAR_PATH.read_text(encoding="utf-8")
    return Lark(
        grammar,
        parser="lalr",
        lexer="contextual",
        postlex=_INDENTER,  # type: ignore[arg-type]
        tree_class=_Node,
        cache=_cache_file(grammar),
    )


@lru_cache(maxsize=1)
def keywords() -> frozenset[str]:
    """Every word the grammar reserves somewhere; the formatter quotes names
    that collide with one."""
    words = set()
    for term in _lark().terminals:
        if isinstance(term.pattern, PatternStr) and re.fullmatch(r"[A-Za-z_]+", term.pattern.value):
            words.add(term.pattern.value)
    return frozenset(words | {"messages", "message", "true", "false"})


# ---------------------------------------------------------------- syntax errors

_STEP_WORDS = ("send", "coupon", "tag", "wait", "if", "else", "split", "label", "goto", "exit", "pass")
_HEADER_WORDS = ("description", "entry", "reentry", "goal", "exit", "timezone", "quiet", "limit")

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
                _lark().parse(example)
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
        term = _lark().get_terminal(name)
    except KeyError:
        return name
    if isinstance(term.pattern, PatternStr):
        return f'"{term.pattern.value}"'
    return name.lower()


def _describe(token: Token) -> str:
    if token.type in _TERMINAL_WORDS and token.type not in ("NAME", "STRING", "NUMBER", "DURATION", "TIME", "DATE"):
        return _TERMINAL_WORDS[token.type]
    return f'"{token.value}"' if token.type != "STRING" else str(token.value)


def _is_code(line: str) -> bool:
    stripped = line.strip()
    return bool(stripped) and not stripped.startswith("#")


def _indent_of(line: str) -> int:
    text = line[: len(line) - len(line.lstrip(" \t"))]
    return text.count(" ") + text.count("\t") * TAB_WIDTH


def _prev_code_line(lines: list[str], line: int) -> int:
    """The nearest code line strictly above ``line`` (1-based), else ``line``."""
    i = min(line - 1, len(lines)) - 1
    while i >= 0:
        if _is_code(lines[i]):
            return i + 1
        i -= 1
    return line


def _last_code_line(lines: list[str]) -> int:
    for i in range(len(lines) - 1, -1, -1):
        if _is_code(lines[i]):
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
}


def _diagnose(err: UnexpectedInput, lines: list[str]) -> Diagnostic:
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
                hint = "a line starts with a step or a header word: " + ", ".join(_STEP_WORDS)
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
        words = _STEP_WORDS + _HEADER_WORDS
        close = difflib.get_close_matches(str(token.value), words, n=1)
        hint = f"did you mean {close[0]!r}?" if close else "steps start with: " + ", ".join(_STEP_WORDS)
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


def _children_end(lines: list[str], index: int) -> int:
    """Index just past the lines indented under ``lines[index]``."""
    base = _indent_of(lines[index])
    end = index + 1
    j = index + 1
    while j < len(lines):
        if not _is_code(lines[j]):
            j += 1
            continue
        if _indent_of(lines[j]) <= base:
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
    if all(not _is_code(x) for x in original[:index]):
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


def _parse_tree(source: str) -> tuple[Tree | None, set[int], list[Diagnostic]]:
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
            tree = _lark().parse("\n".join(work) + "\n")
        except UnexpectedInput as exc:
            err = exc
        except LarkError as exc:  # pragma: no cover - grammar-level surprises still become diagnostics
            diagnostics.setdefault(1, Diagnostic("E100", f"could not parse: {exc}", 1, 1))
            break
        finally:
            for line, col, message in _INDENTER.problems:
                indent_problems.setdefault(
                    line,
                    Diagnostic(
                        "E109", message, line, col, "indent with the same number of spaces as the block it belongs to"
                    ),
                )
        if err is None:
            break
        tree = None
        diag = _diagnose(err, lines)
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


# ---------------------------------------------------------------- tree → IR


def _start(node: Tree | Token) -> Token | None:
    while isinstance(node, Tree):
        kw = getattr(node, "kw", None)
        if kw is not None:
            return kw
        if not node.children:
            return None
        node = node.children[0]
    return node


def _end(node: Tree | Token) -> Token | None:
    while isinstance(node, Tree):
        if not node.children:
            return getattr(node, "kw_end", None)
        node = node.children[-1]
    return node


def _span(node: Tree | Token) -> Span | None:
    """Where a node is in the source: from its first token to its last."""
    first, last = _start(node), _end(node)
    if first is None or last is None or first.line is None or last.end_line is None:
        return None
    # the commonest model by far: built directly, like ``_new`` does
    span = _SPAN_NEW(Span)
    _set(
        span,
        "__dict__",
        {"line": first.line, "column": first.column, "end_line": last.end_line, "end_column": last.end_column},
    )
    _set(span, "__pydantic_fields_set__", {"line", "column", "end_line", "end_column"})
    _set(span, "__pydantic_extra__", None)
    _set(span, "__pydantic_private__", None)
    return span


# Building the IR without pydantic's validation: the builder already produces
# exactly the types the models declare (tests/dsl checks that the result equals
# what validation gives), and validating ~10,000 nested models is a good part
# of a big file's parse. ``BaseModel.model_construct`` skips validation too but
# is slower than validating for these small models, so this does what it does
# with the per-class work done once.
_set = object.__setattr__
_SPAN_NEW = Span.__new__
_LAYOUTS: dict[type, tuple[dict[str, Any], tuple[tuple[str, Any], ...], frozenset[str]]] = {}


def _layout(cls: type[BaseModel]) -> tuple[dict[str, Any], tuple[tuple[str, Any], ...], frozenset[str]]:
    """A model's defaults (fields in declaration order), default factories
    and required fields."""
    defaults: dict[str, Any] = {}
    factories: list[tuple[str, Any]] = []
    required: set[str] = set()
    for name, info in cls.model_fields.items():
        if info.default_factory is not None:
            factories.append((name, info.default_factory))
            defaults[name] = None
        elif info.is_required():
            required.add(name)
            defaults[name] = None
        else:
            defaults[name] = info.default
    return defaults, tuple(factories), frozenset(required)


def _new(cls: type[_M], **values: Any) -> _M:
    """``cls(**values)`` without validation, for values of the declared types."""
    layout = _LAYOUTS.get(cls)
    if layout is None:
        layout = _LAYOUTS[cls] = _layout(cls)
    defaults, factories, required = layout
    if not required <= values.keys():
        raise TypeError(f"{cls.__name__} needs {sorted(required - values.keys())}")
    data = defaults.copy()
    data.update(values)
    for name, factory in factories:
        if name not in values:
            data[name] = factory()
    model = cls.__new__(cls)
    _set(model, "__dict__", data)
    _set(model, "__pydantic_fields_set__", set(values))
    _set(model, "__pydantic_extra__", None)
    _set(model, "__pydantic_private__", None)
    return model


def _sub(tree: Tree, data: str) -> Tree | None:
    for child in tree.children:
        if isinstance(child, Tree) and child.data == data:
            return child
    return None


def _tokens(tree: Tree, *types: str) -> list[Token]:
    return [c for c in tree.children if isinstance(c, Token) and (not types or c.type in types)]


_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", '"': '"', "\\": "\\", "'": "'", "0": "\0"}


_HEAD_SPANNED = frozenset({"coupon", "wait_event", "if_step", "split_step"})


class _Builder:
    """Builds the IR from the parse tree, collecting (not raising) the
    problems the grammar cannot express."""

    def __init__(self, source: str = "") -> None:
        self.diagnostics: list[Diagnostic] = []
        self.lines = source.splitlines()

    def error(self, code: str, message: str, node: Tree | Token | None, hint: str | None = None) -> None:
        span = _span(node) if node is not None else None
        line, col = (span.line, span.column) if span else (1, 1)
        end = span.end_column if span and span.end_line == span.line else None
        if end is not None and isinstance(node, Tree):  # a word (token) has no closers of its own
            end = end_with_closers(self.lines[line - 1] if 0 < line <= len(self.lines) else "", end)
        self.diagnostics.append(Diagnostic(code, message, line, col, hint, end_column=end))

    # ---- leaves

    def text(self, token: Token) -> str:
        """A STRING or NAME token as text, escapes decoded."""
        if token.type != "STRING":
            return str(token.value)
        raw = token.value[1:-1]
        if "\\" not in raw:
            return str(raw)
        out: list[str] = []
        i = 0
        while i < len(raw):
            ch = raw[i]
            if ch != "\\":
                out.append(ch)
                i += 1
                continue
            nxt = raw[i + 1] if i + 1 < len(raw) else ""
            if nxt in _ESCAPES:
                out.append(_ESCAPES[nxt])
                i += 2
            elif nxt == "u" and re.fullmatch(r"[0-9a-fA-F]{4}", raw[i + 2 : i + 6]):
                out.append(chr(int(raw[i + 2 : i + 6], 16)))
                i += 6
            else:
                self.error("E206", f"unknown escape \\{nxt} in text", token, r"known escapes: \" \\ \n \t \uXXXX")
                out.append(nxt)
                i += 2
        return "".join(out)

    def number(self, token: Token) -> int | float:
        value = str(token.value)
        return float(value) if "." in value else int(value)

    def integer(self, token: Token, what: str) -> int:
        value = self.number(token)
        if isinstance(value, float):
            self.error("E205", f"{what} must be a whole number", token)
            return int(value)
        return value

    def duration(self, token: Token) -> int:
        return parse_duration(str(token.value))

    def time(self, token: Token) -> str:
        hh, mm = str(token.value).split(":")
        return f"{int(hh):02d}:{mm}"

    def channel(self, token: Token) -> str:
        name = str(token.value)
        if name not in CHANNELS:
            close = difflib.get_close_matches(name, CHANNELS, n=1)
            hint = (f"did you mean {close[0]!r}? " if close else "") + "channels: " + ", ".join(CHANNELS)
            self.error("E201", f"unknown channel {name!r}", token, hint)
            return "webhook"
        return name

    def weekday(self, token: Token) -> int:
        name = str(token.value).lower()
        if name not in _WEEKDAY_ALIASES:
            self.error("E202", f"unknown weekday {token.value!r}", token, "weekdays: " + ", ".join(WEEKDAYS))
            return 0
        return _WEEKDAY_ALIASES[name]

    # ---- conditions

    def cond(self, node: Tree | Token, event_ctx: bool) -> Cond:
        assert isinstance(node, Tree), node
        kind = node.data
        ch = node.children
        if kind in ("or_cond", "and_cond"):
            cls = OrCond if kind == "or_cond" else AndCond
            operands: list[Cond] = []
            for child in ch:
                built = self.cond(child, event_ctx)
                operands.extend(built.operands if isinstance(built, cls) else [built])
            return _new(cls, operands=operands)
        if kind == "neg":
            return _new(NotCond, operand=self.cond(ch[0], event_ctx))
        if kind == "tag_cond":
            return _new(TagCond, tag=self.text(ch[0]))
        if kind in ("compare", "compare_in", "compare_not_in"):
            subject, field = self.field(ch[0], event_ctx)
            if kind == "compare":
                op, value = str(ch[1]), self.value(ch[2])
            else:
                op = "in" if kind == "compare_in" else "not in"
                value = [self.value(v) for v in ch[1].children]
            return _new(CompareCond, subject=subject, field=field, op=op, value=value)  # type: ignore[arg-type]
        if kind in ("stage_is", "stage_in", "rfm_is", "rfm_in"):
            names = [self.text(ch[0])] if kind.endswith("_is") else [self.text(t) for t in ch[0].children]
            return _new(StageCond, stages=names) if kind.startswith("stage") else _new(RfmCond, layers=names)
        if kind == "count_cond":
            within = _sub(node, "within")
            cmp_token, number = _tokens(node, "CMP", "NUMBER")
            return _new(
                EventCountCond,
                event=self.text(ch[0]),
                within_seconds=self.duration(within.children[0]) if within else None,
                op=str(cmp_token),  # type: ignore[arg-type]
                value=self.integer(number, "an event count"),
            )
        if kind == "reachable":
            return _new(ReachableCond, channel=self.channel(ch[0]))  # type: ignore[arg-type]
        raise AssertionError(f"unknown condition {kind}")  # pragma: no cover

    def field(self, node: Tree, event_ctx: bool) -> tuple[str, str]:
        name = str(node.children[0])
        if node.data == "user_field":
            return "user", name
        if node.data == "event_field":
            return "event", name
        if not event_ctx:
            self.error(
                "E203",
                f"say whose {name!r} this is",
                node,
                f"write user.{name} for the user's attribute or event.{name} for the last event's property",
            )
            return "user", name
        return "event", name

    def value(self, token: Token) -> Any:
        if token.type == "STRING":
            return self.text(token)
        if token.type == "NUMBER":
            return self.number(token)
        if token.type == "TRUE":
            return True
        if token.type == "FALSE":
            return False
        return str(token.value)  # pragma: no cover - grammar allows nothing else

    def where(self, node: Tree, event_ctx: bool) -> Cond | None:
        sub = _sub(node, "where")
        return self.cond(sub.children[0], event_ctx) if sub is not None else None

    # ---- journey

    def journey(self, tree: Tree) -> Journey:
        root = tree.children[-1]
        head = root.children[0]
        fields: dict[str, Any] = {"name": self.text(head.children[0]), "exits": []}
        steps: list[Step] = []
        seen: dict[str, Tree] = {}
        for item in root.children[1:]:
            kind = item.data
            key = {"entry_event": "entry", "entry_audience": "entry", "entry_api": "entry"}.get(kind, kind)
            key = {"reentry_once": "reentry", "reentry_always": "reentry", "reentry_after": "reentry"}.get(key, key)
            if key in ("description", "entry", "reentry", "goal", "timezone", "quiet_hours", "limit"):
                if key in seen:
                    self.error(
                        "E204",
                        f"{key.replace('_', ' ')} is given twice",
                        item,
                        f"the first one is on line {_span(seen[key]).line}; keep one",  # type: ignore[union-attr]
                    )
                    continue
                seen[key] = item
                fields.update(self.header(item))
            elif kind in ("exit_event", "exit_cond"):
                fields["exits"].append(self.exit_rule(item))
            else:
                step = self.step(item)
                if step is not None:
                    steps.append(step)
        journey = _new(Journey, **fields, steps=steps)
        assign_ids(journey)
        return journey

    def header(self, item: Tree) -> dict[str, Any]:
        kind, ch, span = item.data, item.children, _span(item)
        if kind == "description":
            return {"description": self.text(ch[0])}
        if kind == "entry_event":
            return {"entry": _new(EventEntry, event=self.text(ch[0]), where=self.where(item, True), span=span)}
        if kind == "entry_audience":
            sched = next((c for c in ch if isinstance(c, Tree) and c.data != "where"), None)
            if sched is None:
                self.error(
                    "E208",
                    "an audience entry needs a schedule",
                    item,
                    "end the line with every day at 10:00, every monday at 09:30 or once at 2026-12-01 10:00",
                )
                schedule = _new(Schedule, every="day", time="00:00")
            else:
                schedule = self.schedule(sched)
            return {"entry": _new(AudienceEntry, where=self.where(item, False), schedule=schedule, span=span)}  # type: ignore[arg-type]
        if kind == "entry_api":
            return {"entry": _new(ApiEntry, span=span)}
        if kind == "reentry_once":
            return {"reentry": _new(Reentry, mode="once", span=span)}
        if kind == "reentry_always":
            return {"reentry": _new(Reentry, mode="always", span=span)}
        if kind == "reentry_after":
            return {"reentry": _new(Reentry, mode="after", cooldown_seconds=self.duration(ch[0]), span=span)}
        if kind == "goal":
            within = _sub(item, "within")
            return {
                "goal": _new(
                    Goal,
                    event=self.text(ch[0]),
                    within_seconds=self.duration(within.children[0]) if within else None,
                    where=self.where(item, True),
                    exit_on_goal=_sub(item, "then_exit") is not None,
                    span=span,
                )
            }
        if kind == "timezone":
            return {"timezone": self.text(ch[0])}
        if kind == "quiet_hours":
            return {"quiet_hours": _new(QuietHours, start=self.time(ch[0]), end=self.time(ch[1]), span=span)}
        if kind == "limit":
            count = self.integer(ch[0], "a message limit")
            return {"message_limit": _new(MessageLimit, count=count, window_seconds=self.duration(ch[1]), span=span)}
        raise AssertionError(kind)  # pragma: no cover

    def schedule(self, node: Tree) -> Schedule:
        if node.data == "every_day":
            return _new(Schedule, every="day", time=self.time(node.children[0]))
        if node.data == "every_weekday":
            return _new(
                Schedule, every="week", weekday=self.weekday(node.children[0]), time=self.time(node.children[1])
            )
        y, m, d = str(node.children[0]).split("-")
        return _new(
            Schedule, every="once", date=f"{int(y):04d}-{int(m):02d}-{int(d):02d}", time=self.time(node.children[1])
        )

    def exit_rule(self, item: Tree) -> ExitRule:
        if item.data == "exit_event":
            return _new(ExitRule, event=self.text(item.children[0]), where=self.where(item, True), span=_span(item))
        return _new(ExitRule, cond=self.cond(item.children[0], False), span=_span(item))

    # ---- steps

    def block(self, suite: Tree) -> list[Step]:
        steps = [self.step(child) for child in suite.children if isinstance(child, Tree)]
        return [s for s in steps if s is not None]

    def step(self, node: Tree) -> Step | None:
        kind, ch = node.data, node.children
        # compound steps take the span of their head line (computed below)
        span = None if kind in _HEAD_SPANNED else _span(node)
        if kind == "send":
            return _new(SendStep, channels=[self.channel(ch[0])], template=self.text(ch[1]), span=span)  # type: ignore[list-item]
        if kind == "send_best":
            channels = [self.channel(t) for t in ch[:-1]]
            return _new(SendStep, channels=channels, best_of=True, template=self.text(ch[-1]), span=span)  # type: ignore[arg-type]
        if kind in ("tag_add", "tag_remove"):
            action = "add" if kind == "tag_add" else "remove"
            return _new(TagStep, action=action, tags=[self.text(t) for t in ch], span=span)
        if kind == "wait":
            return _new(WaitStep, seconds=self.duration(ch[0]), span=span)
        if kind == "wait_until":
            day = _tokens(node, "NAME")
            time = _tokens(node, "TIME")[0]
            return _new(WaitUntilStep, time=self.time(time), weekday=self.weekday(day[0]) if day else None, span=span)
        if kind == "wait_date":
            offset = _sub(node, "offset")
            at = _sub(node, "at_time")
            seconds = 0
            if offset is not None:
                seconds = self.duration(offset.children[1]) * (-1 if str(offset.children[0]) == "-" else 1)
            return _new(
                WaitDateStep,
                attribute=str(ch[0]),
                offset_seconds=seconds,
                time=self.time(at.children[0]) if at else None,
                span=span,
            )
        if kind == "wait_event":
            return self.wait_event(node)
        if kind == "coupon":
            head = ch[0]
            oos = _sub(node, "out_of_stock")
            return _new(
                CouponStep,
                pool=self.text(head.children[0]),
                out_of_stock=self.block(oos.children[1]) if oos is not None else None,
                span=_span(head),
            )
        if kind == "if_step":
            return self.if_step(node)
        if kind == "split_step":
            return self.split(node)
        if kind == "label":
            return _new(LabelStep, name=self.text(ch[0]), span=span)
        if kind == "goto":
            return _new(GotoStep, label=self.text(ch[0]), span=span)
        if kind == "exit_step":
            return _new(ExitStep, span=span)
        if kind == "pass_step":
            return _new(PassStep, span=span)
        raise AssertionError(f"unknown step {kind}")  # pragma: no cover

    def wait_event(self, node: Tree) -> WaitEventStep:
        head = node.children[0]
        up_to = _sub(head, "up_to")
        step = _new(
            WaitEventStep,
            event=self.text(head.children[0]),
            where=self.where(head, True),
            timeout_seconds=self.duration(up_to.children[0]) if up_to else None,
            span=_span(head),
        )
        seen: set[str] = set()
        for branch in node.children[1:]:
            if branch.data in seen:
                self.error(
                    "E207", f"{branch.data.replace('_', ' ')} is given twice", branch.children[0], "merge the two"
                )
                continue
            seen.add(branch.data)
            steps = self.block(branch.children[1])
            if branch.data == "on_event":
                step.on_event = steps
            else:
                step.on_timeout = steps
        return step

    def if_step(self, node: Tree) -> IfStep:
        head = node.children[0]
        branches = [
            _new(Branch, cond=self.cond(head.children[0], False), steps=self.block(node.children[1]), span=_span(head))
        ]
        else_steps: list[Step] | None = None
        for clause in node.children[2:]:
            clause_head = clause.children[0]
            if clause.data == "elif_clause":
                branches.append(
                    _new(
                        Branch,
                        cond=self.cond(clause_head.children[0], False),
                        steps=self.block(clause.children[1]),
                        span=_span(clause_head),
                    )
                )
            else:
                else_steps = self.block(clause.children[1])
        return _new(IfStep, branches=branches, else_steps=else_steps, span=_span(head))

    def split(self, node: Tree) -> SplitStep:
        variants = []
        for var in node.children[1:]:
            head = var.children[0]
            percent_token, name_token = head.children
            name = self.text(name_token)
            suite = _sub(var, "suite")
            variants.append(
                _new(
                    Variant,
                    name=name,
                    percent=float(self.number(percent_token)),
                    steps=self.block(suite) if suite is not None else [],
                    holdout=name == "holdout",
                    span=_span(head),
                )
            )
        return _new(SplitStep, variants=variants, span=_span(node.children[0]))


# ---------------------------------------------------------------- entry point


def _parse(source: str) -> tuple[Journey | None, list[Diagnostic]]:
    tree, patched, diagnostics = _parse_tree(source)
    if tree is None:
        return None, diagnostics
    builder = _Builder(source)
    journey: Journey | None
    try:
        journey = builder.journey(tree)
    except (ValueError, AssertionError):
        if not diagnostics:
            raise
        journey = None
    diagnostics += [d for d in builder.diagnostics if d.line not in patched]
    return journey, diagnostics


def parse(source: str, filename: str = "<journey>") -> Journey:
    """Parse journey text into the IR (steps carry ids and spans). Raises
    ``JourneyError`` with every syntax problem found."""
    if source.startswith("\ufeff"):
        source = source[1:]
    with gc_paused():  # builds no garbage cycles, even when recovering from errors
        journey, diagnostics = _parse(source)
    if diagnostics or journey is None:
        diagnostics.sort(key=lambda d: (d.line, d.column, d.code))
        raise JourneyError(diagnostics, source=source, filename=filename)
    return journey
