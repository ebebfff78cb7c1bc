"""W309: a branch no user can take, because what it asks of the lifecycle
stage and the RFM layer cannot hold together with what is already known of
the user at that moment.

The stage and the layer are both derived from a user's events by the
service's rules (``engine.derived``), and some pairs never occur: with the
default rules R (recency) is high only with a payment in the last 30 days,
which makes the stage ``paying``, so ``entry audience where stage is
silent`` followed by ``if rfm is high:`` is a branch nobody takes. The
pairs that can occur come from the service (``Registry.profiles``); the
language does not know the rules' numbers.

What is known at a step: the audience's condition at the first steps, and
the conditions of the ``if`` branches taken on the way, for as long as no
time passes. (The broadcast judges a user moments before their run reads
them again, so a user whose stage changed in between could still take the
branch: the warning says so.) A step that can hold a run (``waits``: a timer, an awaited
event, a send held by quiet hours), a test split (its runs wait for the
winner) and a label (a ``goto`` may arrive from anywhere) forget it: the
user's stage moves with time. Conditions on anything else (tags,
attributes, counts) are unknown here (Kleene's three values), so the rule
reports only what is false whatever they are.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from dsl._report import Profiles, Report
from dsl.ir import (
    RFM_LAYERS,
    STAGES,
    AndCond,
    AudienceEntry,
    Cond,
    IfStep,
    Journey,
    LabelStep,
    NotCond,
    OrCond,
    RfmCond,
    Span,
    SplitStep,
    StageCond,
    Step,
    iter_conds,
)
from dsl.render_text import describe_cond

Truth = bool | None  # None: depends on what this rule does not look at
AUDIENCE = "the audience's "  # how the hint names what the audience knew


@dataclass(frozen=True)
class _Known:
    cond: Cond
    words: str  # how the hint names it: "the audience: stage is silent", "not RFM is mid"


def _truth(cond: Cond, stage: str, layer: str | None) -> Truth:
    if isinstance(cond, StageCond):
        return stage in cond.stages
    if isinstance(cond, RfmCond):
        return layer is not None and layer in cond.layers
    if isinstance(cond, NotCond):
        inner = _truth(cond.operand, stage, layer)
        return None if inner is None else not inner
    if isinstance(cond, AndCond | OrCond):
        values = [_truth(c, stage, layer) for c in cond.operands]
        decisive = isinstance(cond, OrCond)  # True decides an or, False an and
        if decisive in values:
            return decisive
        return None if None in values else not decisive
    return None


def _about_profile(cond: Cond) -> bool:
    return any(isinstance(c, StageCond | RfmCond) for c in iter_conds(cond))


_EVERY_PROFILE = [(stage, layer) for stage in STAGES for layer in (*RFM_LAYERS, None)]


def _holding(conds: list[Cond], among: Iterable[tuple[str, str | None]]) -> set[tuple[str, str | None]]:
    return {(stage, layer) for stage, layer in among if all(_truth(c, stage, layer) is not False for c in conds)}


def _can_hold(conds: list[Cond], profiles: Profiles) -> bool:
    return bool(_holding(conds, profiles.possible))


def check_same_moment(journey: Journey, profiles: Profiles | None, report: Report) -> None:
    if profiles is None:
        return
    entry = journey.entry
    known = []
    if isinstance(entry, AudienceEntry) and _about_profile(entry.where):
        audience = _Known(entry.where, AUDIENCE + describe_cond(entry.where))
        if not _can_hold([entry.where], profiles):
            _report(report, "this audience selects nobody", [_Known(entry.where, "")], profiles, entry.span)
            return  # every branch would be dead too: one warning says it
        known.append(audience)
    _walk(journey.steps, known, profiles, report)


def _passes_time(step: Step) -> bool:
    return step.waits or (isinstance(step, SplitStep) and step.test is not None)


def _walk(steps: list[Step], known: list[_Known], profiles: Profiles, report: Report) -> list[_Known]:
    """Check the block's branches; what is still known after the block."""
    for step in steps:
        if isinstance(step, LabelStep):
            known = []
        if isinstance(step, IfStep):
            known = _walk_if(step, known, profiles, report)
            continue
        inner = [] if _passes_time(step) else known
        ends = [_walk(block, inner, profiles, report) for block in step.blocks()]
        if _passes_time(step) or not _all_still_know(ends, known):
            known = []
    return known


def _all_still_know(ends: list[list[_Known]], known: list[_Known]) -> bool:
    """Every way through a step still knows what was known before it."""
    return all(end[: len(known)] == known for end in ends)


def _walk_if(step: IfStep, known: list[_Known], profiles: Profiles, report: Report) -> list[_Known]:
    passed: list[_Known] = []  # the earlier branches, not taken
    ends: list[list[_Known]] = []
    arms = [(b.cond, b.steps, b.span or step.span) for b in step.branches]
    for cond, steps, span in arms:
        here = [*known, *passed]
        if _about_profile(cond) and not _can_hold([k.cond for k in here] + [cond], profiles):
            _report(
                report, f"this branch is never taken: {describe_cond(cond)}", [*here, _Known(cond, "")], profiles, span
            )
        else:
            taken = [_Known(cond, describe_cond(cond))] if _about_profile(cond) else []
            ends.append(_walk(steps, here + taken, profiles, report))
        if _about_profile(cond):
            passed.append(_Known(NotCond(operand=cond), "not " + describe_cond(cond)))
    if step.else_steps:
        here = [*known, *passed]
        if passed and not _can_hold([k.cond for k in here], profiles):
            where = step.else_steps[0].span or step.span
            _report(report, "this else is never taken: one of the branches above always holds", here, profiles, where)
        else:
            ends.append(_walk(step.else_steps, here, profiles, report))
    # after the if: what every way through it still knows of the moment before it
    return known if _all_still_know(ends, known) else []


def _report(report: Report, what: str, asked: list[_Known], profiles: Profiles, span: Span | None) -> None:
    """``asked``: what is known, then (words empty) what the branch asks."""
    context = "; ".join(k.words for k in asked if k.words)
    message = f"{what}, as no user can be that here ({context}, at the same moment)" if context else what
    if any(k.words.startswith(AUDIENCE) for k in asked):
        # the broadcast judged the user a moment before the run reads them again
        message += "; only a user whose stage changed since the broadcast chose them could"
    wanted = _holding([k.cond for k in asked], _EVERY_PROFILE)  # the pairs it would take, none possible
    hint = " ".join(profiles.reasons(wanted)) or "under the service's stage and RFM rules no user is ever that"
    report.add("W309", message, span, hint)
