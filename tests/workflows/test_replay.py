"""Committed histories replay against the current interpreter: a change to its
command sequence that is not gated by ``workflow.patched`` fails here. The
newest history of the scenario runs every step kind of the IR, so each
handler's commands are pinned by a recording."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from temporalio.client import WorkflowHistory
from temporalio.worker import Replayer

from contracts.runs import JourneyInput
from dsl.graph import build_graph
from dsl.ir import STEP_KINDS, Journey, iter_steps
from engine.temporal import DATA_CONVERTER
from tests.workflows.record_histories import HERE, play
from tests.workflows.scenarios import SCENARIOS
from workflows.journey import JourneyWorkflow

HISTORIES = sorted(HERE.glob("*.json"))
SCENARIO = "every_step"


def label_number(path: Path) -> int:
    match = re.fullmatch(r".*\.v(\d+)", path.stem)
    assert match, f"{path.name}: histories are named <scenario>.v<N>.json"
    return int(match.group(1))


def newest(scenario: str) -> Path:
    return max(HERE.glob(f"{scenario}.v*.json"), key=label_number)


def load(path: Path) -> WorkflowHistory:
    return WorkflowHistory.from_json(path.stem, path.read_text())


def started_with(history: WorkflowHistory) -> JourneyInput:
    payloads = history.events[0].workflow_execution_started_event_attributes.input.payloads
    (inp,) = DATA_CONVERTER.payload_converter.from_payloads(payloads, [JourneyInput])
    return inp


def missing_kinds(kinds: set[type]) -> list[str]:
    return [kind.__name__ for kind in STEP_KINDS if kind not in kinds]


def kinds_in(ir: Journey) -> set[type]:
    return {type(step) for step in iter_steps(ir.steps)}


def test_there_are_histories_to_replay():
    assert HISTORIES, "record them with: python -m tests.workflows.record_histories"


@pytest.mark.parametrize("path", HISTORIES, ids=[p.stem for p in HISTORIES])
async def test_replay(path: Path):
    replayer = Replayer(workflows=[JourneyWorkflow], data_converter=DATA_CONVERTER)
    result = await replayer.replay_workflow(load(path), raise_on_replay_failure=True)
    assert result.replay_failure is None


def test_the_newest_history_has_every_step_kind():
    path = newest(SCENARIO)
    missing = missing_kinds(kinds_in(started_with(load(path)).ir))
    assert missing == [], (
        f"{path.name} has no {', '.join(missing)}: add them to tests/workflows/scenarios.py and record "
        f"python -m tests.workflows.record_histories v{label_number(path) + 1}"
    )


def test_the_kind_check_fails_for_an_older_history():
    """v4 was recorded before exit, pass and wait_event_time were in the scenario."""
    older = started_with(load(HERE / f"{SCENARIO}.v4.json")).ir
    assert missing_kinds(kinds_in(older)) == ["WaitEventTimeStep", "ExitStep", "PassStep"]


def test_the_newest_history_is_a_recording_of_the_scenario():
    recorded = started_with(load(newest(SCENARIO))).ir
    assert recorded.content_hash() == SCENARIOS[SCENARIO].input.ir.content_hash(), (
        "the scenario changed since its newest history was recorded: record a new one"
    )


async def test_the_scenario_runs_every_step_kind(ts_env):
    """Not just present in the journey: each kind's handler ran (every handler
    writes a step record under its node id)."""
    scenario = SCENARIOS[SCENARIO]
    engine, _ = await play(ts_env.client, scenario, "coverage-every-step", "tq-coverage")
    nodes = build_graph(scenario.input.ir).nodes
    ran = {type(nodes[record.node_id]) for record in engine.records if record.node_id in nodes}
    assert missing_kinds(ran) == []
