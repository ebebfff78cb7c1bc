"""Formatting: parse(fmt(x)) == parse(x), fmt is idempotent, comments survive."""

from __future__ import annotations

from pathlib import Path

import pytest

from dsl import check, format_journey, parse

from .support import EXAMPLES, HERE, content

FILES = EXAMPLES + sorted((HERE / "ok").glob("*.journey"))


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.stem)
def test_roundtrip(path: Path) -> None:
    source = path.read_bytes().decode("utf-8")
    journey = parse(source, path.name)
    for keep_comments in (False, True):
        text = format_journey(journey, source if keep_comments else None)
        again = parse(text)
        assert content(again) == content(journey)
        assert again.content_hash() == journey.content_hash()
        assert [s.id for s in again.steps] == [s.id for s in journey.steps]
        assert format_journey(again, text if keep_comments else None) == text


def test_examples_cover_scenarios_and_pass_check() -> None:
    assert len(EXAMPLES) >= 14
    for path in EXAMPLES:
        source = path.read_text(encoding="utf-8")
        diagnostics = check(parse(source, path.name), source, path.name)
        assert [d for d in diagnostics if d.severity == "error"] == [], path


def test_comments_are_kept_in_place() -> None:
    source = (HERE / "ok" / "comments_crlf.journey").read_text(encoding="utf-8")
    text = format_journey(parse(source), source)
    assert text == (
        "# 开头的注释\n"
        'journey "comments"  # 名字后的注释\n'
        "  entry api\n"
        "  reentry once\n"
        '  timezone "Asia/Shanghai"\n'
        "\n"
        "  # 空行和注释可以在任何地方\n"
        '  send sms "a"  # 行尾注释 with "quotes"\n'
        "  # 缩进不一致的注释也可以\n"
        "  if tag x:  # 注释\n"
        "    # 块里的注释\n"
        '    send sms "b"\n'
        "  # 文件末尾的注释\n"
    )


def test_canonical_text() -> None:
    source = 'journey "x"\n  wait   36h\n  if   tag a and(tag b or tag c) :\n    send sms "a"\n'
    assert format_journey(parse(source)) == (
        'journey "x"\n  entry api\n  reentry once\n  timezone "Asia/Shanghai"\n\n'
        '  wait 1d12h\n  if tag a and (tag b or tag c):\n    send sms "a"\n'
    )


def test_names_that_are_keywords_get_quoted() -> None:
    source = 'journey "x"\n  tag add send, "with space", ok\n  if tag "if":\n    pass\n'
    text = format_journey(parse(source))
    assert 'tag add "send", "with space", ok' in text
    assert 'if tag "if":\n    pass' in text
    assert content(parse(text)) == content(parse(source))
