"""Evaluating IR conditions against a user snapshot and an event.

Pure functions: the workflow calls them with data an activity fetched, so each
check is deterministic on replay. ``COND_EVALUATORS`` holds one check per
condition class of ``dsl.ir.Cond`` (``tests/workflows/test_conditions.py``
fails when a kind has none).
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from typing import Any, get_args

from contracts.activities import EventCountQuery, UserSnapshot
from dsl.ir import (
    AndCond,
    CompareCond,
    Cond,
    EventCountCond,
    NotCond,
    OrCond,
    ReachableCond,
    RfmCond,
    StageCond,
    TagCond,
    iter_conds,
)

_MISSING = object()

Event = dict[str, Any] | None
Check = Callable[[Any, UserSnapshot | None, Event], bool]

# every condition class, in the union's order
COND_KINDS: tuple[type, ...] = get_args(get_args(Cond)[0])


class UnknownCondKind(TypeError):
    """A condition class without a check in ``COND_EVALUATORS``."""


def evaluate(cond: Cond, user: UserSnapshot | None, event: Event) -> bool:
    """True when the condition holds. A field that is missing makes its
    comparison false (never an error), as an operator would expect; a fact
    about the user is false without a snapshot (a ``where`` clause sees only
    the event)."""
    check = COND_EVALUATORS.get(type(cond))
    if check is None:
        raise UnknownCondKind(f"no check for condition kind {cond.kind!r} ({type(cond).__name__})")
    return check(cond, user, event)


def _of_user(check: Callable[[Any, UserSnapshot], bool]) -> Check:
    def checked(cond: Any, user: UserSnapshot | None, event: Event) -> bool:
        return user is not None and check(cond, user)

    return checked


def _field(cond: CompareCond, user: UserSnapshot | None, event: Event) -> bool:
    source = (user.attributes if user else {}) if cond.subject == "user" else (event or {})
    return _compare(source.get(cond.field, _MISSING), cond.op, cond.value)


COND_EVALUATORS: dict[type, Check] = {
    AndCond: lambda cond, user, event: all(evaluate(c, user, event) for c in cond.operands),
    OrCond: lambda cond, user, event: any(evaluate(c, user, event) for c in cond.operands),
    NotCond: lambda cond, user, event: not evaluate(cond.operand, user, event),
    CompareCond: _field,
    TagCond: _of_user(lambda cond, user: cond.tag in user.tags),
    StageCond: _of_user(lambda cond, user: user.stage in cond.stages),
    RfmCond: _of_user(lambda cond, user: user.rfm in cond.layers),
    ReachableCond: _of_user(lambda cond, user: cond.channel in user.reachable),
    EventCountCond: _of_user(
        lambda cond, user: _compare(user.event_counts.get(count_query(cond).key, 0), cond.op, cond.value)
    ),
}

# Conditions that read only the event being matched or their operands.
_WITHOUT_USER = (AndCond, OrCond, NotCond)


def count_query(cond: EventCountCond) -> EventCountQuery:
    return EventCountQuery(event=cond.event, within_seconds=cond.within_seconds)


def count_queries(cond: Cond | None) -> list[EventCountQuery]:
    """The event counts a condition needs, so the snapshot fetches just those."""
    return [count_query(c) for c in iter_conds(cond) if isinstance(c, EventCountCond)]


def needs_user(cond: Cond | None) -> bool:
    """Whether evaluating needs the user's snapshot (not only the event)."""
    return any(not isinstance(c, _WITHOUT_USER) and not _is_event_compare(c) for c in iter_conds(cond))


def _is_event_compare(cond: Cond) -> bool:
    return isinstance(cond, CompareCond) and cond.subject == "event"


_ORDERINGS: dict[str, Callable[[Any, Any], bool]] = {
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}


def _compare(actual: Any, op: str, expected: Any) -> bool:
    if actual is _MISSING or actual is None:
        return op == "!=" or op == "not in"
    if op in ("in", "not in"):
        values = expected if isinstance(expected, list) else [expected]
        found = any(_equal(actual, v) for v in values)
        return found if op == "in" else not found
    if op == "==":
        return _equal(actual, expected)
    if op == "!=":
        return not _equal(actual, expected)
    ordering = _ORDERINGS.get(op)
    if ordering is None:
        raise ValueError(f"unknown operator {op}")
    left, right = _coerce_pair(actual, expected)
    try:
        return ordering(left, right)
    except TypeError:
        return False


def _equal(actual: Any, expected: Any) -> bool:
    left, right = _coerce_pair(actual, expected)
    return left == right


def _coerce_pair(actual: Any, expected: Any) -> tuple[Any, Any]:
    """Event properties often arrive as strings ("99.0"); compare numbers as
    numbers when the journey wrote a number."""
    if isinstance(expected, bool) or isinstance(actual, bool):
        return actual, expected
    if isinstance(expected, (int, float)) and isinstance(actual, str):
        try:
            return float(actual), float(expected)
        except ValueError:
            return actual, str(expected)
    if isinstance(expected, str) and isinstance(actual, (int, float)):
        return str(actual), expected
    return actual, expected
