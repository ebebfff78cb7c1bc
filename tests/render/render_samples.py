"""Journeys for the diagram tests, built straight from the IR (no parser)."""

from __future__ import annotations

from dsl.ir import (
    AndCond,
    AudienceEntry,
    Branch,
    CompareCond,
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
    SplitStep,
    StageCond,
    TagCond,
    TagStep,
    Variant,
    WaitDateStep,
    WaitEventStep,
    WaitEventTimeStep,
    WaitStep,
    WaitUntilStep,
)

DAY = 86400


def sample_journey() -> Journey:
    """Every step kind, nested blocks, a goto loop, Chinese text and quotes."""
    return Journey(
        name="新客激活 onboarding",
        description="Welcome new app users & nudge them to a first order",
        entry=EventEntry(
            event="signup",
            where=CompareCond(subject="event", field="channel", op="==", value="app"),
        ),
        reentry=Reentry(mode="after", cooldown_seconds=30 * DAY),
        goal=Goal(event="order_paid", within_seconds=14 * DAY, exit_on_goal=True),
        exits=[ExitRule(event="unsubscribed"), ExitRule(cond=TagCond(tag="blacklisted"))],
        quiet_hours=QuietHours(start="22:00", end="08:00"),
        message_limit=MessageLimit(count=3, window_seconds=DAY),
        steps=[
            SendStep(id="welcome", channels=["wecom", "push", "sms"], best_of=True, template="welcome"),
            CouponStep(
                id="coupon",
                pool="new_user_10",
                out_of_stock=[SendStep(id="sorry", channels=["sms"], template="sorry_no_coupon")],
            ),
            WaitStep(id="wait1", seconds=DAY),
            LabelStep(id="lbl", name="reminder"),
            WaitEventStep(
                id="waitpay",
                event="order_paid",
                where=CompareCond(subject="event", field="amount", op=">=", value=100),
                timeout_seconds=3 * DAY,
                on_event=[
                    TagStep(id="tagpaid", action="add", tags=["paid"]),
                    WaitEventTimeStep(id="delivery", field="delivery_at", offset_seconds=-2 * 3600, time="10:00"),
                    ExitStep(id="done"),
                ],
                on_timeout=[
                    IfStep(
                        id="ifvis",
                        branches=[
                            Branch(
                                cond=AndCond(
                                    operands=[TagCond(tag="visited"), NotCond(operand=TagCond(tag="ordered"))]
                                ),
                                steps=[
                                    SplitStep(
                                        id="split",
                                        variants=[
                                            Variant(
                                                name="A",
                                                percent=40,
                                                steps=[SendStep(id="nudge_a", channels=["sms"], template="nudge_a")],
                                            ),
                                            Variant(
                                                name="B",
                                                percent=40,
                                                steps=[SendStep(id="nudge_b", channels=["push"], template="nudge_b")],
                                            ),
                                            Variant(name="control", percent=20, holdout=True),
                                        ],
                                    )
                                ],
                            ),
                            Branch(
                                cond=CompareCond(subject="user", field="city", op="==", value="上海"),
                                steps=[SendStep(id="sh", channels=["wecom"], template='上海专属 "VIP" <优惠> #1')],
                            ),
                        ],
                        else_steps=[
                            WaitUntilStep(id="monday", time="10:00", weekday=0),
                            GotoStep(id="again", label="reminder"),
                        ],
                    )
                ],
            ),
            WaitDateStep(id="term", attribute="term_start", offset_seconds=-7 * DAY, time="10:00"),
            PassStep(id="pass1"),
        ],
    )


def audience_journey() -> Journey:
    return Journey(
        name="Win back",
        entry=AudienceEntry(
            where=OrCond(
                operands=[
                    StageCond(stages=["silent", "churned"]),
                    AndCond(operands=[RfmCond(layers=["high"]), ReachableCond(channel="push")]),
                ]
            ),
            schedule=Schedule(every="week", time="09:30", weekday=0),
        ),
        steps=[
            IfStep(
                id="cnt",
                branches=[
                    Branch(
                        cond=EventCountCond(event="order_paid", within_seconds=30 * DAY, op=">=", value=2),
                        steps=[SendStep(id="vip", channels=["email"], template="vip")],
                    )
                ],
            ),
            CouponStep(id="c2", pool="winback_20"),
        ],
    )
