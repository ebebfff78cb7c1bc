"""The grammar: the one list of step rules, the grammar text made from it,
the parse-tree node class and the compiled (and cached) Lark parser.

Each step kind's grammar facts live in ``STEP_RULES`` (which IR class a rule
builds, the words its lines start with, whether it may follow a ``:`` on the
same line); ``dsl/grammar.lark`` holds placeholders that are filled from it,
and so are the words in "unknown statement" hints and the builder's dispatch
(``dsl._builder.STEP_BUILDERS``). A new step rule is one line here plus its rule in the grammar.
"""

from __future__ import annotations

import hashlib
import os
import re
import stat
import tempfile
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from lark import Lark, Token, Tree
from lark.lexer import PatternStr

from dsl._indenter import Indenter
from dsl.ir import (
    CouponStep,
    ExitStep,
    GotoStep,
    IfStep,
    LabelStep,
    PassStep,
    SendStep,
    SplitStep,
    TagStep,
    WaitDateStep,
    WaitEventStep,
    WaitEventTimeStep,
    WaitStep,
    WaitUntilStep,
    _Step,
)

GRAMMAR_PATH = Path(__file__).with_name("grammar.lark")


@dataclass(frozen=True)
class StepRule:
    """A grammar rule that builds a step."""

    rule: str  # the rule's name in grammar.lark (and the builder's key)
    kind: type[_Step]  # the IR class it builds
    words: tuple[str, ...]  # the words its lines start with, for hints
    inline: bool = True  # may be the one step after a ":" on the same line


STEP_RULES: tuple[StepRule, ...] = (
    StepRule("send", SendStep, ("send",)),
    StepRule("send_best", SendStep, ("send",)),
    StepRule("coupon", CouponStep, ("coupon",)),
    StepRule("tag_add", TagStep, ("tag",)),
    StepRule("tag_remove", TagStep, ("tag",)),
    StepRule("wait", WaitStep, ("wait",)),
    StepRule("wait_until", WaitUntilStep, ("wait",)),
    StepRule("wait_date", WaitDateStep, ("wait",)),
    StepRule("wait_event_time", WaitEventTimeStep, ("wait",)),
    StepRule("wait_event", WaitEventStep, ("wait",), inline=False),
    StepRule("if_step", IfStep, ("if", "else"), inline=False),
    StepRule("split_step", SplitStep, ("split",), inline=False),
    StepRule("label", LabelStep, ("label",)),
    StepRule("goto", GotoStep, ("goto",)),
    StepRule("exit_step", ExitStep, ("exit",)),
    StepRule("pass_step", PassStep, ("pass",)),
)

# header rules and the words their lines start with
HEADER_RULES: tuple[str, ...] = (
    "description",
    "entry_event",
    "entry_audience",
    "entry_api",
    "reentry",
    "goal",
    "exit_event",
    "exit_cond",
    "timezone",
    "quiet_hours",
    "limit",
    "on_capped",
    "priority",
)
HEADER_WORDS: tuple[str, ...] = (
    "description",
    "entry",
    "reentry",
    "goal",
    "exit",
    "timezone",
    "quiet",
    "limit",
    "on",
    "priority",
)

# Keywords that are named terminals (``SEND: "send"``): they stay in the tree
# as a node's first children and give it its start position; ``Node`` drops
# them. Every one only ever opens a rule (tests/dsl holds the grammar to that).
KEYWORDS: tuple[str, ...] = (
    "send",
    "coupon",
    "tag",
    "wait",
    "label",
    "goto",
    "exit",
    "pass",
    "if",
    "else",
    "elif",
    "split",
    "on",
    "description",
    "entry",
    "reentry",
    "goal",
    "timezone",
    "quiet",
    "limit",
    "priority",
    "once",
    "always",
    "api",
)

KEYWORD_TERMINALS = frozenset(word.upper() for word in KEYWORDS)
STEP_WORDS: tuple[str, ...] = tuple(dict.fromkeys(w for r in STEP_RULES for w in r.words))


def grammar_text() -> str:
    """``grammar.lark`` with its placeholders filled from the lists above."""
    text = GRAMMAR_PATH.read_text(encoding="utf-8")
    fills = {
        "header_rules": " | ".join(HEADER_RULES),
        "step_rules": " | ".join(r.rule for r in STEP_RULES),
        "inline_step_rules": " | ".join(r.rule for r in STEP_RULES if r.inline),
        "keyword_terminals": "\n".join(f'{w.upper()}: "{w}"' for w in KEYWORDS),
    }
    for key, value in fills.items():
        text = text.replace("{{" + key + "}}", value)
    if "{{" in text:  # pragma: no cover - a placeholder without a fill
        raise AssertionError("grammar.lark has an unfilled placeholder: " + re.findall(r"\{\{\w*\}\}", text)[0])
    return text


class Node(Tree):
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
        if children and isinstance(children[0], Token) and children[0].type in KEYWORD_TERMINALS:
            n = 1
            while n < len(children) and isinstance(children[n], Token) and children[n].type in KEYWORD_TERMINALS:
                n += 1
            self.kw = children[0]
            self.kw_end = children[n - 1]
            self.children = children[n:]


INDENTER = Indenter()


def cache_file(grammar: str) -> str | bool:
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
def lark() -> Lark:
    grammar = grammar_text()
    return Lark(
        grammar,
        parser="lalr",
        lexer="contextual",
        postlex=INDENTER,  # type: ignore[arg-type]
        tree_class=Node,
        cache=cache_file(grammar),
    )


@lru_cache(maxsize=1)
def keywords() -> frozenset[str]:
    """Every word the grammar reserves somewhere; the formatter quotes names
    that collide with one."""
    words = set()
    for term in lark().terminals:
        if isinstance(term.pattern, PatternStr) and re.fullmatch(r"[A-Za-z_]+", term.pattern.value):
            words.add(term.pattern.value)
    return frozenset(words | {"messages", "message", "true", "false"})
