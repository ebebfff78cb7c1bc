"""What the parser builds: conditions, durations, strings, spans, errors."""

from __future__ import annotations

import pytest

from dsl import parse
from dsl.errors import JourneyError
from dsl.ir import (
    AndCond,
    AudienceEntry,
    CompareCond,
    EventCountCond,
    EventEntry,
    IfStep,
    NotCond,
    OrCond,
    SendStep,
    SplitStep,
    TagCond,
    WaitDateStep,
    WaitEventStep,
    WaitEventTimeStep,
    WaitStep,
    WaitUntilStep,
)


def one_step(body: str):
    return parse(f'journey "x"\n  {body}\n').steps[0]


def cond_of(text: str):
    step = one_step(f"if {text}:\n    pass")
    assert isinstance(step, IfStep)
    return step.branches[0].cond


def test_precedence_not_and_or() -> None:
    cond = cond_of("not tag a and tag b or tag c")
    assert isinstance(cond, OrCond)
    first = cond.operands[0]
    assert isinstance(first, AndCond)
    assert isinstance(first.operands[0], NotCond)
    assert cond.operands[1] == TagCond(tag="c")


def test_same_operators_are_flattened() -> None:
    cond = cond_of("tag a and (tag b and tag c)")
    assert isinstance(cond, AndCond) and len(cond.operands) == 3


def test_compare_subjects_and_values() -> None:
    assert cond_of('user.city == "上海"') == CompareCond(subject="user", field="city", op="==", value="上海")
    assert cond_of("event.amount >= 10.5").value == 10.5
    assert cond_of("user.vip == true").value is True
    assert cond_of("user.n not in [1, 2]") == CompareCond(subject="user", field="n", op="not in", value=[1, 2])


def test_bare_names_mean_event_properties_in_where() -> None:
    journey = parse('journey "x"\n  entry event paid where amount > 0\n  pass\n')
    assert isinstance(journey.entry, EventEntry)
    assert journey.entry.where == CompareCond(subject="event", field="amount", op=">", value=0)


def test_count_condition() -> None:
    assert cond_of("count order_paid within 30d >= 2") == EventCountCond(
        event="order_paid", within_seconds=30 * 86400, op=">=", value=2
    )


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("30m", 1800), ("2h", 7200), ("3d", 259200), ("1w", 604800), ("1d12h", 129600), ("45s", 45)],
)
def test_durations(text: str, seconds: int) -> None:
    step = one_step(f"wait {text}")
    assert isinstance(step, WaitStep) and step.seconds == seconds


def test_waits() -> None:
    assert one_step("wait until 9:05") == WaitUntilStep(
        id="wait-until-0905", time="09:05", span=one_step("wait until 9:05").span
    )
    step = one_step("wait until sunday 10:00")
    assert isinstance(step, WaitUntilStep) and step.weekday == 6
    step = one_step("wait until user.term_start - 7d at 10:00")
    assert isinstance(step, WaitDateStep)
    assert (step.attribute, step.offset_seconds, step.time) == ("term_start", -7 * 86400, "10:00")
    step = one_step("wait until event.appointment_at - 2h")
    assert isinstance(step, WaitEventTimeStep) and step.id == "wait-until-event-appointment_at-minus-2h"
    assert (step.field, step.offset_seconds, step.time) == ("appointment_at", -7200, None)
    step = one_step("wait until event.live_at + 30m at 9:00")
    assert isinstance(step, WaitEventTimeStep)
    assert (step.field, step.offset_seconds, step.time) == ("live_at", 1800, "09:00")


def test_wait_for_event_branches() -> None:
    step = one_step(
        'wait for event paid where amount > 0 up to 3d:\n    on event: tag add a\n    on timeout:\n      send sms "x"'
    )
    assert isinstance(step, WaitEventStep)
    assert step.timeout_seconds == 3 * 86400 and len(step.on_event) == 1 and len(step.on_timeout) == 1


def test_split_and_holdout() -> None:
    step = one_step('split:\n    40% A: send sms "a"\n    40% B:\n      pass\n    20% holdout')
    assert isinstance(step, SplitStep)
    assert [(v.name, v.percent, v.holdout) for v in step.variants] == [
        ("A", 40, False),
        ("B", 40, False),
        ("holdout", 20, True),
    ]


def test_string_escapes_and_chinese() -> None:
    step = one_step(r'send sms "a\"b\\c\n\t\u4e0a海"')
    assert isinstance(step, SendStep) and step.template == 'a"b\\c\n\t上海'


def test_spans_point_at_the_step() -> None:
    journey = parse('journey "x"\n  # c\n  send sms "a"   # trailing\n  if tag 新:\n    pass\n')
    send, branch = journey.steps
    assert send.span is not None and (send.span.line, send.span.column, send.span.end_column) == (3, 3, 15)
    assert branch.span is not None and (branch.span.line, branch.span.column) == (4, 3)


def test_audience_schedule() -> None:
    journey = parse('journey "x"\n  entry audience where tag vip every tue at 09:30\n  pass\n')
    assert isinstance(journey.entry, AudienceEntry)
    assert (journey.entry.schedule.every, journey.entry.schedule.weekday) == ("week", 1)


def test_all_errors_reported_at_once() -> None:
    with pytest.raises(JourneyError) as info:
        parse('journey "x"\n  sned sms "a"\n  send sms "b"\n  wait 3 days\n  send pigeon "c"\n')
    assert [(d.code, d.line) for d in info.value.diagnostics] == [("E107", 2), ("E111", 4), ("E201", 5)]


def test_error_after_a_broken_block_header_is_still_found() -> None:
    with pytest.raises(JourneyError) as info:
        parse('journey "x"\n  if tag a\n    send sms "a"\n  wait 3\n')
    assert [d.line for d in info.value.diagnostics] == [2, 4]
