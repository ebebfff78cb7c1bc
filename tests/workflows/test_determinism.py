"""Workflow code must be deterministic: replaying a history has to issue the
same commands. ``JourneyWorkflow`` runs outside Temporal's sandbox (see
``workflows/journey.py``), so this test is the guard the sandbox would have
been: it reads the source of every module the workflows execute and refuses
wall-clock time, randomness, sleeping, threads and I/O. Time, randomness and
waiting go through ``workflow.now()``, ``workflow.random()`` and
``workflow.wait_condition``; anything else goes through an activity."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
# The modules a workflow task executes: all of workflows/ and contracts/, and
# the dsl modules that build and read the journey.
WORKFLOW_MODULES = sorted(
    [str(p.relative_to(ROOT)) for package in ("workflows", "contracts") for p in (ROOT / package).glob("*.py")]
    + ["dsl/graph.py", "dsl/ir.py"]
)


def test_the_list_has_every_module_a_workflow_loads() -> None:
    """The interpreter is split into several modules: each one it imports
    (here or in a module added later) is in the list the guard reads."""
    import sys

    import workflows.broadcast
    import workflows.journey  # noqa: F401  (loads the interpreter and what it imports)

    loaded = {
        str(Path(module.__file__).resolve().relative_to(ROOT))
        for name, module in list(sys.modules.items())
        if name.split(".")[0] in ("workflows", "contracts") and getattr(module, "__file__", None)
    }
    assert "workflows/step_handlers.py" in loaded
    assert sorted(loaded - set(WORKFLOW_MODULES)) == []


FORBIDDEN_IMPORTS = {
    "random",
    "uuid",
    "os",
    "time",
    "threading",
    "socket",
    "subprocess",
    "secrets",
    "httpx",
    "sqlalchemy",
}
FORBIDDEN_CALLS = {
    "datetime.now": "use workflow.now()",
    "datetime.utcnow": "use workflow.now()",
    "datetime.today": "use workflow.now()",
    "date.today": "use workflow.now()",
    "asyncio.sleep": "use workflow.sleep() or workflow.wait_condition()",
    "open": "I/O belongs in an activity",
    "print": "use workflow.logger",
    "input": "I/O belongs in an activity",
}
# Our packages a workflow module may import: pure code, no I/O at import or call.
# Activities are called by name (contracts.names), so nothing of engine/.
ALLOWED_OWN = ("dsl", "workflows", "contracts")
OWN_PACKAGES = ("dsl", "workflows", "contracts", "engine", "runtime", "api")


def violations(source: str, filename: str = "<src>") -> list[str]:
    found: list[str] = []
    tree = ast.parse(source, filename)
    for node in ast.walk(tree):
        if isinstance(node, ast.Import | ast.ImportFrom):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
            for name in names:
                top = name.split(".")[0]
                if top in FORBIDDEN_IMPORTS:
                    found.append(f"{filename}:{node.lineno}: imports {name}")
                if top in OWN_PACKAGES and top not in ALLOWED_OWN:
                    found.append(f"{filename}:{node.lineno}: imports {name} (I/O code; call it through an activity)")
        elif isinstance(node, ast.Call):
            func = node.func
            dotted = (
                func.id
                if isinstance(func, ast.Name)
                else f"{func.value.id}.{func.attr}"
                if isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name)
                else None
            )
            if dotted in FORBIDDEN_CALLS:
                found.append(f"{filename}:{node.lineno}: calls {dotted}() ({FORBIDDEN_CALLS[dotted]})")
    return found


@pytest.mark.parametrize("module", WORKFLOW_MODULES)
def test_workflow_modules_use_no_clock_randomness_or_io(module: str) -> None:
    path = ROOT / module
    assert violations(path.read_text(encoding="utf-8"), module) == []


def test_the_guard_catches_what_the_sandbox_would() -> None:
    bad = """
import random
from datetime import datetime
import asyncio
from engine.store import Store
from engine.activities import JourneyActivities

async def step():
    when = datetime.now()
    await asyncio.sleep(1)
    return random.random(), open("x")
"""
    found = "\n".join(violations(bad))
    for expected in (
        "imports random",
        "imports engine.store",
        "imports engine.activities",
        "calls datetime.now()",
        "calls asyncio.sleep()",
    ):
        assert expected in found
    assert "calls open()" in found


def test_journey_workflow_is_the_unsandboxed_one() -> None:
    from temporalio.workflow import _Definition

    from workflows.broadcast import AudienceBroadcastWorkflow
    from workflows.journey import JourneyWorkflow

    assert _Definition.must_from_class(JourneyWorkflow).sandboxed is False
    assert _Definition.must_from_class(AudienceBroadcastWorkflow).sandboxed is True
