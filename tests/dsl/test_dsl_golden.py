"""Golden files: ok/*.journey → *.json IR, err/*.journey → *.txt diagnostics.

A missing or different golden fails; regenerate after an intended change
with ``UPDATE_GOLDEN=1 pytest tests/dsl`` and review the diff.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dsl import check, parse

from .support import HERE, assert_golden, diagnostics_text

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
    assert_golden(path.with_suffix(".json"), actual)


@pytest.mark.parametrize("path", ERR, ids=lambda p: p.stem)
def test_err_golden(path: Path) -> None:
    actual = diagnostics_text(_read(path), path.name)
    assert_golden(path.with_suffix(".txt"), actual)


def test_there_are_goldens() -> None:
    """The globs above found the files (a moved folder would leave nothing to compare)."""
    assert len(OK) >= 5 and len(ERR) >= 5


def test_a_missing_or_different_golden_fails(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    golden = tmp_path / "x.json"
    for value in (None, "0", "", "true"):
        if value is None:
            monkeypatch.delenv("UPDATE_GOLDEN", raising=False)
        else:
            monkeypatch.setenv("UPDATE_GOLDEN", value)
        with pytest.raises(AssertionError, match="missing"):
            assert_golden(golden, "a\n")
        assert not golden.exists()
        golden.write_text("b\n", encoding="utf-8")
        with pytest.raises(AssertionError, match="differs"):
            assert_golden(golden, "a\n")
        assert golden.read_text(encoding="utf-8") == "b\n"
        golden.unlink()
    monkeypatch.setenv("UPDATE_GOLDEN", "1")
    assert_golden(golden, "a\n")
    assert golden.read_text(encoding="utf-8") == "a\n"
