"""The language's bounds (dsl.limits): each one is a diagnostic with a code,
a line, a column and a hint, never another exception, and a journey right at
a bound still compiles, survives JSON (as it travels to the store and to
Temporal) and formats back to itself."""

from __future__ import annotations

from pathlib import Path

import pytest
from temporalio.contrib.pydantic import pydantic_data_converter

from contracts.runs import JourneyInput
from dsl import check, compile_source, format_journey, parse
from dsl.cli import main
from dsl.errors import Diagnostic, JourneyError
from dsl.ir import Branch, IfStep, Journey, SendStep, Step, TagCond
from dsl.limits import MAX_DEPTH, MAX_DURATION_SECONDS, MAX_LINES, MAX_NUMBER_DIGITS, MAX_SOURCE_CHARS
from dsl.render import to_mermaid, to_svg


def errors(source: str) -> list[Diagnostic]:
    with pytest.raises(JourneyError) as caught:
        parse(source)
    caught.value.render().encode("utf-8")  # what the CLI prints can always be written out
    return caught.value.diagnostics


def codes(source: str) -> list[str]:
    return [d.code for d in errors(source)]


def nested_ifs(levels: int, indent: str = "  ", cond: str = "not tag") -> str:
    lines = ['journey "deep"']
    lines += [indent * (i + 1) + f"if {cond} t{i}:" for i in range(levels)]
    lines.append(indent * (levels + 1) + 'send sms "inner"')
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------- nesting


def test_a_journey_at_the_depth_limit_compiles_round_trips_and_formats() -> None:
    source = nested_ifs(MAX_DEPTH)
    journey = compile_source(source)
    assert Journey.model_validate_json(journey.model_dump_json()) == journey
    assert format_journey(parse(format_journey(journey))) == format_journey(journey)
    assert "inner" in to_svg(journey) and "inner" in to_mermaid(journey)
    innermost = journey.steps[0]
    for _ in range(MAX_DEPTH - 1):
        assert isinstance(innermost, IfStep)
        innermost = innermost.branches[0].steps[0]
    assert innermost.id == "if-not-t31"


def test_a_journey_at_the_depth_limit_survives_the_workers_data_converter() -> None:
    journey = compile_source(nested_ifs(MAX_DEPTH))
    run = JourneyInput(journey_id="j", version=1, hash=journey.content_hash(), user_id="u", ir=journey)
    converter = pydantic_data_converter.payload_converter
    (back,) = converter.from_payloads(converter.to_payloads([run]), [JourneyInput])
    assert back.ir == journey


def test_one_level_more_is_a_language_error_at_the_first_step_too_deep() -> None:
    source = nested_ifs(MAX_DEPTH + 1, cond="tag")
    (diag,) = errors(source)
    assert diag.code == "E131" and "more than 32 levels" in diag.message and diag.hint
    assert diag.line == MAX_DEPTH + 3  # the journey line, 33 ifs, then the send
    assert source.split("\n")[diag.line - 1][diag.column - 1 :] == 'send sms "inner"'


@pytest.mark.parametrize("levels", [250, 600])
def test_far_deeper_nesting_is_the_same_error_not_a_recursion_error(levels: int) -> None:
    assert codes(nested_ifs(levels, indent="\t", cond="tag")) == ["E131"]


def test_conditions_count_towards_the_same_depth() -> None:
    assert codes('journey "x"\n  if ' + "not " * (MAX_DEPTH + 1) + 'tag a:\n    send sms "a"\n') == ["E131"]
    parse('journey "x"\n  if ' + "not " * MAX_DEPTH + 'tag a:\n    send sms "a"\n')
    parens = "(tag a or " * 40 + "tag b" + ")" * 40
    assert codes(f'journey "x"\n  if {parens}:\n    send sms "a"\n') == ["E131"]
    # the innermost if of a journey at the limit has one level left for its condition
    at_limit = nested_ifs(MAX_DEPTH)
    assert codes(at_limit.replace(f"if not tag t{MAX_DEPTH - 1}:", f"if not not tag t{MAX_DEPTH - 1}:")) == ["E131"]


def test_every_kind_of_block_counts() -> None:
    inner = 'send sms "a"'
    for opener in ("if tag a:", "split:\n{i}  100% A:", "wait for event e up to 1d:\n{i}  on event:"):
        lines = ['journey "x"']
        indent = "  "
        for _ in range(MAX_DEPTH + 1):
            lines.append(indent + opener.format(i=indent))
            indent += "    " if "\n" in opener else "  "
        lines.append(indent + inner)
        assert codes("\n".join(lines) + "\n") == ["E131"], opener


def _ifs(levels: int) -> list[Step]:
    steps: list[Step] = [SendStep(channels=["sms"], template="a", id="send")]
    for level in range(levels):
        steps = [IfStep(id=f"if-{level}", branches=[Branch(cond=TagCond(tag="t"), steps=steps)])]
    return steps


def test_the_checker_refuses_a_journey_built_too_deep_in_code() -> None:
    """The worker only gets IR that ``check`` passed; a journey made in code
    (not parsed) is measured before any recursive walk."""
    assert check(Journey(name="x", steps=_ifs(MAX_DEPTH))) == []
    (diag,) = check(Journey(name="x", steps=_ifs(600)))
    assert diag.code == "E131"


# ---------------------------------------------------------------- numbers and durations


@pytest.mark.parametrize("number", ["9" * 4_301, "9" * (MAX_NUMBER_DIGITS + 1), "1" * 400 + ".5", "-" + "9" * 20])
def test_numbers_with_too_many_digits(number: str) -> None:
    (diag,) = errors(f'journey "x"\n  if user.amount > {number}:\n    send sms "a"\n')
    assert diag.code == "E132" and (diag.line, diag.column) == (2, 20)


