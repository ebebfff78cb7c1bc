"""IR → canonical journey text (``journeys fmt``).

One way to write each journey: 2-space indents, header lines in a fixed
order, then a blank line and the steps; a blank line the source has between two
steps of a block is kept (several become one), others are dropped. ``parse(format_journey(j))`` gives the
same IR as ``j`` (spans aside) and formatting is idempotent, so reformatting
never changes a journey's content hash.

Comments: when the original ``source`` is passed, full-line comments are kept
above the step that follows them and end-of-line comments stay on their line;
comments inside the header move above the header line that follows them.
Without ``source`` (IR built elsewhere) there are no comments to keep.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from decimal import Decimal
from typing import Any

from dsl.durations import format_duration
from dsl.errors import source_lines
from dsl.ir import (
    PRIORITY_LEVELS,
    WEEKDAYS,
    AndCond,
    ApiEntry,
    AudienceEntry,
    CapPolicy,
    CompareCond,
    Cond,
    CouponStep,
    EventCountCond,
    EventEntry,
    ExitRule,
    ExitStep,
    GotoStep,
    IfStep,
    Journey,
    LabelStep,
    NotCond,
    OrCond,
    PassStep,
    ReachableCond,
    RfmCond,
    SendStep,
    Span,
    SplitStep,
    StageCond,
    Step,
    TagCond,
    TagPart,
    TagStep,
    WaitDateStep,
    WaitEventStep,
    WaitEventTimeStep,
    WaitStep,
    WaitUntilStep,
    _Step,
)
from dsl.parser import keywords

INDENT = "  "
_NAME = re.compile(r"[^\W\d]\w*")
_ESCAPED = re.compile("[\x00-\x08\x0b-\x1f\x7f\x85\u2028\u2029]")


def quote(text: str) -> str:
    """A double-quoted string literal with the escapes the parser knows.
    Controls and the characters other tools take for line breaks (U+0085,
    U+2028, U+2029) are written as ``\\uXXXX``, so the canonical text has
    them nowhere raw and reads the same in any editor."""
    out = text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\t", "\\t").replace("\r", "\\r")
    out = _ESCAPED.sub(lambda m: f"\\u{ord(m.group(0)):04x}", out)
    return f'"{out}"'


def name(text: str) -> str:
    """A bare name when it lexes as one, else quoted."""
    if _NAME.fullmatch(text) and text not in keywords():
        return text
    return quote(text)


def _value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        # positional, never 1e-09: the language's numbers have no exponent
        return repr(value) if "e" not in repr(value) else format(Decimal(repr(value)), "f")
    if isinstance(value, int):
        return repr(value)
    if isinstance(value, list):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    return quote(str(value))


def _names(items: list[str]) -> str:
    return ", ".join(name(i) for i in items)


_PRECEDENCE = {"or": 1, "and": 2, "not": 3}


def format_cond(cond: Cond, event_ctx: bool = False, parent: int = 0) -> str:
    """A condition; ``event_ctx`` writes event properties bare (``where``)."""
    if isinstance(cond, OrCond | AndCond):
        level = _PRECEDENCE[cond.kind]
        text = f" {cond.kind} ".join(format_cond(c, event_ctx, level + (c.kind == cond.kind)) for c in cond.operands)
        return f"({text})" if parent >= level else text
    if isinstance(cond, NotCond):
        text = "not " + format_cond(cond.operand, event_ctx, _PRECEDENCE["not"])
        return f"({text})" if parent > _PRECEDENCE["not"] else text
    if isinstance(cond, TagCond):
        return "tag " + name(cond.tag)
    if isinstance(cond, CompareCond):
        bare = event_ctx and cond.subject == "event" and _NAME.fullmatch(cond.field) and cond.field not in keywords()
        field = cond.field if bare else f"{cond.subject}.{cond.field}"
        return f"{field} {cond.op} {_value(cond.value)}"
    if isinstance(cond, StageCond | RfmCond):
        word, items = ("stage", cond.stages) if isinstance(cond, StageCond) else ("rfm", cond.layers)
        if len(items) == 1:
            return f"{word} is {name(items[0])}"
        return f"{word} in [{_names(items)}]"
    if isinstance(cond, EventCountCond):
        within = f" within {format_duration(cond.within_seconds)}" if cond.within_seconds is not None else ""
        return f"count {name(cond.event)}{within} {cond.op} {cond.value}"
    if isinstance(cond, ReachableCond):
        return f"reachable {cond.channel}"
    raise TypeError(f"unknown condition {cond!r}")  # pragma: no cover


def _where(cond: Cond | None, event_ctx: bool = True) -> str:
    return f" where {format_cond(cond, event_ctx)}" if cond is not None else ""


def _time_of(weekday: int | None, time: str) -> str:
    return f"{WEEKDAYS[weekday]} {time}" if weekday is not None and 0 <= weekday < 7 else time


class _Comments:
    """Source comments waiting to be written next to the code they belong to."""

    def __init__(self, source: str | None) -> None:
        self.pending: list[tuple[int, str, bool]] = []  # (line, text, trailing), last line first
        if source is None:
            return
        for number, text in enumerate(source_lines(source), start=1):
            stripped = text.strip()
            if stripped.startswith("#"):
                self.pending.append((number, stripped, False))
            elif "#" in text:
                comment = _trailing_comment(text)
                if comment:
                    self.pending.append((number, comment, True))
        self.pending.reverse()

    def before(self, span: Span | None, indent: str) -> list[str]:
        """Comments from lines above ``span``, each on its own line (an
        end-of-line comment whose line was not written keeps its text)."""
        out = []
        while span is not None and self.pending and self.pending[-1][0] < span.line:
            out.append(indent + self.pending.pop()[1])
        return out

    def after(self, span: Span | None) -> str:
        if span is not None and self.pending and self.pending[-1][0] == span.line and self.pending[-1][2]:
            return "  " + self.pending.pop()[1]
        return ""

    def rest(self, indent: str) -> list[str]:
        out = [indent + text for _, text, _ in reversed(self.pending)]
        self.pending.clear()
        return out


def _trailing_comment(line: str) -> str | None:
    """The ``# ...`` at the end of a code line, skipping ``#`` inside strings."""
    in_string = escaped = False
    for i, ch in enumerate(line):
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch == "#":
            return line[i:].rstrip()
    return None


