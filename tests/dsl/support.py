"""Shared helpers for the language tests."""

from __future__ import annotations

import difflib
import os
from pathlib import Path
from typing import Any

from dsl import check, parse
from dsl.errors import JourneyError
from dsl.ir import Journey, _strip_spans

HERE = Path(__file__).parent
ROOT = HERE.parents[1]
EXAMPLES = sorted((ROOT / "journeys").glob("*.journey"))


def updating_goldens() -> bool:
    """``UPDATE_GOLDEN=1`` exactly (read at each comparison): only then are
    golden files written; ``0``, empty or anything else compares."""
    return os.environ.get("UPDATE_GOLDEN") == "1"


def assert_golden(path: Path, actual: str) -> None:
    """``actual`` must equal the committed golden file ``path``. A missing or
    different golden fails; with ``UPDATE_GOLDEN=1`` the file is written
    instead (review the diff, then commit it)."""
    if updating_goldens():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(actual.encode("utf-8"))
        return
    if not path.exists():
        raise AssertionError(f"golden file {path} is missing; write it with UPDATE_GOLDEN=1, review and commit it")
    expected = path.read_bytes().decode("utf-8")
    if actual != expected:
        diff = "".join(difflib.unified_diff(expected.splitlines(True), actual.splitlines(True), "golden", "actual"))
        raise AssertionError(f"{path} differs; if the change is intended, regenerate it with UPDATE_GOLDEN=1\n{diff}")


def content(journey: Journey) -> Any:
    """The IR without spans: what must survive formatting."""
    return _strip_spans(journey.model_dump(mode="json"))


def diagnostics_text(source: str, filename: str) -> str:
    """Every diagnostic of a file as the CLI renders it (parse errors, or else
    the checker's errors and warnings)."""
    try:
        journey = parse(source, filename)
    except JourneyError as exc:
        return exc.render() + "\n"
    return "\n".join(d.render(source, filename) for d in check(journey, source, filename)) + "\n"
