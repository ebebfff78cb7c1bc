"""The interpreter has exactly one handler per step kind of the IR."""

from __future__ import annotations

import typing

import pytest

from dsl.ir import STEP_KINDS, PassStep
from workflows.interpreter import STEP_HANDLERS, JourneyInterpreter, UnknownStepKind


def missing_handlers(kinds: typing.Iterable[type], handlers: typing.Mapping[type, object]) -> list[str]:
    return [kind.__name__ for kind in kinds if kind not in handlers]


@pytest.mark.parametrize("kind", STEP_KINDS, ids=[k.__name__ for k in STEP_KINDS])
def test_every_step_kind_has_a_handler_for_its_class(kind: type) -> None:
    handler = STEP_HANDLERS.get(kind)
    assert handler is not None, f"workflows.interpreter.STEP_HANDLERS has no handler for {kind.__name__}"
    accepted = typing.get_type_hints(handler)["step"]
    assert kind in (typing.get_args(accepted) or (accepted,)), f"{handler.__name__} does not take a {kind.__name__}"


def test_no_handler_for_a_kind_the_ir_does_not_have() -> None:
    assert set(STEP_HANDLERS) <= set(STEP_KINDS)


def test_the_check_fails_when_a_kind_is_missing() -> None:
    without_pass = {k: v for k, v in STEP_HANDLERS.items() if k is not PassStep}
    assert missing_handlers(STEP_KINDS, without_pass) == ["PassStep"]
    assert missing_handlers(STEP_KINDS, STEP_HANDLERS) == []


async def test_a_kind_without_handler_fails_loudly(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delitem(STEP_HANDLERS, PassStep)
    interpreter = JourneyInterpreter.__new__(JourneyInterpreter)
    with pytest.raises(UnknownStepKind, match="no handler for step kind 'pass'"):
        await interpreter._execute(PassStep(id="p"))
