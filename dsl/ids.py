"""Stable step ids, derived from what a step *says* rather than where it sits.

Live counts, diagrams and running workflows refer to steps by id, so an id
must survive edits to unrelated lines: ``send sms "nudge_a"`` is always
``send-sms-nudge_a`` wherever it moves. Only identical steps are told apart by
position (``-2``, ``-3`` in document order). Labels use their own name.
"""

from __future__ import annotations

import hashlib
import re

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
    WaitStep,
    WaitUntilStep,
    iter_steps,
)

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


def format_duration(seconds: int) -> str:
    """Canonical duration text: ``1d12h``, ``30m``, ``0s``. Weeks are written as
    days (``14d``), which is how operators count campaign windows."""
    if seconds <= 0:
        return "0s" if seconds == 0 else "-" + format_duration(-seconds)
    out = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if seconds >= size:
            out.append(f"{seconds // size}{unit}")
            seconds %= size
    return "".join(out)


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


def base_id(step: Step) -> str:
    """The id a step gets when it is the only one of its kind and content."""
    parts: list[str]
    if isinstance(step, SendStep):
        parts = ["send", "best" if step.best_of else step.channels[0], step.template]
    elif isinstance(step, CouponStep):
        parts = ["coupon", step.pool]
    elif isinstance(step, TagStep):
        parts = ["tag", step.action, *step.tags]
    elif isinstance(step, WaitStep):
        parts = ["wait", format_duration(step.seconds)]
    elif isinstance(step, WaitUntilStep):
        day = [_SHORT_DAYS[step.weekday]] if step.weekday is not None and 0 <= step.weekday < 7 else []
        parts = ["wait", "until", *day, step.time.replace(":", "")]
    elif isinstance(step, WaitDateStep):
        parts = ["wait", "until", step.attribute]
        if step.offset_seconds:
            parts += ["minus" if step.offset_seconds < 0 else "plus", format_duration(abs(step.offset_seconds))]
    elif isinstance(step, WaitEventStep):
        parts = ["wait", "event", step.event]
    elif isinstance(step, IfStep):
        parts = ["if", *(_cond_words(step.branches[0].cond) if step.branches else [])]
    elif isinstance(step, SplitStep):
        parts = ["split", *(v.name for v in step.variants)]
    elif isinstance(step, LabelStep):
        return slug(step.name)
    elif isinstance(step, GotoStep):
        parts = ["goto", step.label]
    elif isinstance(step, ExitStep):
        parts = ["exit"]
    elif isinstance(step, PassStep):
        parts = ["pass"]
    else:  # pragma: no cover - every kind is listed above
        parts = [step.kind]
    return slug("-".join(slug(p) for p in parts))


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
