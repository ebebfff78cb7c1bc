"""Human-readable words for journey steps and conditions.

Shared by the diagrams (``dsl.render``), the console and user timelines, so the
same step reads the same everywhere: ``wait 3 days``, ``send SMS: nudge_a``,
``if visited and not ordered``. Each step kind has a short label (the node's
text) and, where the label cannot carry how the step behaves, a tooltip that
says it (``wait for event`` takes an event that came before it, too).
"""

from __future__ import annotations

import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from dsl.ir import (
    WEEKDAYS,
    AndCond,
    ApiEntry,
    AudienceEntry,
    CapPolicy,
    CompareCond,
    CouponStep,
    EventCountCond,
    EventEntry,
    ExitRule,
    ExitStep,
    Goal,
    GotoStep,
    IfStep,
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
    SplitStep,
    StageCond,
    TagCond,
    TagStep,
    WaitDateStep,
    WaitEventStep,
    WaitEventTimeStep,
    WaitStep,
    WaitUntilStep,
    _Step,
)

CHANNEL_NAMES: dict[str, str] = {
    "wecom": "WeCom",
    "wecom_group": "WeCom group",
    "official_account": "Official Account",
    "miniprogram": "Mini Program",
    "push": "push",
    "sms": "SMS",
    "email": "email",
    "webhook": "webhook",
}

_UNITS: tuple[tuple[int, str], ...] = (
    (7 * 86400, "week"),
    (86400, "day"),
    (3600, "hour"),
    (60, "minute"),
    (1, "second"),
)

_OPS: dict[str, str] = {
    "==": "=",
    "!=": "≠",
    "<": "<",
    "<=": "≤",
    ">": ">",
    ">=": "≥",
    "in": "in",
    "not in": "not in",
}


def describe_duration(seconds: int | float) -> str:
    """``3 days``, ``2 hours``, ``1 week``, ``90 minutes``: the largest unit that
    divides the duration exactly."""
    seconds = int(seconds)
    if seconds == 0:
        return "0 seconds"
    sign = "-" if seconds < 0 else ""
    seconds = abs(seconds)
    for size, unit in _UNITS:
        if seconds % size == 0:
            n = seconds // size
            return f"{sign}{n} {unit}" + ("" if n == 1 else "s")
    return f"{sign}{seconds} seconds"  # pragma: no cover - the loop ends at 1 second


def describe_channel(channel: str) -> str:
    return CHANNEL_NAMES.get(channel, channel)


def _weekday(index: int | None) -> str:
    if index is None or not 0 <= index < len(WEEKDAYS):
        return f"weekday {index}"
    return WEEKDAYS[index].capitalize()


def _value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return '"' + value + '"'
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, list):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    return str(value)


def _one_or_many(word: str, items: list[str]) -> str:
    if len(items) == 1:
        return f"{word} is {items[0]}"
    return f"{word} in [" + ", ".join(items) + "]"


def describe_cond(cond, *, bare_event: bool = False) -> str:
    """A condition in words: ``visited and not ordered``, ``user.city = "上海"``,
    ``order_paid ≥ 2 times within 30 days``.

    With ``bare_event`` (``where`` clauses of an event), event properties are
    shown without the ``event.`` prefix, as the operator wrote them.
    """

    def sub(c, parent: str) -> str:
        text = describe_cond(c, bare_event=bare_event)
        compound = isinstance(c, AndCond | OrCond) and len(c.operands) > 1
        if compound and (parent == "not" or type(c).__name__ != parent):
            return f"({text})"
        return text

    if isinstance(cond, TagCond):
        return cond.tag
    if isinstance(cond, NotCond):
        return "not " + sub(cond.operand, "not")
    if isinstance(cond, AndCond):
        if not cond.operands:
            return "always"
        return " and ".join(sub(c, "AndCond") for c in cond.operands)
    if isinstance(cond, OrCond):
        if not cond.operands:
            return "never"
        return " or ".join(sub(c, "OrCond") for c in cond.operands)
    if isinstance(cond, CompareCond):
        name = cond.field if (bare_event and cond.subject == "event") else f"{cond.subject}.{cond.field}"
        return f"{name} {_OPS.get(cond.op, cond.op)} {_value(cond.value)}"
    if isinstance(cond, StageCond):
        return _one_or_many("stage", cond.stages)
    if isinstance(cond, RfmCond):
        return _one_or_many("RFM", cond.layers)
    if isinstance(cond, EventCountCond):
        times = "time" if cond.value == 1 else "times"
        text = f"{cond.event} {_OPS.get(cond.op, cond.op)} {cond.value} {times}"
        if cond.within_seconds:
            text += f" within {describe_duration(cond.within_seconds)}"
        return text
    if isinstance(cond, ReachableCond):
        return f"reachable on {describe_channel(cond.channel)}"
    return str(getattr(cond, "kind", cond))


def _words(step) -> StepWords:
    words = STEP_TEXT.get(type(step))
    if words is None:
        raise TypeError(f"dsl.render_text.STEP_TEXT has no words for step kind {step.kind!r}")
    return words


