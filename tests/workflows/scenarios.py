"""Journeys whose histories are committed for replay tests: together they cover
every step kind the interpreter handles."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from contracts.runs import JourneyInput, UserEvent
from dsl.ir import (
    Branch,
    CouponStep,
    ExitRule,
    Goal,
    GotoStep,
    IfStep,
    Journey,
    LabelStep,
    NotCond,
    QuietHours,
    SendStep,
    SplitStep,
    TagCond,
    TagStep,
    Variant,
    WaitDateStep,
    WaitEventStep,
    WaitStep,
    WaitUntilStep,
)

DAY = 86400


@dataclass
class Scenario:
    input: JourneyInput
    events: list[UserEvent] = field(default_factory=list)
    engine_kwargs: dict[str, Any] = field(default_factory=dict)


def _input(journey: Journey, user: str) -> JourneyInput:
    return JourneyInput(
        journey_id=journey.name,
        version=1,
        hash=journey.content_hash(),
        user_id=user,
        ir=journey,
        search_attributes=False,
    )


EVERY_STEP = Journey(
    name="every-step",
    goal=Goal(event="order_paid", within_seconds=14 * DAY),
    exits=[ExitRule(event="unsubscribed")],
    quiet_hours=QuietHours(start="22:00", end="08:00"),
    steps=[
        SendStep(id="welcome", channels=["wecom"], template="welcome"),
        CouponStep(
            id="coupon", pool="new_user", out_of_stock=[SendStep(id="sorry", channels=["wecom"], template="sorry")]
        ),
        TagStep(id="tag", action="add", tags=["welcomed"]),
        WaitStep(id="wait-1d", seconds=DAY),
        WaitUntilStep(id="wait-10", time="10:00"),
        WaitDateStep(id="wait-date", attribute="term_start", offset_seconds=-7 * DAY),
        LabelStep(id="top", name="top"),
        WaitEventStep(
            id="wait-order",
            event="order_paid",
            timeout_seconds=3 * DAY,
            on_event=[GotoStep(id="again", label="top")],
            on_timeout=[
                IfStep(
                    id="if",
                    branches=[Branch(cond=NotCond(operand=TagCond(tag="ordered")), steps=[])],
                    else_steps=[],
                ),
                SplitStep(
                    id="split",
                    variants=[
                        Variant(name="A", percent=50, steps=[SendStep(id="a", channels=["sms"], template="a")]),
                        Variant(
                            name="B",
                            percent=50,
                            steps=[SendStep(id="b", channels=["push", "sms"], best_of=True, template="b")],
                        ),
                    ],
                ),
            ],
        ),
    ],
)

SCENARIOS: dict[str, Scenario] = {
    "every_step": Scenario(
        input=_input(EVERY_STEP, "u1"),
        events=[UserEvent(id="e1", name="viewed")],
        engine_kwargs={"stock": {"new_user": 0}},
    ),
}
