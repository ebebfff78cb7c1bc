"""Evaluating IR conditions against a user snapshot and an event.

Pure functions: the workflow calls them with data an activity fetched, so each
check is deterministic on replay.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

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
)

_MISSING = object()


def evaluate(cond: Cond, user: UserSnapshot | None, event: dict[str, Any] | None) -> bool:
    """True when the condition holds. A field that is missing makes its
    comparison false (never an error), as an operator would expect."""
    if isinstance(cond, AndCond):
        return all(evaluate(c, user, event) for c in cond.operands)
    if isinstance(cond, OrCond):
        return any(evaluate(c, user, event) for c in cond.operands)
    if isinstance(cond, NotCond):
        return not evaluate(cond.operand, user, event)
    if isinstance(cond, CompareCond):
        source = (user.attributes if user else {}) if cond.subject == "user" else (event or {})
        return _compare(source.get(cond.field, _MISSING), cond.op, cond.value)
    if user is None:
        return False
    if isinstance(cond, TagCond):
        return cond.tag in user.tags
    if isinstance(cond, StageCond):
        return user.stage in cond.stages
    if isinstance(cond, RfmCond):
        return user.rfm in cond.layers
    if isinstance(cond, ReachableCond):
        return cond.channel in user.reachable
    if isinstance(cond, EventCountCond):
        count = user.event_counts.get(count_query(cond).key, 0)
        return _compare(count, cond.op, cond.value)
    raise TypeError(f"unknown condition {cond!r}")


def count_query(cond: EventCountCond) -> EventCountQuery:
    return EventCountQuery(event=cond.event, within_seconds=cond.within_seconds)


def count_queries(cond: Cond | None) -> list[EventCountQuery]:
    """The event counts a condition needs, so the snapshot fetches just those."""
    return [count_query(c) for c in _walk(cond) if isinstance(c, EventCountCond)]


def needs_user(cond: Cond | None) -> bool:
    """Whether evaluating needs the user's snapshot (not only the event)."""
    return any(not isinstance(c, (AndCond, OrCond, NotCond)) and not _is_event_compare(c) for c in _walk(cond))


def _is_event_compare(cond: Cond) -> bool:
    return isinstance(cond, CompareCond) and cond.subject == "event"


def _walk(cond: Cond | None) -> Iterator[Cond]:
    if cond is None:
        return
    yield cond
    if isinstance(cond, (AndCond, OrCond)):
        for c in cond.operands:
            yield from _walk(c)
    elif isinstance(cond, NotCond):
        yield from _walk(cond.operand)


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
    left, right = _coerce_pair(actual, expected)
    try:
        if op == "<":
            return left < right
        if op == "<=":
            return left <= right
        if op == ">":
            return left > right
        if op == ">=":
            return left >= right
    except TypeError:
        return False
    raise ValueError(f"unknown operator {op}")


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