def describe_step(step) -> str:
    """One step in the operator's words: ``wait 3 days``, ``send SMS: nudge_a``,
    ``send best of WeCom → push → SMS: reminder``, ``coupon new_user_10``,
    ``wait for order_paid (up to 3 days)``, ``if visited and not ordered``,
    ``split``, ``goto reminder``."""
    return _words(step).label(step)


def describe_step_tooltip(step) -> str:
    """The step's words and, for a kind whose label cannot say how it
    behaves, that too: ``wait for order_paid — takes the earliest order_paid
    since entry that no earlier wait took, …``. What hovering a node shows."""
    words = _words(step)
    label = words.label(step)
    extra = words.tooltip(step) if words.tooltip is not None else ""
    return f"{label} — {extra}" if extra else label


def _send(step: SendStep) -> str:
    names = [describe_channel(c) for c in step.channels]
    how = "best of " + " → ".join(names) if step.best_of else " + ".join(names)
    return f"send {how}: {step.template}"


def _send_rule(step: SendStep) -> str:
    """The send's own cap policy (the journey's is a note on the diagram)."""
    return describe_cap_policy(step.when_capped) if step.when_capped else ""


def _tag(step: TagStep) -> str:
    names = [
        *step.tags,
        *("".join(p.text or "{" + f"{p.subject}.{p.field}" + "}" for p in parts) for parts in step.computed or []),
    ]
    noun = "tag" if len(names) == 1 else "tags"
    return f"{step.action} {noun} " + ", ".join(names)


def _wait_until(step: WaitUntilStep) -> str:
    if step.weekday is not None:
        return f"wait until {_weekday(step.weekday)} {step.time}"
    return f"wait until {step.time}"


def _date_wait(subject: str, offset_seconds: int, time: str | None) -> str:
    """``wait until 7 days before user.term_start at 10:00``."""
    if offset_seconds < 0:
        when = f"{describe_duration(-offset_seconds)} before {subject}"
    elif offset_seconds > 0:
        when = f"{describe_duration(offset_seconds)} after {subject}"
    else:
        when = subject
    return f"wait until {when}" + (f" at {time}" if time else "")


def _wait_event(step: WaitEventStep) -> str:
    text = f"wait for {step.event}"
    if step.where is not None:
        text += " where " + describe_cond(step.where, bare_event=True)
    if step.timeout_seconds:
        text += f" (up to {describe_duration(step.timeout_seconds)})"
    return text


def _wait_event_rule(step: WaitEventStep) -> str:
    """The event-window rule (patch ``buffered-events``, dsl/README): only
    ``wait for event`` steps consume events, oldest first, since entry."""
    then = "waits for the next" + (" (up to the timeout)" if step.timeout_seconds else "")
    which = f"matching {step.event}" if step.where is not None else step.event
    return (
        f"takes the earliest {which} since entry that no earlier wait took, "
        f"even one that came during an earlier step; if there is none, {then}"
    )


def _if(step: IfStep) -> str:
    parts = [describe_cond(b.cond) for b in step.branches]
    return "if " + " / else if ".join(parts) if parts else "if"


def _split(step: SplitStep) -> str:
    test = step.test
    if test is None:
        return "split"
    return f"split test {test.sample_percent:g}% for {describe_duration(test.window_seconds)}"


def _split_rule(step: SplitStep) -> str:
    """How a test split decides (the label says only its size and length)."""
    test = step.test
    if test is None:
        return ""
    metric = "the journey's goal" if test.metric == "goal" else f"doing {test.event}"
    return (
        f"{test.sample_percent:g}% of the runs are the test; the rest wait here until "
        f"{describe_duration(test.window_seconds)} after the first run arrived, then take the variant that did best "
        f"on {metric} if it wins significantly, else {step.fallback()}"
    )


@dataclass(frozen=True)
class StepWords:
    """A step kind's words: ``label`` is short (it is drawn in the node);
    ``tooltip`` adds what the label cannot carry, or is ``None`` when the
    label says it all."""

    label: Callable[[Any], str]
    tooltip: Callable[[Any], str] | None


# step class -> the step in the operator's words (label, and what a tooltip adds)
STEP_TEXT: dict[type[_Step], StepWords] = {
    SendStep: StepWords(_send, _send_rule),
    CouponStep: StepWords(lambda s: f"coupon {s.pool}", None),
    TagStep: StepWords(_tag, None),
    WaitStep: StepWords(lambda s: f"wait {describe_duration(s.seconds)}", None),
    WaitUntilStep: StepWords(_wait_until, None),
    WaitDateStep: StepWords(lambda s: _date_wait(f"user.{s.attribute}", s.offset_seconds, s.time), None),
    WaitEventTimeStep: StepWords(lambda s: _date_wait(f"event.{s.field}", s.offset_seconds, s.time), None),
    WaitEventStep: StepWords(_wait_event, _wait_event_rule),
    IfStep: StepWords(_if, None),
    SplitStep: StepWords(_split, _split_rule),
    LabelStep: StepWords(lambda s: f"label {s.name}", None),
    GotoStep: StepWords(lambda s: f"goto {s.label}", None),
    ExitStep: StepWords(lambda s: "exit", None),
    PassStep: StepWords(lambda s: "pass", None),
}


