"""The indentation postlexer: leading whitespace → ``_INDENT`` / ``_DEDENT``."""

from __future__ import annotations

import threading
from collections.abc import Iterator

from lark import Token

TAB_WIDTH = 4


class Indenter:
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


def indent_of(line: str) -> int:
    """The indentation of a line in columns, as the postlexer counts it."""
    text = line[: len(line) - len(line.lstrip(" \t"))]
    return text.count(" ") + text.count("\t") * TAB_WIDTH
