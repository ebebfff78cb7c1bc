"""The condition evaluator the interpreter and the audience selection share:
one check per condition kind, conditions written as operators write them."""

from __future__ import annotations

import pytest

from contracts.activities import EventCountQuery, UserSnapshot
from contracts.conditions import COND_EVALUATORS, COND_KINDS, UnknownCondKind, count_queries, evaluate, needs_user
from dsl.ir import Cond, TagCond
from tests.workflows.support import journey

USER = UserSnapshot(
    user_id="u1",
    tags=["visited", "vip"],
    attributes={"city": "上海", "age": 31},
    stage="active",
    rfm="high",
    reachable=["push", "webhook"],
    event_counts={EventCountQuery(event="order_paid", within_seconds=30 * 86400).key: 3},
)
EVENT = {"amount": "99.5", "sku": "A-1", "_name": "order_paid"}


def cond(text: str) -> Cond:
    ir = journey(f'journey "c"\n  if {text}:\n    pass\n')
    return ir.steps[0].branches[0].cond


@pytest.mark.parametrize("kind", COND_KINDS, ids=[k.__name__ for k in COND_KINDS])
def test_every_condition_kind_has_a_check(kind: type) -> None:
    assert kind in COND_EVALUATORS, f"contracts.conditions.COND_EVALUATORS has no check for {kind.__name__}"


def test_a_kind_without_a_check_fails_loudly(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delitem(COND_EVALUATORS, TagCond)
    with pytest.raises(UnknownCondKind, match="'tag'"):
        evaluate(TagCond(tag="x"), USER, None)


@pytest.mark.parametrize(
    ("text", "holds"),
    [
        ("tag visited", True),
        ("tag ordered", False),
        ("not tag ordered", True),
        ("tag visited and tag vip", True),
        ("tag ordered or tag vip", True),
        ("tag ordered or not tag vip", False),
        ('user.city == "上海"', True),
        ("user.age >= 30", True),
        ("user.age < 30", False),
        ('user.missing != "x"', True),
        ('user.missing == "x"', False),
        ("event.amount > 99", True),  # "99.5" from an event compares as a number
        ('event.sku in ["A-1", "B-2"]', True),
        ('event.sku not in ["A-1"]', False),
        ("stage is active", True),
        ("stage in [silent, churned]", False),
        ("rfm is high", True),
        ("reachable push", True),
        ("reachable sms", False),
        ("count order_paid within 30d >= 2", True),
        ("count order_paid within 30d > 3", False),
        ("count order_paid >= 1", False),  # a count the snapshot was not asked for is 0
    ],
)
def test_conditions_on_a_user_and_an_event(text: str, holds: bool) -> None:
    assert evaluate(cond(text), USER, EVENT) is holds


@pytest.mark.parametrize(("text", "holds"), [("tag visited", False), ("event.amount > 99", True)])
def test_without_a_snapshot_only_the_event_counts(text: str, holds: bool) -> None:
    assert evaluate(cond(text), None, EVENT) is holds


def test_what_a_condition_needs_fetched() -> None:
    assert not needs_user(cond('event.amount > 1 and not event.sku == "x"'))
    assert needs_user(cond("event.amount > 1 or tag vip"))
    assert count_queries(cond("tag vip and (count viewed within 7d > 1 or count order_paid > 0)")) == [
        EventCountQuery(event="viewed", within_seconds=7 * 86400),
        EventCountQuery(event="order_paid"),
    ]