def describe_schedule(schedule: Schedule) -> str:
    """``every day at 10:00``, ``every Monday at 09:30``, ``once at 2026-12-01 10:00``."""
    if schedule.every == "day":
        return f"every day at {schedule.time}"
    if schedule.every == "week":
        return f"every {_weekday(schedule.weekday)} at {schedule.time}"
    return f"once at {schedule.date or '?'} {schedule.time}"


def describe_entry(entry) -> str:
    """``on event signup where channel = "app"``, ``audience stage is silent, every
    day at 10:00``, ``via API``."""
    if isinstance(entry, EventEntry):
        text = f"on event {entry.event}"
        if entry.where is not None:
            text += " where " + describe_cond(entry.where, bare_event=True)
        return text
    if isinstance(entry, AudienceEntry):
        return f"audience {describe_cond(entry.where)}, {describe_schedule(entry.schedule)}"
    if isinstance(entry, ApiEntry):
        return "via API"
    return str(getattr(entry, "kind", entry))


def describe_reentry(reentry: Reentry) -> str:
    if reentry.mode == "after" and reentry.cooldown_seconds:
        return f"reentry after {describe_duration(reentry.cooldown_seconds)}"
    return f"reentry {reentry.mode}"


def describe_goal(goal: Goal) -> str:
    text = f"goal {goal.event}"
    if goal.where is not None:
        text += " where " + describe_cond(goal.where, bare_event=True)
    if goal.within_seconds:
        text += f" within {describe_duration(goal.within_seconds)}"
    if goal.exit_on_goal:
        text += ", then exit"
    return text


def describe_exit_rule(rule: ExitRule) -> str:
    if rule.event:
        text = f"exit on {rule.event}"
        if rule.where is not None:
            text += " where " + describe_cond(rule.where, bare_event=True)
        return text
    if rule.cond is not None:
        return f"exit when {describe_cond(rule.cond)}"
    return "exit"


def describe_quiet_hours(quiet: QuietHours) -> str:
    return f"quiet hours {quiet.start}–{quiet.end}"


def describe_message_limit(limit: MessageLimit) -> str:
    """A calendar window reads "per calendar day"; a sliding one "in any 24
    hours", so the two are never taken for each other."""
    noun = "message" if limit.count == 1 else "messages"
    if limit.calendar is not None:
        return f"at most {limit.count} {noun} per calendar {limit.calendar}"
    seconds = limit.window_seconds
    window = "24 hours" if seconds == 86400 else describe_duration(seconds)
    return f"at most {limit.count} {noun} in any {window}"


def describe_priority(priority: int) -> str:
    """``priority 2`` in words: what it decides."""
    return f"priority {priority} (1 first): gets a user's last message under the caps before later priorities"


def describe_cap_policy(policy: CapPolicy) -> str:
    """What a send does when a frequency cap stops it."""
    if policy.mode == "defer":
        return (
            f"when a frequency cap stops a message, it waits until the caps allow it "
            f"(up to {describe_duration(policy.max_delay_seconds or 0)}), else it is skipped"
        )
    return "when a frequency cap stops a message, it is skipped"


# ---------------------------------------------------------------- text measure


def char_width(ch: str) -> int:
    """Display columns of one character: wide (CJK, fullwidth) count two,
    combining marks none."""
    if unicodedata.combining(ch):
        return 0
    return 2 if unicodedata.east_asian_width(ch) in "WF" else 1


def text_width(text: str) -> int:
    """Display columns of a string (CJK ≈ two Latin letters)."""
    return sum(char_width(ch) for ch in text)


def wrap_text(text: str, width: int) -> list[str]:
    """Greedy wrap at spaces, or between any two wide (CJK) characters, so no
    line is wider than ``width`` columns unless one word is."""
    tokens: list[str] = []  # words, single wide chars and spaces
    word = ""
    for ch in text:
        if ch == " " or char_width(ch) == 2:
            if word:
                tokens.append(word)
                word = ""
            tokens.append(ch)
        else:
            word += ch
    if word:
        tokens.append(word)

    lines: list[str] = []
    line = ""
    for tok in tokens:
        if tok == " ":
            if line:
                line += " "
            continue
        if line and text_width(line.rstrip() + tok) > width and line.strip():
            lines.append(line.rstrip())
            line = ""
        if text_width(tok) > width and not line:
            # A word longer than a line: cut it.
            while text_width(tok) > width:
                cut, used = "", 0
                for ch in tok:
                    if used + char_width(ch) > width:
                        break
                    cut += ch
                    used += char_width(ch)
                lines.append(cut)
                tok = tok[len(cut) :]
        line += tok
    if line.strip() or not lines:
        lines.append(line.rstrip())
    return lines
