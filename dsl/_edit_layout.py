"""Where each step and block of a parsed journey sits in its source lines.

Structured edits splice source lines, so they need, for every step, the lines
it covers (its head line, the comment lines right above it, everything nested
under it) and, for every block, where its head is and whether its one step
shares that head's line (``else: pass``). Every statement of the language is
one physical line, so spans' ``line`` is all that is needed.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from dsl.ir import CouponStep, IfStep, Journey, SplitStep, Step, WaitEventStep


def step_blocks(step: Step) -> dict[str, list[Step]]:
    """The named blocks a step has now: ``on_event``, ``on_timeout``,
    ``out_of_stock``, ``branch:N``, ``else``, ``variant:NAME``."""
    if isinstance(step, WaitEventStep):
        named = {"on_event": step.on_event, "on_timeout": step.on_timeout}
        return {k: v for k, v in named.items() if v}
    if isinstance(step, CouponStep):
        return {"out_of_stock": step.out_of_stock} if step.out_of_stock is not None else {}
    if isinstance(step, IfStep):
        out = {f"branch:{i}": b.steps for i, b in enumerate(step.branches)}
        if step.else_steps is not None:
            out["else"] = step.else_steps
        return out
    if isinstance(step, SplitStep):
        return {f"variant:{v.name}": v.steps for v in step.variants}
    return {}


@dataclass
class Placed:
    """One step and where it is: ``block`` is the list holding it."""

    step: Step
    block: list[Step]
    index: int
    parent: Step | None


@dataclass
class Layout:
    lines: list[str]  # source lines, ``\r`` kept, as ``source.split("\n")``
    journey: Journey
    steps: dict[str, Placed] = field(default_factory=dict)

    def code(self, index: int) -> str:
        """A line without its ``\r`` (0-based)."""
        text = self.lines[index]
        return text[:-1] if text.endswith("\r") else text

    def is_code(self, index: int) -> bool:
        text = self.code(index).strip()
        return bool(text) and not text.startswith("#")

    def head(self, step: Step) -> int:
        assert step.span is not None
        return step.span.line - 1

    def inline(self, step: Step) -> bool:
        """Does the step share its line with its block's head (``else: exit``)?"""
        assert step.span is not None
        return self.code(self.head(step))[: step.span.column - 1].strip() != ""

    def indent(self, index: int) -> str:
        text = self.code(index)
        return text[: len(text) - len(text.lstrip(" \t"))]

    def end(self, step: Step) -> int:
        """The last line the step covers, nested blocks included (a split's
        last variant may have no steps: ``20% holdout`` is then its last
        line; a test split ends with ``otherwise:``)."""
        while True:
            if isinstance(step, SplitStep) and step.variants:
                last = step.variants[-1]
                assert last.span is not None
                end = self.end(last.steps[-1]) if last.steps else last.span.line - 1
                return self._otherwise(step, end)
            blocks = [b for b in step.blocks() if b]
            if not blocks:
                return self.head(step)
            step = blocks[-1][-1]

    def _otherwise(self, step: SplitStep, end: int) -> int:
        """A test split's ``otherwise: B`` line (it has no span) comes last."""
        if step.test is None or step.test.otherwise is None:
            return end
        for index in range(end + 1, len(self.lines)):
            code = self.code(index).strip()
            if code.startswith("otherwise"):
                return index
            if code and not code.startswith("#"):
                break
        return end  # pragma: no cover - the parser read it there

    def otherwise_line(self, step: SplitStep) -> int | None:
        """The line of a test split's ``otherwise:``, if it has one."""
        if step.test is None or step.test.otherwise is None:
            return None
        return self.end(step)

    def first(self, step: Step) -> int:
        """The first line of the step with the comment lines right above it."""
        line = self.head(step)
        if self.inline(step):
            return line
        while line > 0 and self.code(line - 1).strip().startswith("#"):
            line -= 1
        return line

    def block_head(self, steps: list[Step]) -> int:
        """The line of a non-empty block's head (``else:``, ``on event:``)."""
        first = steps[0]
        if self.inline(first):
            return self.head(first)
        line = self.head(first) - 1
        while line > 0 and not self.is_code(line):
            line -= 1
        return line


def layout(source: str, journey: Journey) -> Layout:
    """Index every step of ``journey`` (parsed from ``source``) by id."""
    lines = source.split("\n")
    out = Layout(lines, journey)
    stack: list[tuple[list[Step], Step | None]] = [(journey.steps, None)]
    while stack:
        block, parent = stack.pop()
        for i, step in enumerate(block):
            out.steps[step.id] = Placed(step, block, i, parent)
            for nested in step.blocks():
                stack.append((nested, step))
    return out
