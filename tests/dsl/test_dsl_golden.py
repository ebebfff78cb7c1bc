"""Golden files: ok/*.journey → *.json IR, err/*.journey → *.txt diagnostics.

Regenerate after an intended change with ``UPDATE_GOLDEN=1 pytest tests/dsl``
and review the diff.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dsl import check, parse

from .support import HERE, UPDATE, diagnostics_text

OK = sorted((HERE / "ok").glob("*.journey"))
ERR = sorted((HERE / "err").glob("*.journey"))


def _read(path: Path) -> str:
    return path.read_bytes().decode("utf-8")  # keep \r\n as written


@pytest.mark.parametrize("path", OK, ids=lambda p: p.stem)
def test_ok_golden(path: Path) -> None:
    source = _read(path)
    journey = parse(source, path.name)
    assert [d for d in check(journey, source, path.name) if d.severity == "error"] == []
    actual = json.dumps(journey.model_dump(mode="json"), indent=2, ensure_ascii=False) + "\n"
    golden = path.with_suffix(".json")
    if UPDATE or not golden.exists():
        golden.write_text(actual, encoding="utf-8")
    assert actual == golden.read_text(encoding="utf-8")


@pytest.mark.parametrize("path", ERR, ids=lambda p: p.stem)
def test_err_golden(path: Path) -> None:
    actual = diagnostics_text(_read(path), path.name)
    golden = path.with_suffix(".txt")
    if UPDATE or not golden.exists():
        golden.write_text(actual, encoding="utf-8")
    assert actual == golden.read_text(encoding="utf-8")


def test_goldens_exist() -> None:
    """A golden file written on first run must be committed, not regenerated silently."""
    for path in OK:
        assert path.with_suffix(".json").exists(), path
    for path in ERR:
        assert path.with_suffix(".txt").exists(), path
    assert len(OK) >= 5 and len(ERR) >= 5
