"""The shortcuts that make big journeys fast must not change what is built:
IR made without validation, keyword stripping as the tree is built, the
flattened step walk, the paused garbage collector, the grammar cache. Also the
formatter's blank lines and the caret over trailing punctuation."""

from __future__ import annotations

import gc
import os
import sys
from pathlib import Path
from typing import Any

import pytest
from lark.grammar import Terminal

from dsl import _fastmodel, _grammar, _recovery, check, format_journey, parse
from dsl._gc import gc_paused
from dsl.ir import Journey, SendStep, Span, Step, child_blocks, iter_steps

from .support import EXAMPLES, HERE, content, diagnostics_text

sys.path.insert(0, str(HERE.parents[1]))
from bench.parse_bench import journey_with_steps  # noqa: E402

FILES = EXAMPLES + sorted((HERE / "ok").glob("*.journey"))


def _typed(value: Any) -> Any:
    """A dump with every leaf's type next to it: 40 and 40.0 differ."""
    if isinstance(value, dict):
        return {k: _typed(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_typed(v) for v in value]
    return (type(value).__name__, value)


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.stem)
def test_ir_built_without_validation_is_what_validation_gives(path: Path) -> None:
    journey = parse(path.read_bytes().decode("utf-8"), path.name)
    validated = Journey.model_validate(journey.model_dump())
    assert validated == journey
    assert _typed(validated.model_dump()) == _typed(journey.model_dump())
    assert validated.model_dump_json() == journey.model_dump_json()


def test_big_generated_journey_validates_too() -> None:
    journey = parse(journey_with_steps(100))
    validated = Journey.model_validate(journey.model_dump())
    assert _typed(validated.model_dump()) == _typed(journey.model_dump())


def test_unvalidated_models_are_ordinary_models() -> None:
    send = _fastmodel.new(SendStep, channels=["sms"], template="t")
    assert send == SendStep(channels=["sms"], template="t")
    assert send.model_fields_set == {"channels", "template"}
    send.id = "x"  # assignment works as on any model
    assert send.model_dump()["id"] == "x"
    with pytest.raises(TypeError, match="template"):
        _fastmodel.new(SendStep, channels=["sms"])


def test_keywords_only_open_rules() -> None:
    """``Node`` looks for keyword tokens at the start of a node only; a rule
    with a keyword after another child (or in an inlined helper) would keep a
    keyword among its children and lose its start position."""
    for rule in _grammar.lark().rules:
        kept = [s for s in rule.expansion if not (isinstance(s, Terminal) and s.filter_out)]
        places = [i for i, s in enumerate(kept) if isinstance(s, Terminal) and s.name in _grammar.KEYWORD_TERMINALS]
        if not places:
            continue
        assert places == list(range(len(places))), rule
        assert not rule.origin.name.startswith("_"), rule
        assert rule.alias or not rule.options.expand1, rule


def test_tree_nodes_have_no_keyword_children() -> None:
    tree, _, _ = _recovery.parse_tree(journey_with_steps(30))
    assert tree is not None
    for node in tree.iter_subtrees():
        assert type(node.data) is str
        for child in node.children:
            assert not (hasattr(child, "type") and child.type in _grammar.KEYWORD_TERMINALS), node


def _iter_steps_recursive(steps: list[Step]):
    for step in steps:
        yield step
        for block in child_blocks(step):
            yield from _iter_steps_recursive(block)


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.stem)
def test_iter_steps_is_document_order(path: Path) -> None:
    journey = parse(path.read_bytes().decode("utf-8"))
    assert [s.id for s in iter_steps(journey.steps)] == [s.id for s in _iter_steps_recursive(journey.steps)]


def test_gc_paused_restores_the_collector() -> None:
    assert gc.isenabled()
    with gc_paused():
        assert not gc.isenabled()
        with gc_paused():
            assert not gc.isenabled()
        assert not gc.isenabled()
    assert gc.isenabled()
    gc.disable()
    try:
        with gc_paused():
            pass
        assert not gc.isenabled()  # never turns on a collector that was off
    finally:
        gc.enable()
    with pytest.raises(ValueError), gc_paused():
        raise ValueError
    assert gc.isenabled()
    parse('journey "x"\n  pass\n')
    assert gc.isenabled()


@pytest.mark.skipif(not hasattr(os, "getuid"), reason="POSIX only")
def test_grammar_cache_only_in_a_private_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_grammar.tempfile, "gettempdir", lambda: str(tmp_path))
    path = _grammar.cache_file("grammar")
    assert isinstance(path, str) and Path(path).parent.parent == tmp_path
    assert Path(path).parent.stat().st_mode & 0o777 == 0o700
    Path(path).parent.chmod(0o777)  # e.g. made by someone else
    assert _grammar.cache_file("grammar") is False


def test_fmt_keeps_single_blank_lines_between_steps() -> None:
    source = (
        'journey "x"\n'
        '  send sms "a"\n\n\n'
        "  # the second group\n"
        '  send sms "b"\n'
        "  if tag x:\n"
        '    send sms "c"\n\n'
        '    send sms "d"\n\n'
        "  else:\n"
        "    pass\n"
        "  wait 1d\n"
    )
    text = format_journey(parse(source), source)
    assert text.split("\n\n", 1)[1] == (
        '  send sms "a"\n\n'
        "  # the second group\n"
        '  send sms "b"\n'
        "  if tag x:\n"
        '    send sms "c"\n\n'
        '    send sms "d"\n'
        "  else:\n"
        "    pass\n"
        "  wait 1d\n"
    )
    assert format_journey(parse(text), text) == text
    assert content(parse(text)) == content(parse(source))
    assert "\n\n" not in format_journey(parse(source)).split("\n\n", 1)[1]  # no source, no blank lines


def test_caret_covers_closing_punctuation() -> None:
    source = 'journey "x"\n  if (stage is sleeping or tag b) :  # note\n    pass\n'
    text = diagnostics_text(source, "x.journey")
    assert "\n      " + "^" * len("if (stage is sleeping or tag b) :") + "\n" in text
    assert text.count("^") == len("if (stage is sleeping or tag b) :")
    # the IR's span itself is unchanged: it ends at the last word
    step = parse(source).steps[0]
    assert step.span == Span(line=2, column=3, end_line=2, end_column=33)


def test_checker_walks_each_journey_once_per_rule() -> None:
    """A smoke test of the shared analysis: both message bounds on one graph."""
    source = journey_with_steps(50)
    diagnostics = check(parse(source), source, global_daily_limit=1)
    assert {"W303", "W304"} <= {d.code for d in diagnostics}