class _Writer:
    def __init__(self, comments: _Comments, source: str | None) -> None:
        self.lines: list[str] = []
        self.comments = comments
        self.source = source_lines(source) if source is not None else None

    def _inline(self, step: Step, default: bool) -> bool:
        """Keep a one-step block on its head's line if it was written so (or,
        without source, by the default for that kind of head)."""
        if not _is_inline(step):
            return False
        if self.source is None or step.span is None or not 0 < step.span.line <= len(self.source):
            return default
        return self.source[step.span.line - 1][: step.span.column - 1].strip() != ""

    def line(self, depth: int, text: str, span: Span | None = None) -> None:
        indent = INDENT * depth
        self.lines.extend(self.comments.before(span, indent))
        self.lines.append(indent + text + self.comments.after(span))

    def block(self, depth: int, steps: list[Step]) -> None:
        for i, step in enumerate(steps):
            if i and self._blank_before(step):
                self.lines.append("")
            self.step(depth, step)

    def _blank_before(self, step: Step) -> bool:
        """Did the source have a blank line between this step (with the
        comments right above it) and the code before it? Operators group
        steps that way; one blank line is kept, in front of the comments."""
        if self.source is None or step.span is None:
            return False
        number = step.span.line - 1
        while 0 < number <= len(self.source):
            text = self.source[number - 1].strip()
            if not text:
                return True
            if not text.startswith("#"):
                return False
            number -= 1
        return False

    def suite(
        self, depth: int, head: str, steps: list[Step], head_span: Span | None = None, inline: bool = True
    ) -> None:
        """``head:`` and its block; a single one-line step may share the line."""
        if not steps:
            self.line(depth, head + " pass", head_span)
        elif len(steps) == 1 and self._inline(steps[0], inline):
            if head_span is not None:
                self.lines.extend(self.comments.before(head_span, INDENT * depth))
            self.line(depth, f"{head} {_simple(steps[0])}", steps[0].span or head_span)
        else:
            self.line(depth, head, head_span)
            self.block(depth + 1, steps)

    def step(self, depth: int, step: Step) -> None:
        write = BLOCK_WRITERS.get(type(step))
        if write is not None:
            write(self, depth, step)
        else:
            self.line(depth, _simple(step), step.span)

    def coupon(self, depth: int, step: CouponStep) -> None:
        self.line(depth, f"coupon {quote(step.pool)}", step.span)
        if step.out_of_stock is not None:
            self.suite(depth + 1, "on out_of_stock:", step.out_of_stock)

    def if_step(self, depth: int, step: IfStep) -> None:
        for i, branch in enumerate(step.branches):
            word = "if" if i == 0 else "else if"
            self.suite(depth, f"{word} {format_cond(branch.cond)}:", branch.steps, branch.span or step.span, False)
        if step.else_steps is not None:
            self.suite(depth, "else:", step.else_steps, None, False)

    def wait_event(self, depth: int, step: WaitEventStep) -> None:
        head = f"wait for event {name(step.event)}{_where(step.where)}"
        if step.timeout_seconds is not None:
            head += f" up to {format_duration(step.timeout_seconds)}"
        if not step.on_event and not step.on_timeout:
            self.line(depth, head, step.span)
            return
        self.line(depth, head + ":", step.span)
        if step.on_event:
            self.suite(depth + 1, "on event:", step.on_event)
        if step.on_timeout:
            self.suite(depth + 1, "on timeout:", step.on_timeout)

    def split(self, depth: int, step: SplitStep) -> None:
        self.line(depth, split_head(step) + ":", step.span)
        for variant in step.variants:
            head = f"{variant.percent:g}% {name(variant.name)}"
            if variant.steps:
                self.suite(depth + 1, head + ":", variant.steps, variant.span)
            else:
                self.line(depth + 1, head, variant.span)
        if step.test is not None and step.test.otherwise is not None:
            self.line(depth + 1, f"otherwise: {name(step.test.otherwise)}", None)


