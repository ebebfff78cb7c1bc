"""The checker's rules for each kind of step: ``STEP_CHECKS``, one entry per
kind of ``dsl.ir.Step`` (a missing one is an error, and
tests/test_step_kinds.py names it). Codes are listed in ``dsl.checker``."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from dsl._analysis import Analysis, event_in_scope
from dsl._report import Registry, Report, did_you_mean, valid_time
from dsl.ir import (
    CapPolicy,
    CouponStep,
    ExitStep,
    GotoStep,
    IfStep,
    LabelStep,
    PassStep,
    SendStep,
    Span,
    SplitStep,
    Step,
    TagStep,
    WaitDateStep,
    WaitEventStep,
    WaitEventTimeStep,
    WaitStep,
    WaitUntilStep,
    _Step,
    iter_steps,
)
from dsl.tag_names import MAX_TAG_CHARS, valid_part

__all__ = ["STEP_CHECKS", "StepContext", "check_steps"]


@dataclass
class StepContext:
    """What the per-kind rules read, besides the step."""

    report: Report
    registry: Registry | None
    facts: Analysis
    entry_is_event: bool
    labels: dict[str, LabelStep] = field(default_factory=dict)  # the first label of each name
    has_goal: bool = False  # the journey has a goal line (``split test … by goal`` needs one)
    _event_scope: set[str] | None = None

    def known_event(self, name: str, span: Span | None) -> None:
        events = self.registry.events if self.registry is not None else None
        if events is not None and name not in events:
            self.report.add("E212", f"unknown event {name!r}", span, did_you_mean(name, events))

    def event_scope(self) -> set[str]:
        if self._event_scope is None:
            self._event_scope = event_in_scope(self.facts)
        return self._event_scope


def _no_rules(step: Any, ctx: StepContext) -> None:
    pass


MAX_CAP_DEFER = 30 * 86400


def check_cap_policy(policy: CapPolicy | None, report: Report) -> None:
    """``on capped defer up to D`` (the header's or a send's): D within bounds."""
    if policy is None or policy.mode != "defer":
        return
    delay = policy.max_delay_seconds or 0
    if delay <= 0:
        report.add("E225", "a deferral needs a longest delay", policy.span, "write e.g. on capped defer up to 1d")
    elif delay > MAX_CAP_DEFER:
        report.add(
            "E231",
            f"a capped send can be deferred by at most {MAX_CAP_DEFER // 86400}d",
            policy.span,
            "a message that late is another message: send it from a later step, or write on capped skip",
        )


def _check_send(step: SendStep, ctx: StepContext) -> None:
    registry, report = ctx.registry, ctx.report
    check_cap_policy(step.when_capped, report)
    if registry is None:
        return
    if registry.templates is not None and step.template not in registry.templates:
        report.add(
            "E210", f"unknown template {step.template!r}", step.span, did_you_mean(step.template, registry.templates)
        )
    if registry.channels is not None:
        for channel in step.channels:
            if channel not in registry.channels:
                report.add(
                    "E213",
                    f"channel {channel!r} is not enabled",
                    step.span,
                    "enabled channels: " + ", ".join(sorted(registry.channels)),
                )


def _check_coupon(step: CouponStep, ctx: StepContext) -> None:
    pools = ctx.registry.pools if ctx.registry is not None else None
    if pools is not None and step.pool not in pools:
        ctx.report.add("E211", f"unknown coupon pool {step.pool!r}", step.span, did_you_mean(step.pool, pools))


def _check_wait(step: WaitStep, ctx: StepContext) -> None:
    if step.seconds <= 0:
        ctx.report.add(
            "E225", "wait for zero time", step.span, "write a duration like 30m, 2h or 1d, or remove the wait"
        )


def _check_time(step: WaitUntilStep | WaitDateStep | WaitEventTimeStep, ctx: StepContext) -> None:
    if step.time is not None and not valid_time(step.time):
        ctx.report.add("E227", f"impossible time {step.time!r}", step.span, "times are HH:MM, 00:00 to 23:59")


def _check_wait_until(step: WaitUntilStep, ctx: StepContext) -> None:
    _check_time(step, ctx)
    if step.weekday is not None and not 0 <= step.weekday < 7:
        ctx.report.add("E227", "impossible weekday", step.span)


def _check_wait_event_time(step: WaitEventTimeStep, ctx: StepContext) -> None:
    _check_time(step, ctx)
    if ctx.entry_is_event or step.id not in ctx.facts.reachable or step.id in ctx.event_scope():
        return  # (an unreachable step is W301's)
    ctx.report.add(
        "W306",
        f"no event can carry {step.field!r} here: the journey does not start with an event "
        "and no wait for event comes before this step",
        step.span,
        f"put a wait for event … before it, or wait until user.{step.field}; as it is, the wait passes at once",
    )


def _check_tag(step: TagStep, ctx: StepContext) -> None:
    """E236 a tag part as written that no tag can hold; W308 ``event.x`` in
    a tag where no event can be there (the entry is not an event and no
    ``wait for event`` comes before)."""
    for parts in step.computed or []:
        for part in parts:
            if part.text is not None and not valid_part(part.text):
                ctx.report.add(
                    "E236",
                    f"{part.text!r} cannot be part of a tag name",
                    step.span,
                    f"use letters, digits and _ - . : (at most {MAX_TAG_CHARS}); values from fields are made safe",
                )
        uses_event = any(p.subject == "event" for p in parts)
        if (
            uses_event
            and not ctx.entry_is_event
            and step.id in ctx.facts.reachable
            and step.id not in ctx.event_scope()
        ):
            ctx.report.add(
                "W308",
                "no event can be here to make this tag from",
                step.span,
                "put a wait for event … before it, or use user.FIELD; as it is, the tag is skipped",
            )


def _check_wait_event(step: WaitEventStep, ctx: StepContext) -> None:
    ctx.known_event(step.event, step.span)
    report = ctx.report
    if step.timeout_seconds is None:
        if step.on_timeout:
            report.add(
                "E229",
                "on timeout never runs: this wait has no up to",
                step.span,
                f"write wait for event {step.event} up to 3d",
            )
        else:
            report.add(
                "W302",
                f"users may wait for {step.event} forever",
                step.span,
                "add up to 3d (or another limit) and an on timeout branch",
            )
    elif step.timeout_seconds <= 0:
        report.add("E225", "wait for event up to zero time", step.span)


def _check_split(step: SplitStep, ctx: StepContext) -> None:
    report = ctx.report
    names: set[str] = set()
    for variant in step.variants:
        if variant.name in names:
            report.add("E222", f"variant {variant.name!r} appears twice in this split", variant.span or step.span)
        names.add(variant.name)
        if variant.percent <= 0:
            report.add("E223", f"variant {variant.name!r} gets {variant.percent:g}%", variant.span or step.span)
        if variant.holdout and any(isinstance(s, SendStep) for s in iter_steps(variant.steps)):
            report.add(
                "W305",
                "the holdout gets no messages; its sends will only be recorded",
                variant.span or step.span,
                "remove the sends, or rename the variant if it should get messages",
            )
    total = sum(v.percent for v in step.variants)
    if abs(total - 100) > 1e-6:
        report.add(
            "E223",
            f"split percentages add up to {total:g}%, not 100%",
            step.span,
            "adjust the variants so they add up to 100%",
        )
    if step.test is not None:
        _check_split_test(step, names, ctx)


MAX_TEST_WINDOW = 30 * 86400


def _check_split_test(step: SplitStep, names: set[str], ctx: StepContext) -> None:
    """E233 ``otherwise`` names no variant; E234 a sample outside 1–100% or a
    window over 30 days (E225 when zero); E235 ``by goal`` without a goal."""
    test, report = step.test, ctx.report
    assert test is not None
    if test.otherwise is not None and test.otherwise not in names:
        report.add(
            "E233",
            f"otherwise: {test.otherwise!r} is not a variant of this split",
            test.span or step.span,
            did_you_mean(test.otherwise, names) or "variants: " + ", ".join(sorted(names)),
        )
    if not 1 <= test.sample_percent <= 100:
        report.add(
            "E234",
            f"a test on {test.sample_percent:g}% of the runs",
            test.span,
            "write a share from 1% to 100%, e.g. split test 10% for 6h by goal:",
        )
    if test.window_seconds <= 0:
        report.add("E225", "the test needs a window", test.span, "write e.g. split test 10% for 6h by goal:")
    elif test.window_seconds > MAX_TEST_WINDOW:
        report.add(
            "E234", "a test window can be at most 30d", test.span, "the rest of the runs wait that long at the split"
        )
    if test.metric == "goal" and not ctx.has_goal:
        report.add(
            "E235",
            "split test … by goal needs the journey's goal",
            test.span,
            "add a goal line, e.g. goal event order_paid within 1d, or test by event NAME",
        )
    if test.metric == "event" and test.event:
        ctx.known_event(test.event, test.span)


def _check_label(step: LabelStep, ctx: StepContext) -> None:
    first = ctx.labels[step.name]
    if first is not step:
        where = f" (first on line {first.span.line})" if first.span else ""
        ctx.report.add("E221", f"label {step.name!r} is defined twice{where}", step.span, "rename one of them")


def _check_goto(step: GotoStep, ctx: StepContext) -> None:
    if step.label not in ctx.labels:
        hint = (
            did_you_mean(step.label, tuple(ctx.labels)) or "add label " + step.label + " where the journey should go on"
        )
        ctx.report.add("E220", f"goto {step.label!r}: there is no such label", step.span, hint)


# step class -> the rules for one step of that kind (conditions are checked
# for every kind through ``step.conds()``, nested steps are steps of their own)
STEP_CHECKS: dict[type[_Step], Callable[[Any, StepContext], None]] = {
    SendStep: _check_send,
    CouponStep: _check_coupon,
    TagStep: _check_tag,
    WaitStep: _check_wait,
    WaitUntilStep: _check_wait_until,
    WaitDateStep: _check_time,
    WaitEventTimeStep: _check_wait_event_time,
    WaitEventStep: _check_wait_event,
    IfStep: _no_rules,
    SplitStep: _check_split,
    LabelStep: _check_label,
    GotoStep: _check_goto,
    ExitStep: _no_rules,
    PassStep: _no_rules,
}


def check_steps(steps: list[Step], ctx: StepContext) -> None:
    for step in steps:
        if isinstance(step, LabelStep):
            ctx.labels.setdefault(step.name, step)
    for step in steps:
        rules = STEP_CHECKS.get(type(step))
        if rules is None:
            raise TypeError(f"dsl.checker.STEP_CHECKS has no rules for step kind {step.kind!r}")
        rules(step, ctx)
