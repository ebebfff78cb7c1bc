"""Imports follow the layers: ``dsl`` ← ``contracts`` ← {``workflows``,
``engine``} ← ``runtime`` ← ``api``.

``workflows/`` (the interpreter, no I/O) and ``engine/`` (activities, store,
channels) are siblings that share ``contracts/``; ``runtime/`` is the
composition root that wires them into a worker; only ``api/`` sits above it.
Every import counts: at module level, inside a function (a lazy import is
still a dependency), under ``TYPE_CHECKING``. A failure names file:line and
the import."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# package -> the packages of ours it may import (besides itself)
ALLOWED: dict[str, frozenset[str]] = {
    "dsl": frozenset(),
    "contracts": frozenset({"dsl"}),
    "workflows": frozenset({"dsl", "contracts"}),
    "engine": frozenset({"dsl", "contracts"}),
    "runtime": frozenset({"dsl", "contracts", "workflows", "engine"}),
    "api": frozenset({"dsl", "contracts", "workflows", "engine", "runtime"}),
}
LAYERS = tuple(ALLOWED)


def imported_modules(tree: ast.AST, package: str) -> list[tuple[int, str]]:
    """(line, absolute module name) of every import in ``tree``; relative
    imports are resolved against ``package`` (the one the module is in)."""
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            parts = package.split(".") if package else []
            base = parts[: len(parts) - node.level + 1] if node.level else []
            name = ".".join([*base, node.module] if node.module else base)
            if name:
                found.append((node.lineno, name))
            else:  # ``from ... import api``: the names are the modules
                found += [(node.lineno, alias.name) for alias in node.names]
    return found


def violations(source: str, filename: str, module: str, package: str | None = None) -> list[str]:
    """``file:line: <module> imports <name> (<layer> may import …)`` for each
    import against the flow. ``package`` is the module's own package (itself
    for an ``__init__``); by default the module's parent."""
    layer = module.split(".")[0]
    allowed = ALLOWED[layer] | {layer}
    package = module.rpartition(".")[0] if package is None else package
    found: list[str] = []
    for line, name in imported_modules(ast.parse(source, filename), package):
        target = name.split(".")[0]
        if target in ALLOWED and target not in allowed:
            may = ", ".join(sorted(ALLOWED[layer])) or "nothing of ours"
            found.append(f"{filename}:{line}: {module} imports {name} ({layer} may import {may})")
    return found


def modules() -> list[tuple[Path, str, str]]:
    """(path, module, package) of every module of every layer."""
    found: list[tuple[Path, str, str]] = []
    for layer in LAYERS:
        for path in sorted((ROOT / layer).rglob("*.py")):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
                package = ".".join(parts)
            else:
                package = ".".join(parts[:-1])
            found.append((path, ".".join(parts), package))
    return found


MODULES = modules()


def test_every_layer_has_modules() -> None:
    assert {module.split(".")[0] for _, module, _ in MODULES} == set(LAYERS)


@pytest.mark.parametrize(("path", "module", "package"), MODULES, ids=[module for _, module, _ in MODULES])
def test_imports_follow_the_layers(path: Path, module: str, package: str) -> None:
    found = violations(path.read_text(encoding="utf-8"), str(path.relative_to(ROOT)), module, package)
    assert not found, "imports against the flow:\n" + "\n".join(found)


BAD = """
from __future__ import annotations
import json
from contracts.runs import UserEvent
import engine.store

def later():
    from api.app import create_app
    from runtime import worker
    return create_app, worker

from . import interpreter
"""


def test_the_scan_catches_imports_against_the_flow() -> None:
    found = violations(BAD, "workflows/bad.py", "workflows.bad")
    assert found == [
        "workflows/bad.py:5: workflows.bad imports engine.store (workflows may import contracts, dsl)",
        "workflows/bad.py:8: workflows.bad imports api.app (workflows may import contracts, dsl)",
        "workflows/bad.py:9: workflows.bad imports runtime (workflows may import contracts, dsl)",
    ]


@pytest.mark.parametrize(
    ("module", "source", "bad"),
    [
        ("dsl.parser", "from contracts import runs", True),
        ("contracts.runs", "from dsl.ir import Journey", False),
        ("contracts.runs", "from workflows import interpreter", True),
        ("engine.activities", "from workflows.interpreter import JourneyInterpreter", True),
        ("engine.store.db", "from .. import ledger", False),  # engine.ledger
        ("engine.store.db", "from ...api import app", True),  # api.app
        ("engine.store.db", "from ... import api", True),
        ("engine.store.db", "from . import models", False),  # engine.store.models
        ("runtime.worker", "from engine.activities import JourneyActivities", False),
        ("runtime.worker", "import api.app", True),
        ("api.app", "from runtime.worker import run_worker", False),
    ],
)
def test_each_rule(module: str, source: str, bad: bool) -> None:
    assert bool(violations(source, "x.py", module)) is bad