def split_head(step: SplitStep) -> str:
    """``split`` or ``split test 10% for 6h by goal``."""
    test = step.test
    if test is None:
        return "split"
    metric = "goal" if test.metric == "goal" else f"event {name(test.event or '')}"
    return f"split test {test.sample_percent:g}% for {format_duration(test.window_seconds)} by {metric}"


def _is_inline(step: Step) -> bool:
    """Can this step be the one step after a ``:`` on the same line?"""
    return type(step) in LINES and not step.blocks()


def _simple(step: Step) -> str:
    """The one-line text of a step without a block."""
    line = LINES.get(type(step))
    if line is None:
        raise TypeError(f"dsl.formatter.LINES has no one-line text for step kind {step.kind!r}")
    return line(step)


def tag_parts_text(parts: list[TagPart]) -> str:
    """``"src_" + event.placement`` back as written."""
    return " + ".join(quote(p.text) if p.text is not None else f"{p.subject}.{p.field}" for p in parts)


def _send(step: SendStep) -> str:
    if step.best_of:
        text = f"send best of {', '.join(step.channels)} {quote(step.template)}"
    else:
        text = f"send {step.channels[0]} {quote(step.template)}"
    return text + (f" {cap_policy_text(step.when_capped)}" if step.when_capped else "")


def cap_policy_text(policy: CapPolicy) -> str:
    """``on capped skip`` / ``on capped defer up to 1d``."""
    if policy.mode == "defer":
        return f"on capped defer up to {format_duration(policy.max_delay_seconds or 0)}"
    return "on capped skip"


def _date_wait(subject: str, offset_seconds: int, time: str | None) -> str:
    """``wait until user.x - 7d at 10:00`` and ``wait until event.x + 2h``."""
    text = f"wait until {subject}"
    if offset_seconds:
        sign = "-" if offset_seconds < 0 else "+"
        text += f" {sign} {format_duration(abs(offset_seconds))}"
    if time is not None:
        text += f" at {time}"
    return text


# step class -> its text on one line (the kinds that can be written so; a
# coupon only without its block)
LINES: dict[type[_Step], Callable[[Any], str]] = {
    SendStep: _send,
    CouponStep: lambda s: f"coupon {quote(s.pool)}",
    TagStep: lambda s: (
        f"tag {s.action} "
        + ", ".join([*([_names(s.tags)] if s.tags else []), *(tag_parts_text(p) for p in s.computed or [])])
    ),
    WaitStep: lambda s: f"wait {format_duration(s.seconds)}",
    WaitUntilStep: lambda s: f"wait until {_time_of(s.weekday, s.time)}",
    WaitDateStep: lambda s: _date_wait(f"user.{s.attribute}", s.offset_seconds, s.time),
    WaitEventTimeStep: lambda s: _date_wait(f"event.{s.field}", s.offset_seconds, s.time),
    LabelStep: lambda s: f"label {name(s.name)}",
    GotoStep: lambda s: f"goto {name(s.label)}",
    ExitStep: lambda s: "exit",
    PassStep: lambda s: "pass",
}
# step class -> how it writes itself with its blocks (the kinds that have any)
BLOCK_WRITERS: dict[type[_Step], Callable[[_Writer, int, Any], None]] = {
    CouponStep: _Writer.coupon,
    IfStep: _Writer.if_step,
    WaitEventStep: _Writer.wait_event,
    SplitStep: _Writer.split,
}


