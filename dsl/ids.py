"""Stable step ids, derived from what a step *says* rather than where it sits.

Live counts, diagrams and running workflows refer to steps by id, so an id
must survive edits to unrelated lines: ``send sms "nudge_a"`` is always
``send-sms-nudge_a`` wherever it moves. Only identical steps are told apart by
position (``-2``, ``-3`` in document order). Labels use their own name.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from typing import Any

from dsl.durations import format_duration
from dsl.ir import (
    AndCond,
    CompareCond,
    CouponStep,
    EventCountCond,
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
    SplitStep,
    StageCond,
    Step,
    TagCond,
    TagStep,
    WaitDateStep,
    WaitEventStep,
    WaitEventTimeStep,
    WaitStep,
    WaitUntilStep,
    _Step,
    iter_steps,
)

__all__ = ["ID_PARTS", "assign_ids", "base_id", "format_duration", "slug"]

MAX_SLUG = 48
_UNSAFE = re.compile(r"[^A-Za-z0-9_.]+")
_NON_ASCII = re.compile(r"[^\x00-\x7f]+")
_SAFE = re.compile(r"[A-Za-z0-9_.]+(?:-[A-Za-z0-9_.]+)*")
_SHORT_DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


def slug(text: str) -> str:
    """An ASCII-safe, short slug; non-ASCII runs (Chinese names) become a short
    hash so two different Chinese names still get different ids."""
    if len(text) <= MAX_SLUG and _SAFE.fullmatch(text):
        return text  # already a slug (most names): the rules below leave it as it is
    text = _NON_ASCII.sub(lambda m: "x" + hashlib.sha1(m.group(0).encode("utf-8")).hexdigest()[:6], text)
    text = _UNSAFE.sub("-", text).strip("-")
    if len(text) > MAX_SLUG:
        digest = hashlib.sha1(text.encode("utf-8")).hexdigest()[:6]
        text = text[: MAX_SLUG - 7].rstrip("-") + "-" + digest
    return text or "x"


def _cond_words(cond: object) -> list[str]:
    """The first meaningful words of a condition, for an ``if`` id."""
    if isinstance(cond, TagCond):
        return [cond.tag]
    if isinstance(cond, NotCond):
        return ["not", *_cond_words(cond.operand)]
    if isinstance(cond, AndCond | OrCond):
        return _cond_words(cond.operands[0]) if cond.operands else []
    if isinstance(cond, CompareCond):
        return [cond.field]
    if isinstance(cond, StageCond):
        return ["stage", *cond.stages[:2]]
    if isinstance(cond, RfmCond):
        return ["rfm", *cond.layers[:2]]
    if isinstance(cond, EventCountCond):
        return ["count", cond.event]
    if isinstance(cond, ReachableCond):
        return ["reachable", cond.channel]
    return []


def _computed_words(parts: list) -> str:
    """``"src_" + event.placement`` as one id word: ``src_event.placement``."""
    return "".join(p.text if p.text is not None else f"{p.subject}.{p.field}" for p in parts)


def _send(step: SendStep) -> list[str]:
    return ["send", "best" if step.best_of else step.channels[0], step.template]


def _wait_until(step: WaitUntilStep) -> list[str]:
    day = [_SHORT_DAYS[step.weekday]] if step.weekday is not None and 0 <= step.weekday < 7 else []
    return ["wait", "until", *day, step.time.replace(":", "")]


def _offset(seconds: int) -> list[str]:
    if not seconds:
        return []
    return ["minus" if seconds < 0 else "plus", format_duration(abs(seconds))]


# step class -> the words of its id, each slugged, then the whole slugged
# again (a no-op for a label's name, already a slug)
ID_PARTS: dict[type[_Step], Callable[[Any], list[str]]] = {
    SendStep: _send,
    CouponStep: lambda s: ["coupon", s.pool],
    TagStep: lambda s: ["tag", s.action, *s.tags, *(_computed_words(parts) for parts in s.computed or [])],
    WaitStep: lambda s: ["wait", format_duration(s.seconds)],
    WaitUntilStep: _wait_until,
    WaitDateStep: lambda s: ["wait", "until", s.attribute, *_offset(s.offset_seconds)],
    WaitEventTimeStep: lambda s: ["wait", "until", "event", s.field, *_offset(s.offset_seconds)],
    WaitEventStep: lambda s: ["wait", "event", s.event],
    IfStep: lambda s: ["if", *(_cond_words(s.branches[0].cond) if s.branches else [])],
    SplitStep: lambda s: ["split", *(v.name for v in s.variants)],
    LabelStep: lambda s: [s.name],
    GotoStep: lambda s: ["goto", s.label],
    ExitStep: lambda s: ["exit"],
    PassStep: lambda s: ["pass"],
}


def base_id(step: Step) -> str:
    """The id a step gets when it is the only one of its kind and content."""
    parts = ID_PARTS.get(type(step))
    if parts is None:
        raise TypeError(f"dsl.ids.ID_PARTS has no entry for step kind {step.kind!r}")
    return slug("-".join(slug(p) for p in parts(step)))


def assign_ids(journey: Journey) -> None:
    """Give every step its stable id, in place; duplicates get ``-2``, ``-3``…
    in document order."""
    used: set[str] = set()
    next_n: dict[str, int] = {}
    for step in iter_steps(journey.steps):
        base = base_id(step)
        candidate, n = base, next_n.get(base, 1)
        while candidate in used:
            n += 1
            candidate = f"{base}-{n}"
        next_n[base] = n
        used.add(candidate)
        step.id = candidate
