"""Parse tree → IR: a builder that collects (not raises) the problems the
grammar cannot express (an unknown channel, a bare field in an ``if``, a
header line twice…).

Steps are built by ``STEP_BUILDERS``, one function per rule of
``dsl._grammar.STEP_RULES``. The file is one job, tree → IR, for the header,
conditions and steps; past 450 lines because each kind's builder sits with
the leaf decoders it uses.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable
from typing import Any

from lark import Token, Tree

from dsl._fastmodel import new as _new
from dsl._fastmodel import new_span
from dsl._grammar import STEP_RULES
from dsl.durations import parse_duration
from dsl.errors import Diagnostic, end_with_closers, source_lines
from dsl.ids import assign_ids
from dsl.ir import (
    CHANNELS,
    PRIORITY_LEVELS,
    WEEKDAYS,
    AndCond,
    ApiEntry,
    AudienceEntry,
    Branch,
    CapPolicy,
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
    SplitTest,
    StageCond,
    Step,
    TagCond,
    TagPart,
    TagStep,
    Variant,
    WaitDateStep,
    WaitEventStep,
    WaitEventTimeStep,
    WaitStep,
    WaitUntilStep,
)
from dsl.limits import (
    MAX_DEPTH,
    MAX_DURATION_PART_DIGITS,
    MAX_DURATION_SECONDS,
    MAX_NUMBER_DIGITS,
    REPLACEMENT,
    surrogate,
    too_deep,
)

_WEEKDAY_ALIASES = {**{d: i for i, d in enumerate(WEEKDAYS)}, **{d[:3]: i for i, d in enumerate(WEEKDAYS)}}
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", '"': '"', "\\": "\\", "'": "'", "0": "\0"}
_HEX4 = re.compile(r"[0-9a-fA-F]{4}")
_DURATION_PARTS = re.compile(r"(\d+)[wdhms]")


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
    return new_span(first.line, first.column, last.end_line, last.end_column)


# header lines that may appear once
HEADER_ONCE = frozenset(
    {"description", "entry", "reentry", "goal", "timezone", "quiet_hours", "limit", "on_capped", "priority"}
)


# Building the IR without pydantic's validation: the builder already produces
# exactly the types the models declare (tests/dsl checks that the result equals
# what validation gives), and validating ~10,000 nested models is a good part
# of a big file's parse. ``BaseModel.model_construct`` skips validation too but
# is slower than validating for these small models, so this does what it does


def _sub(tree: Tree, data: str) -> Tree | None:
    for child in tree.children:
        if isinstance(child, Tree) and child.data == data:
            return child
    return None


def _tokens(tree: Tree, *types: str) -> list[Token]:
    return [c for c in tree.children if isinstance(c, Token) and (not types or c.type in types)]


class Builder:
    """Builds the IR from the parse tree, collecting (not raising) the
    problems the grammar cannot express."""

    def __init__(self, source: str = "") -> None:
        self.diagnostics: list[Diagnostic] = []
        self.lines = source_lines(source)
        self.level = 0  # how deep the block or condition being built is (``MAX_DEPTH``)

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
            elif nxt == "u" and _HEX4.fullmatch(raw, i + 2, i + 6):
                code = int(raw[i + 2 : i + 6], 16)
                low = (
                    int(raw[i + 8 : i + 12], 16)
                    if raw[i + 6 : i + 8] == "\\u" and _HEX4.fullmatch(raw, i + 8, i + 12)
                    else 0
                )
                if 0xD800 <= code < 0xDC00 and 0xDC00 <= low < 0xE000:  # a pair written as two escapes
                    out.append(chr(0x10000 + ((code - 0xD800) << 10) + (low - 0xDC00)))
                    i += 12
                    continue
                if 0xD800 <= code < 0xE000:
                    column = token.column + 1 + i if token.line == token.end_line else token.column
                    self.diagnostics.append(surrogate(token.line, column, code, column + 6))
                    code = ord(REPLACEMENT)
                out.append(chr(code))
                i += 6
            else:
                self.error("E206", f"unknown escape \\{nxt} in text", token, r"known escapes: \" \\ \n \t \uXXXX")
                out.append(nxt)
                i += 2
        return "".join(out)

    def number(self, token: Token) -> int | float:
        value = str(token.value)
        digits = len(value) - value.startswith("-") - ("." in value)
        if digits > MAX_NUMBER_DIGITS:
            self.error(
                "E132",
                f"a number of {digits:,} digits, over the limit of {MAX_NUMBER_DIGITS}",
                token,
                "numbers in journeys have at most 15 digits",
            )
            return 0
        return float(value) if "." in value else int(value)

    def integer(self, token: Token, what: str) -> int:
        value = self.number(token)
        if isinstance(value, float):
            self.error("E205", f"{what} must be a whole number", token)
            return int(value)
        return value

    def duration(self, token: Token) -> int:
        text = str(token.value)
        too_long = len(text) > 64 or any(len(n) > MAX_DURATION_PART_DIGITS for n in _DURATION_PARTS.findall(text))
        seconds = MAX_DURATION_SECONDS + 1 if too_long else parse_duration(text)
        if seconds > MAX_DURATION_SECONDS:
            self.error(
                "E133",
                f"{text if len(text) <= 20 else text[:17] + '...'} is longer than {MAX_DURATION_SECONDS // 86400}d (10 years)",
                token,
                "durations go up to 3650d",
            )
            return MAX_DURATION_SECONDS
        return seconds

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
        if node.data not in ("or_cond", "and_cond", "neg"):
            return self._leaf_cond(node, event_ctx)
        if self.level >= MAX_DEPTH:
            self.too_deep(node, "this condition")
            return _new(TagCond, tag="_")
        self.level += 1
        try:
            return self._nested_cond(node, event_ctx)
        finally:
            self.level -= 1

    def too_deep(self, node: Tree | Token, what: str) -> None:
        span = _span(node)
        self.diagnostics.append(too_deep(span.line, span.column, what) if span else too_deep(1, 1, what))

    def _nested_cond(self, node: Tree, event_ctx: bool) -> Cond:
        kind = node.data
        ch = node.children
        if kind in ("or_cond", "and_cond"):
            cls = OrCond if kind == "or_cond" else AndCond
            operands: list[Cond] = []
            for child in ch:
                built = self.cond(child, event_ctx)
                operands.extend(built.operands if isinstance(built, cls) else [built])
            return _new(cls, operands=operands)
        return _new(NotCond, operand=self.cond(ch[0], event_ctx))

    def _leaf_cond(self, node: Tree, event_ctx: bool) -> Cond:
        kind = node.data
        ch = node.children
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
            if key in HEADER_ONCE:
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
                steps.append(self.step(item))
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
            window = ch[1]
            if window.type == "CALENDAR_WINDOW":  # per day / per week
                calendar = "day" if window == "day" else "week"
                seconds = 86400 if calendar == "day" else 7 * 86400
                return {
                    "message_limit": _new(
                        MessageLimit, count=count, window_seconds=seconds, calendar=calendar, span=span
                    )
                }
            return {"message_limit": _new(MessageLimit, count=count, window_seconds=self.duration(window), span=span)}
        if kind == "on_capped":
            return {"when_capped": self.cap_policy(ch[0], span)}
        if kind == "priority":
            token = ch[0]
            level = self.integer(token, "a priority") if token.type == "NUMBER" else PRIORITY_LEVELS.get(str(token))
            if level is None or not 1 <= level <= 10:
                self.error(
                    "E232",
                    f"priority {str(token)!r} is not one of 1–10, high, normal, low",
                    token,
                    "write priority 1 (first) to 10, or priority high, normal or low",
                )
                return {}
            return {"priority": level}
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
        step = self.step
        children = [child for child in suite.children if isinstance(child, Tree)]
        if self.level >= MAX_DEPTH:
            self.too_deep(children[0] if children else suite, "this block")
            return []
        self.level += 1
        try:
            return [step(child) for child in children]
        finally:
            self.level -= 1

    def step(self, node: Tree) -> Step:
        return STEP_BUILDERS[node.data](self, node)

    def cap_policy(self, action: Tree, span: Span | None) -> CapPolicy:
        if action.data == "capped_skip":
            return _new(CapPolicy, mode="skip", span=span)
        return _new(CapPolicy, mode="defer", max_delay_seconds=self.duration(action.children[0]), span=span)

    def capped_clause(self, node: Tree) -> dict[str, Any]:
        """A send's own ``on capped …``, as the SendStep's field (absent when
        the line has none, so the journey's policy applies)."""
        clause = _sub(node, "capped_clause")
        if clause is None:
            return {}
        return {"when_capped": self.cap_policy(clause.children[0], _span(clause) or _span(node))}

    def send(self, node: Tree) -> SendStep:
        ch = [c for c in node.children if not (isinstance(c, Tree) and c.data == "capped_clause")]
        return _new(
            SendStep,
            channels=[self.channel(ch[0])],  # type: ignore[list-item]
            template=self.text(ch[1]),
            span=_span(node),
            **self.capped_clause(node),
        )

    def send_best(self, node: Tree) -> SendStep:
        ch = [c for c in node.children if not (isinstance(c, Tree) and c.data == "capped_clause")]
        channels = [self.channel(t) for t in ch[:-1]]
        return _new(
            SendStep,
            channels=channels,  # type: ignore[arg-type]
            best_of=True,
            template=self.text(ch[-1]),
            span=_span(node),
            **self.capped_clause(node),
        )

    def tag_add(self, node: Tree) -> TagStep:
        return self.tag_step("add", node)

    def tag_remove(self, node: Tree) -> TagStep:
        return self.tag_step("remove", node)

    def tag_step(self, action: str, node: Tree) -> TagStep:
        tags: list[str] = []
        computed: list[list[TagPart]] = []
        for item in node.children:
            if isinstance(item, Tree):
                parts = item.children if item.data == "tag_concat" else [item]
                computed.append([self.tag_part(p) for p in parts])
            else:
                tags.append(self.text(item))
        fields: dict[str, Any] = {"computed": computed} if computed else {}
        return _new(TagStep, action=action, tags=tags, span=_span(node), **fields)

    def tag_part(self, part: Tree | Token) -> TagPart:
        if isinstance(part, Tree):
            subject = "event" if part.data == "tag_event_ref" else "user"
            return _new(TagPart, subject=subject, field=str(part.children[0]))
        return _new(TagPart, text=self.text(part))

    def wait(self, node: Tree) -> WaitStep:
        return _new(WaitStep, seconds=self.duration(node.children[0]), span=_span(node))

    def wait_until(self, node: Tree) -> WaitUntilStep:
        day = _tokens(node, "NAME")
        time = _tokens(node, "TIME")[0]
        return _new(
            WaitUntilStep, time=self.time(time), weekday=self.weekday(day[0]) if day else None, span=_span(node)
        )

    def _offset_and_time(self, node: Tree) -> tuple[int, str | None]:
        """``± DURATION`` and ``at HH:MM`` of a date wait, both optional."""
        offset = _sub(node, "offset")
        at = _sub(node, "at_time")
        seconds = 0
        if offset is not None:
            seconds = self.duration(offset.children[1]) * (-1 if str(offset.children[0]) == "-" else 1)
        return seconds, self.time(at.children[0]) if at else None

    def wait_date(self, node: Tree) -> WaitDateStep:
        seconds, time = self._offset_and_time(node)
        return _new(WaitDateStep, attribute=str(node.children[0]), offset_seconds=seconds, time=time, span=_span(node))

    def wait_event_time(self, node: Tree) -> WaitEventTimeStep:
        seconds, time = self._offset_and_time(node)
        return _new(WaitEventTimeStep, field=str(node.children[0]), offset_seconds=seconds, time=time, span=_span(node))

    def coupon(self, node: Tree) -> CouponStep:
        head = node.children[0]
        oos = _sub(node, "out_of_stock")
        return _new(
            CouponStep,
            pool=self.text(head.children[0]),
            out_of_stock=self.block(oos.children[1]) if oos is not None else None,
            span=_span(head),
        )

    def label(self, node: Tree) -> LabelStep:
        return _new(LabelStep, name=self.text(node.children[0]), span=_span(node))

    def goto(self, node: Tree) -> GotoStep:
        return _new(GotoStep, label=self.text(node.children[0]), span=_span(node))

    def exit_step(self, node: Tree) -> ExitStep:
        return _new(ExitStep, span=_span(node))

    def pass_step(self, node: Tree) -> PassStep:
        return _new(PassStep, span=_span(node))

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

    def split_step(self, node: Tree) -> SplitStep:
        variants = []
        otherwise = _sub(node, "split_otherwise")
        for var in node.children[1:]:
            if var.data == "split_otherwise":
                continue
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
        head = node.children[0]
        test = _sub(head, "split_test")
        fields: dict[str, Any] = {}
        if test is not None:
            fields["test"] = self.split_test(test, otherwise)
        elif otherwise is not None:
            self.error("E233", "otherwise: is for a split test", otherwise, "write split test 10% for 6h by goal:")
        return _new(SplitStep, variants=variants, span=_span(head), **fields)

    def split_test(self, test: Tree, otherwise: Tree | None) -> SplitTest:
        percent, window, metric = test.children
        event = self.text(metric.children[0]) if metric.data == "metric_event" else None
        return _new(
            SplitTest,
            sample_percent=float(self.number(percent)),
            window_seconds=self.duration(window),
            metric="event" if event is not None else "goal",
            event=event,
            otherwise=self.text(otherwise.children[0]) if otherwise is not None else None,
            span=_span(test),
        )


# grammar rule -> the builder method that makes its step; every rule of
# ``STEP_RULES`` has one (checked at import, so a new rule cannot be missed)
STEP_BUILDERS: dict[str, Callable[[Builder, Tree], Step]] = {r.rule: getattr(Builder, r.rule) for r in STEP_RULES}