def _header(journey: Journey, lines: dict[str, Span]) -> list[tuple[str, Span | None]]:
    out: list[tuple[str, Span | None]] = []
    if journey.description is not None:
        out.append((f"description {quote(journey.description)}", lines.get("description")))
    entry = journey.entry
    if isinstance(entry, EventEntry):
        out.append((f"entry event {name(entry.event)}{_where(entry.where)}", entry.span))
    elif isinstance(entry, AudienceEntry):
        sched = entry.schedule
        if sched.every == "day":
            when = f"every day at {sched.time}"
        elif sched.every == "week":
            when = f"every {WEEKDAYS[sched.weekday or 0]} at {sched.time}"
        else:
            when = f"once at {sched.date} {sched.time}"
        out.append((f"entry audience{_where(entry.where, False)} {when}", entry.span))
    elif isinstance(entry, ApiEntry):
        out.append(("entry api", entry.span))
    reentry = journey.reentry
    if reentry.mode == "after":
        out.append((f"reentry after {format_duration(reentry.cooldown_seconds or 0)}", reentry.span))
    else:
        out.append((f"reentry {reentry.mode}", reentry.span))
    if journey.goal is not None:
        goal = journey.goal
        text = f"goal event {name(goal.event)}"
        if goal.within_seconds is not None:
            text += f" within {format_duration(goal.within_seconds)}"
        text += _where(goal.where)
        if goal.exit_on_goal:
            text += " then exit"
        out.append((text, goal.span))
    for rule in journey.exits:
        out.append((_exit_rule(rule), rule.span))
    out.append((f"timezone {quote(journey.timezone)}", lines.get("timezone")))
    if journey.quiet_hours is not None:
        out.append((f"quiet hours {journey.quiet_hours.start}-{journey.quiet_hours.end}", journey.quiet_hours.span))
    if journey.message_limit is not None:
        limit = journey.message_limit
        word = "message" if limit.count == 1 else "messages"
        window = limit.calendar or format_duration(limit.window_seconds)
        out.append((f"limit {limit.count} {word} per {window}", limit.span))
    if journey.when_capped is not None:
        out.append((cap_policy_text(journey.when_capped), journey.when_capped.span))
    if journey.priority is not None:
        words = {level: word for word, level in PRIORITY_LEVELS.items()}
        out.append((f"priority {words.get(journey.priority, journey.priority)}", None))
    return out


def _exit_rule(rule: ExitRule) -> str:
    if rule.event is not None:
        return f"exit when event {name(rule.event)}{_where(rule.where)}"
    if rule.cond is None:  # pragma: no cover - the parser never builds this
        raise ValueError("an exit rule needs an event or a condition")
    return f"exit when {format_cond(rule.cond)}"


def _line_spans(source: str | None) -> dict[str, Span]:
    """Where the journey line and the header lines without a span of their
    own (description, timezone) are, so their comments stay with them."""
    found: dict[str, Span] = {}
    for number, text in enumerate(source_lines(source or ""), start=1):
        word = re.match(r"\s*(\w+)", text)
        if not word or text.strip().startswith("#"):
            continue
        key = "journey" if not found else word.group(1)
        if key in ("journey", "description", "timezone") and key not in found:
            found[key] = Span(line=number, column=1, end_line=number, end_column=len(text) + 1)
    return found


def format_journey(journey: Journey, source: str | None = None) -> str:
    """The canonical text of ``journey``; pass the original ``source`` to keep
    its comments."""
    comments = _Comments(source)
    writer = _Writer(comments, source)
    spans = _line_spans(source)
    first_step_line = journey.steps[0].span.line if journey.steps and journey.steps[0].span else None
    writer.line(0, f"journey {quote(journey.name)}", spans.get("journey"))
    for text, span in _header(journey, spans):
        if span is not None and first_step_line is not None and span.line > first_step_line:
            span = None  # a header line written after the steps moves up; its comments stay with the steps
        writer.line(1, text, span)
    if journey.steps:
        writer.lines.append("")
        writer.block(1, journey.steps)
    writer.lines.extend(comments.rest(INDENT))
    return "\n".join(writer.lines) + "\n"
