"""The CLI through ``dsl.cli.main`` and the ``journeys`` dispatcher."""

from __future__ import annotations

from pathlib import Path

import pytest

from api.cli import main as journeys_main
from dsl.cli import main

from .support import EXAMPLES, HERE, ROOT


def test_check_examples_directory(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", str(ROOT / "journeys")]) == 0
    out = capsys.readouterr().out
    assert f"checked {len(EXAMPLES)} files: 0 error(s)" in out


def test_check_reports_every_error_and_fails(capsys: pytest.CaptureFixture[str]) -> None:
    path = HERE / "err" / "many_syntax_errors.journey"
    assert main(["check", str(path), str(EXAMPLES[0])]) == 1
    out = capsys.readouterr().out
    assert out.count("error[") >= 8
    assert f"{path}:4:" in out and "    hint:" in out and "^" in out
    assert "checked 2 files" in out


def test_check_warnings_do_not_fail(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "w.journey"
    path.write_text('journey "w"\n  wait for event a\n', encoding="utf-8")
    assert main(["check", str(path)]) == 0
    assert "warning[W302]" in capsys.readouterr().out


def test_check_global_limit(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "g.journey"
    path.write_text('journey "g"\n  send sms "a"\n  send sms "b"\n', encoding="utf-8")
    assert main(["check", "--global-daily-limit", "1", str(path)]) == 0
    assert "warning[W304]" in capsys.readouterr().out


def test_check_missing_path(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", "/no/such/file.journey"]) == 1
    assert "no such file" in capsys.readouterr().out


def test_fmt_prints_writes_and_checks(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "f.journey"
    path.write_text('journey "f"\n  wait   36h # soon\n', encoding="utf-8")
    assert main(["fmt", str(path)]) == 0
    printed = capsys.readouterr().out
    assert "  wait 1d12h  # soon\n" in printed
    assert main(["fmt", "--check", str(path)]) == 1
    assert main(["fmt", "--write", str(path)]) == 0
    assert path.read_text(encoding="utf-8") == printed
    assert main(["fmt", "--check", str(path)]) == 0


def test_fmt_refuses_broken_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "b.journey"
    path.write_text('journey "b"\n  sned sms "a"\n', encoding="utf-8")
    assert main(["fmt", "--write", str(path)]) == 1
    assert "E107" in capsys.readouterr().out
    assert "sned" in path.read_text(encoding="utf-8")


def test_graph_uses_the_renderer(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import types

    fake = types.ModuleType("dsl.render")
    fake.to_mermaid = lambda journey: f"flowchart TD\n  %% {journey.name}"  # type: ignore[attr-defined]
    fake.to_svg = lambda journey, counts=None: "<svg/>"  # type: ignore[attr-defined]
    monkeypatch.setitem(__import__("sys").modules, "dsl.render", fake)
    import dsl

    monkeypatch.setattr(dsl, "render", fake, raising=False)
    assert main(["graph", "--mermaid", str(EXAMPLES[0])]) == 0
    assert "flowchart TD" in capsys.readouterr().out
    out = tmp_path / "g.svg"
    assert main(["graph", str(EXAMPLES[0]), "-o", str(out)]) == 0
    assert out.read_text(encoding="utf-8") == "<svg/>"


def test_journeys_dispatcher_has_dsl_commands(capsys: pytest.CaptureFixture[str]) -> None:
    assert journeys_main(["check", str(EXAMPLES[0])]) == 0
    with pytest.raises(SystemExit):
        journeys_main(["--help"])
    assert "check" in capsys.readouterr().out
