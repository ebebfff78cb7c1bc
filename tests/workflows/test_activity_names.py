"""The workflows call activities by name (``contracts.names``): each
name they call must be registered by the engine's activity objects under
exactly that name, or runs would fail at run time with "activity type not
registered" instead of here."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from temporalio.activity import _Definition

from contracts import names
from engine.activities import JourneyActivities
from engine.broadcast_activities import BroadcastActivities
from tests.workflows.fakes import FakeEngine

ROOT = Path(__file__).resolve().parents[2]
CALLS = {
    f"{verb}_{kind}{suffix}"
    for verb in ("execute", "start")
    for kind in ("activity", "local_activity")
    for suffix in ("", "_method", "_class")
}
# The interpreter's side-effect helper, ``workflows.effects.effect(run,
# names.SEND, ...)``: the name is its second argument.
HELPERS = {"effect"}


def called_names(source: str, filename: str = "<src>") -> list[str]:
    """The activity names a workflow module passes to ``workflow.execute_*``:
    ``names.X`` resolved through ``contracts.names``; anything else
    (a literal, a method reference) is reported as ``<filename:line: ...>`` so
    the test below fails on it."""
    found: list[str] = []
    for node in ast.walk(ast.parse(source, filename)):
        if not isinstance(node, ast.Call):
            continue
        if isinstance(node.func, ast.Attribute) and node.func.attr in CALLS:
            first = node.args[0] if node.args else None
        elif isinstance(node.func, ast.Name) and node.func.id in HELPERS:
            first = node.args[1] if len(node.args) > 1 else None
        else:
            continue
        if isinstance(first, ast.Attribute) and isinstance(first.value, ast.Name) and first.value.id == "names":
            found.append(getattr(names, first.attr, f"<{filename}:{node.lineno}: no such name {first.attr}>"))
        elif isinstance(first, ast.Name) and first.id == "name":
            continue  # ``effect`` handing its parameter on: its callers are scanned
        else:
            found.append(f"<{filename}:{node.lineno}: not called by a contracts.names constant>")
    return found


def registered(activities: list) -> dict[str, object]:
    return {_Definition.must_from_callable(fn).name: fn for fn in activities}


def workflow_calls() -> set[str]:
    calls: set[str] = set()
    for path in sorted((ROOT / "workflows").glob("*.py")):
        calls.update(called_names(path.read_text(encoding="utf-8"), str(path.relative_to(ROOT))))
    return calls


def test_workflows_call_only_names_the_engine_registers(tmp_path) -> None:
    from engine.settings import Settings
    from engine.store import Store

    store = Store(f"sqlite:///{tmp_path / 'names.db'}")
    journey = JourneyActivities(store, {}, Settings())
    engine = registered([*journey.all(), *BroadcastActivities(store, Settings(), snapshots=journey).all()])
    calls = workflow_calls()
    assert calls, "found no activity calls in workflows/"
    assert sorted(calls - engine.keys()) == []


def test_every_name_is_called_and_registered_once() -> None:
    """The constants are the whole list: each is called by a workflow and the
    engine's classes register each one (no stale name, no duplicate)."""
    declared = [*names.JOURNEY_ACTIVITIES, *names.BROADCAST_ACTIVITIES]
    assert len(declared) == len(set(declared))
    assert workflow_calls() == set(declared)
    for cls, expected in (
        (JourneyActivities, names.JOURNEY_ACTIVITIES),
        (BroadcastActivities, names.BROADCAST_ACTIVITIES),
    ):
        defined = [
            _Definition.from_callable(member).name
            for member in vars(cls).values()
            if callable(member) and _Definition.from_callable(member) is not None
        ]
        assert sorted(defined) == sorted(expected), cls.__name__


def test_the_fake_engine_registers_the_interpreter_names() -> None:
    assert set(registered(FakeEngine().all())) == set(names.JOURNEY_ACTIVITIES)


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("await workflow.execute_activity(names.SEND, req)", ["journeys.send"]),
        ("await workflow.execute_local_activity(names.NOPE, req)", ["<m.py:1: no such name NOPE>"]),
        (
            "await workflow.execute_activity_method(JourneyActivities.send, req)",
            ["<m.py:1: not called by a contracts.names constant>"],
        ),
        ("await effect(run, names.ISSUE_COUPON, CouponResult, req)", ["journeys.issue_coupon"]),
        ("await effect(run, SEND, SendResult, req)", ["<m.py:1: not called by a contracts.names constant>"]),
        (
            'await workflow.execute_activity("journeys.sned", req)',
            ["<m.py:1: not called by a contracts.names constant>"],
        ),
    ],
)
def test_the_scan_sees_what_a_workflow_calls(source: str, expected: list[str]) -> None:
    assert called_names(source, "m.py") == expected


def test_a_misspelt_name_fails_the_check() -> None:
    engine = registered(FakeEngine().all())
    calls = {"journeys.send", "journeys.sned"}
    assert sorted(calls - engine.keys()) == ["journeys.sned"]