def test_numbers_up_to_the_limit_are_read_exactly() -> None:
    journey = parse(f'journey "x"\n  if user.amount > {"9" * 15} and user.x < 1234567.12345678:\n    pass\n')
    cond = journey.steps[0].branches[0].cond  # type: ignore[union-attr]
    assert [c.value for c in cond.operands] == [999_999_999_999_999, 1234567.12345678]  # type: ignore[union-attr]


@pytest.mark.parametrize(
    "line",
    [
        "wait 10000000d",
        "wait 3651d",
        "wait 3650d1s",
        "wait " + "9" * 5_000 + "s",
        "wait for event e up to 99999w",
        "wait until user.birthday - 4000d",
        "if count order_paid within 4000d >= 1: pass",
    ],
)
def test_durations_over_ten_years(line: str) -> None:
    (diag,) = errors(f'journey "x"\n  {line}\n')
    assert diag.code == "E133" and diag.line == 2 and "3650d" in (diag.message + (diag.hint or ""))


def test_header_durations_are_bounded_too() -> None:
    source = 'journey "x"\n  reentry after 4000d\n  goal event e within 4000d\n  limit 3 messages per 4000d\n  pass\n'
    assert [(d.code, d.line) for d in errors(source)] == [("E133", 2), ("E133", 3), ("E133", 4)]


def test_ten_years_is_allowed() -> None:
    journey = compile_source('journey "x"\n  wait 3650d\n  wait 520w\n  send sms "a"\n')
    assert [s.seconds for s in journey.steps[:2]] == [MAX_DURATION_SECONDS, 520 * 7 * 86400]  # type: ignore[union-attr]


# ---------------------------------------------------------------- surrogates


def test_a_lone_surrogate_escape_is_an_error_at_the_escape() -> None:
    (diag,) = errors('journey "x"\n  send sms "ok \\ud800 no"\n')
    assert (diag.code, diag.line, diag.column, diag.end_column) == ("E134", 2, 16, 22)
    assert "U+D800" in diag.message


def test_a_surrogate_pair_written_as_escapes_is_one_character() -> None:
    journey = parse('journey "x"\n  send sms "hi \\ud83d\\ude00"\n')
    assert journey.steps[0].template == "hi 😀"  # type: ignore[union-attr]
    assert codes('journey "x"\n  send sms "\\ude00\\ud83d"\n') == ["E134", "E134"]


def test_raw_surrogates_are_errors_where_they_are_and_the_rest_is_still_checked() -> None:
    source = 'journey "x"\n  description "a\udc80b"\n  send smss "t"\n  # \ud800\n'
    found = [(d.code, d.line, d.column) for d in errors(source)]
    assert found == [("E134", 2, 17), ("E201", 3, 8), ("E134", 4, 5)]


# ---------------------------------------------------------------- size


def test_a_text_over_the_size_limit_is_refused_before_parsing() -> None:
    source = 'journey "x"\n' + "  pass\n" * (MAX_SOURCE_CHARS // 7 + 1)
    (diag,) = errors(source)
    assert diag.code == "E130" and f"{MAX_SOURCE_CHARS:,}" in diag.message


def test_a_text_over_the_line_limit_is_refused_before_parsing() -> None:
    (diag,) = errors('journey "x"\n' + "\n" * MAX_LINES + "  pass\n")
    assert diag.code == "E130" and "lines" in diag.message


def test_the_cli_does_not_read_a_file_far_too_big(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    big = tmp_path / "big.journey"
    big.write_bytes(b'journey "x"\n' + b"#" * (4 * MAX_SOURCE_CHARS + 1))
    assert main(["check", str(big)]) == 1
    assert "error[E130]" in capsys.readouterr().out


def test_the_cli_prints_a_surrogate_error_instead_of_a_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "s.journey"
    path.write_text('journey "x"\n  send sms "\\ud800"\n  wait 10000000d\n', encoding="utf-8")
    assert main(["check", str(path)]) == 1
    out = capsys.readouterr().out
    assert "error[E134]" in out and "error[E133]" in out


def test_a_line_nesting_parentheses_or_nots_too_deep_is_one_error_shown_as_written() -> None:
    parens = 'journey "x"\n  if ' + "(" * 30_000 + "tag a" + ")" * 30_000 + ':\n    send sms "a"\n  send smss "b"\n'
    assert [(d.code, d.line, d.column) for d in errors(parens)] == [("E131", 2, 6 + MAX_DEPTH), ("E201", 4, 8)]
    nots = 'journey "x"\n  if tag a:\n    if ' + "not \t " * 40 + 'tag "(":\n      pass\n'
    with pytest.raises(JourneyError) as caught:
        parse(nots)
    (diag,) = caught.value.diagnostics
    assert diag.code == "E131" and diag.line == 3
    assert caught.value.render().split("\n")[1] == "    " + nots.split("\n")[2]  # the line as written


def test_parentheses_and_nots_in_texts_and_comments_do_not_count() -> None:
    deep = "(" * 40 + "not " * 40
    parse(f'journey "x"\n  send sms "{deep}"  # {deep}\n  # {deep}\n  if ((tag a)):\n    pass\n')


@pytest.mark.parametrize("number", ["0.000000001", "-0.0000001", "123456789012.125"])
def test_numbers_format_back_as_numbers_the_language_reads(number: str) -> None:
    source = f'journey "x"\n  if user.x > {number}:\n    pass\n'
    text = format_journey(parse(source), source)
    assert f"> {number}:" in text and format_journey(parse(text), text) == text


def test_a_raw_surrogate_outside_a_text_is_one_error() -> None:
    assert [(d.code, d.line, d.column) for d in errors('journey "x"\n  \ud800send sms "a"\n')] == [("E134", 2, 3)]
