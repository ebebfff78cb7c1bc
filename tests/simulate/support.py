"""Helpers of the simulation tests: the examples' test files, goldens."""

from __future__ import annotations

import difflib
import os
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
JOURNEYS = ROOT / "journeys"
GOLDEN = Path(__file__).resolve().parent / "golden"


def assert_golden(path: Path, actual: str) -> None:
    """``actual`` must equal the committed ``path``; a missing or different
    golden fails. Only ``UPDATE_GOLDEN=1`` writes it (review, then commit)."""
    if os.environ.get("UPDATE_GOLDEN") == "1":
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(actual, encoding="utf-8")
        return
    if not path.exists():
        raise AssertionError(f"golden file {path} is missing; write it with UPDATE_GOLDEN=1, review and commit it")
    expected = path.read_text(encoding="utf-8")
    diff = "".join(difflib.unified_diff(expected.splitlines(True), actual.splitlines(True), "golden", "actual"))
    assert actual == expected, f"{path} differs; if the change is intended, regenerate it with UPDATE_GOLDEN=1\n{diff}"
