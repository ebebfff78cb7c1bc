"""``catalog.recheck_current``: current versions deployed before today's
bounds (an IR nested past ``MAX_DEPTH``, a duration past the longest) are
found, reported, and — when asked — paused so they admit nobody new."""

from __future__ import annotations

import logging

import pytest

from dsl import compile_source
from dsl.ir import Branch, IfStep, Journey, SendStep, Step, TagCond
from dsl.limits import MAX_DEPTH
from engine import catalog
from engine.store import Store

GOOD = 'journey "good"\n  send sms "hi"\n'


def _deep(levels: int) -> tuple[str, dict]:
    """Text and IR of ``levels`` nested ifs, the IR built in code as an old
    deploy stored it (today's parser refuses the text)."""
    lines = ['journey "deep"'] + ["  " * (i + 1) + f"if tag t{i}:" for i in range(levels)]
    lines.append("  " * (levels + 1) + 'send sms "inner"')
    steps: list[Step] = [SendStep(id="inner", channels=["sms"], template="inner")]
    for i in reversed(range(levels)):
        steps = [IfStep(id=f"if-t{i}", branches=[Branch(cond=TagCond(tag=f"t{i}"), steps=steps)])]
    return "\n".join(lines) + "\n", Journey(name="deep", steps=steps).model_dump(mode="json")


def _publish(store: Store, journey_id: str, source: str, ir: dict, *, draft: bool = False) -> None:
    catalog.publish(store, journey_id, name=journey_id, source=source, ir=ir, hash=journey_id, draft=draft)


def _good(store: Store, journey_id: str) -> None:
    _publish(store, journey_id, GOOD, compile_source(GOOD).model_dump(mode="json"))


def _status(store: Store, journey_id: str) -> str:
    return next(j.status for j in catalog.list_journeys(store) if j.id == journey_id)


def test_a_journey_nested_past_the_bound_is_found_and_paused(store: Store, caplog: pytest.LogCaptureFixture) -> None:
    source, ir = _deep(MAX_DEPTH + 8)
    _publish(store, "deep", source, ir)
    _good(store, "good")
    with caplog.at_level(logging.WARNING, "journeys.engine"):
        (refused,) = catalog.recheck_current(store, pause=True)
    assert refused.journey.id == "deep" and refused.version == 1
    assert "E131" in {d.code for d in refused.errors}
    assert (refused.previous, refused.paused, refused.journey.status) == ("active", True, "paused")
    assert _status(store, "deep") == "paused" and _status(store, "good") == "active"
    assert "journey deep v1" in caplog.text and "paused it" in caplog.text


def test_without_pause_it_only_reports(store: Store) -> None:
    _publish(store, "deep", *_deep(MAX_DEPTH + 1))
    (refused,) = catalog.recheck_current(store)
    assert not refused.paused and _status(store, "deep") == "active"


def test_a_second_recheck_reports_it_again_and_changes_nothing(store: Store) -> None:
    _publish(store, "deep", *_deep(MAX_DEPTH + 1))
    catalog.recheck_current(store, pause=True)
    (again,) = catalog.recheck_current(store, pause=True)
    assert (again.previous, again.paused, again.journey.status) == ("paused", False, "paused")


def test_a_draft_is_reported_not_moved_and_stopped_ones_are_left_alone(store: Store) -> None:
    _publish(store, "draft", *_deep(MAX_DEPTH + 1), draft=True)
    _publish(store, "stopped", *_deep(MAX_DEPTH + 1))
    catalog.set_status(store, "stopped", "stopped")
    refused = catalog.recheck_current(store, pause=True)
    assert [(r.journey.id, r.paused) for r in refused] == [("draft", False)]
    assert _status(store, "draft") == "draft"  # draft → paused is not a transition


def test_a_text_past_todays_bounds_is_refused_even_when_its_ir_checks(store: Store) -> None:
    ir = compile_source('journey "long"\n  wait 3d\n').model_dump(mode="json")
    _publish(store, "long", 'journey "long"\n  wait 10000000d\n', ir)
    (refused,) = catalog.recheck_current(store)
    assert [d.code for d in refused.errors] == ["E133"]


def test_an_ir_the_worker_cannot_read_is_refused(store: Store) -> None:
    _publish(store, "odd", GOOD, {"name": "odd", "steps": [{"kind": "teleport"}]})
    (refused,) = catalog.recheck_current(store)
    assert refused.errors[0].code == "E100" and "cannot be read" in refused.errors[0].message


def test_journeys_that_pass_are_not_reported(store: Store) -> None:
    _good(store, "good")
    _publish(store, "edge", *_deep(MAX_DEPTH - 1))
    assert catalog.recheck_current(store, pause=True) == []
