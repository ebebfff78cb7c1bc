"""The patch registry (``workflows.patches``) is the whole truth about the
interpreter's patches, and the committed histories follow its removal rule."""

from __future__ import annotations

import ast
import base64
import dataclasses
import importlib
import json
from pathlib import Path

import pytest
from temporalio.client import WorkflowHistory
from temporalio.worker import Replayer

from engine.temporal import DATA_CONVERTER
from tests.workflows.record_histories import HERE
from workflows import patches
from workflows.journey import JourneyWorkflow
from workflows.patches import PATCHES, Stage

ROOT = Path(__file__).resolve().parents[2]
HISTORIES = sorted(HERE.glob("*.json"))
ASKING = {"patched", "deprecate_patch"}  # workflow.* calls that record a patch marker
THROUGH = {"taken", "follows"}  # our calls that take a patch id (workflows.patches.taken, Run.follows)


def patch_calls(source: str, filename: str, module: object) -> list[str]:
    """What each patch call in a workflow module asks for: the id, or
    ``<file:line: …>`` for a call the registry cannot vouch for."""
    found: list[str] = []
    for node in ast.walk(ast.parse(source, filename)):
        if not isinstance(node, ast.Call):
            continue
        name = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", None)
        if name in ASKING and filename != "workflows/patches.py":
            found.append(f"<{filename}:{node.lineno}: workflow.{name} directly: ask workflows.patches.taken>")
        elif name in THROUGH and node.args:
            first = node.args[0]
            if isinstance(first, ast.Constant) and isinstance(first.value, str):
                found.append(first.value)
            elif isinstance(first, ast.Name) and hasattr(module, first.id):
                found.append(getattr(module, first.id))
            elif not (isinstance(first, ast.Name) and first.id in ("patch_id", "patch")):  # handed on
                found.append(f"<{filename}:{node.lineno}: a patch id that is not a constant>")
    return found


def test_every_patch_the_workflows_ask_for_is_registered() -> None:
    asked: set[str] = set()
    for path in sorted((ROOT / "workflows").glob("*.py")):
        name = str(path.relative_to(ROOT))
        module = importlib.import_module(name.removesuffix(".py").replace("/", "."))
        asked.update(patch_calls(path.read_text(encoding="utf-8"), name, module))
    assert sorted(asked - PATCHES.keys()) == []
    assert asked == set(PATCHES)  # and no registered patch is left unused


def test_the_scan_refuses_ids_outside_the_registry() -> None:
    source = 'workflow.patched("sneaky")\nrun.follows("typo-id")\ntaken(LOCAL_EFFECTS)\n'
    assert patch_calls(source, "workflows/x.py", patches) == [
        "<workflows/x.py:1: workflow.patched directly: ask workflows.patches.taken>",
        "typo-id",
        "local-effects",
    ]


def markers(path: Path) -> set[str]:
    """The patch ids a committed history's run took (markers, and what they imply)."""
    found: set[str] = set()
    for event in json.loads(path.read_text())["events"]:
        marker = event.get("markerRecordedEventAttributes")
        if marker and marker["markerName"] == "core_patch":
            data = marker["details"]["patch-data"]["payloads"][0]["data"]
            found.add(json.loads(base64.b64decode(data))["id"])
    for patch_id in list(found):
        found.update(PATCHES[patch_id].implies if patch_id in PATCHES else ())
    return found


def older_than(patch_id: str) -> list[str]:
    return [p.stem for p in HISTORIES if patch_id not in markers(p)]


@pytest.mark.parametrize("patch_id", sorted(PATCHES))
def test_histories_follow_the_removal_rule(patch_id: str) -> None:
    patch = PATCHES[patch_id]
    if patch.stage is Stage.DEPRECATED:
        assert older_than(patch_id) == [], "deprecating a patch retires the histories recorded before it"
    else:
        assert older_than(patch_id), "a patched id must keep a history that replays its old branch"
        assert len(older_than(patch_id)) < len(HISTORIES), "and one that replays its new branch"


async def replays(path: Path) -> bool:
    replayer = Replayer(workflows=[JourneyWorkflow], data_converter=DATA_CONVERTER)
    history = WorkflowHistory.from_json(path.stem, path.read_text())
    return (await replayer.replay_workflow(history, raise_on_replay_failure=False)).replay_failure is None


@pytest.mark.parametrize("patch_id", sorted(PATCHES))
async def test_deprecating_a_patch_breaks_exactly_the_histories_older_than_it(
    patch_id: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Why the rule retires histories (and why a patch waits for the runs that
    predate it to close): with the old branch gone, a run without the marker
    no longer replays, and every run with it still does."""
    monkeypatch.setitem(PATCHES, patch_id, dataclasses.replace(PATCHES[patch_id], stage=Stage.DEPRECATED))
    broken = [path.stem for path in HISTORIES if not await replays(path)]
    assert broken == older_than(patch_id)
