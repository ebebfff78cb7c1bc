"""Recovery's work is bounded by the characters it re-reads
(``dsl._recovery.REPARSE_BUDGET_CHARS``), counted, not timed: a big file
with many errors shows its first ones and E119 where it stopped looking;
a normal file still shows every error at once."""

from __future__ import annotations

import sys

import pytest

from dsl import _recovery, parse
from dsl._recovery import MAX_SYNTAX_ERRORS, REPARSE_BUDGET_CHARS, Reads, parse_tree
from dsl.errors import Diagnostic, JourneyError
from dsl.limits import MAX_SOURCE_CHARS

from .support import HERE

sys.path.insert(0, str(HERE.parents[1]))
from bench.parse_bench import journey_with_lines  # noqa: E402


def _misspell_sends(source: str, count: int, *, within: int | None = None) -> str:
    """``count`` ``send wecom`` lines misspelt (E107 each), spread evenly over
    the file or over its first ``within`` lines."""
    lines = source.split("\n")
    span = within or len(lines)
    sends = [i for i, line in enumerate(lines[:span]) if line.startswith("  send wecom")]
    assert len(sends) >= count
    for k in range(count):
        i = sends[k * len(sends) // count]
        lines[i] = lines[i].replace("send wecom", "sned wecom")
    return "\n".join(lines)


def _syntax_errors(source: str) -> list[Diagnostic]:
    with pytest.raises(JourneyError) as caught:
        parse(source)
    return caught.value.diagnostics


@pytest.fixture(scope="module")
def big() -> str:
    source = journey_with_lines(10_000)
    assert 250_000 < len(source) <= MAX_SOURCE_CHARS
    return source


def test_a_big_file_with_errors_all_through_it_stops_within_the_budget(big: str) -> None:
    source = _misspell_sends(big, 30)
    reads = Reads()
    tree, _, found = parse_tree(source, reads)
    assert tree is None
    assert reads.chars <= REPARSE_BUDGET_CHARS
    # unbounded, it took 26 parses (25 errors shown, the most at once)
    assert reads.parses < 15
    *shown, stop = found
    assert stop.code == "E119" and "fix these first" in (stop.hint or "")
    assert 3 <= len(shown) < 30 and {d.code for d in shown} == {"E107"}
    assert f"after {len(shown)} syntax errors" in stop.message
    assert stop.line > max(d.line for d in shown)  # where it stopped reading


def test_the_stop_is_the_last_diagnostic_a_parse_reports(big: str) -> None:
    diagnostics = _syntax_errors(_misspell_sends(big, 30))
    assert diagnostics[-1].code == "E119"
    assert [d.code for d in diagnostics].count("E119") == 1


def test_errors_near_the_top_of_a_big_file_are_all_shown(big: str) -> None:
    """A parse reads up to its error, so errors early in a big file cost
    little and the budget does not hide them."""
    reads = Reads()
    _, _, found = parse_tree(_misspell_sends(big, 20, within=400), reads)
    assert [d.code for d in found] == ["E107"] * 20
    assert reads.parses == 21  # one per error, and the clean one


def test_a_small_file_with_20_errors_shows_all_20() -> None:
    source = _misspell_sends(journey_with_lines(400), 20)
    reads = Reads()
    _, _, found = parse_tree(source, reads)
    assert [d.code for d in found] == ["E107"] * 20
    assert reads.parses == 21


def test_more_errors_than_shown_at_once_end_with_e119() -> None:
    source = _misspell_sends(journey_with_lines(600), MAX_SYNTAX_ERRORS + 5)
    diagnostics = _syntax_errors(source)
    assert [d.code for d in diagnostics] == ["E107"] * MAX_SYNTAX_ERRORS + ["E119"]
    assert "the most shown at once" in diagnostics[-1].message


def test_the_budget_counts_what_each_parse_read(monkeypatch: pytest.MonkeyPatch) -> None:
    """With a budget of about two reads of the text, recovery stops after
    two parses — the counter is what bounds the work."""
    source = _misspell_sends(journey_with_lines(400), 10)
    monkeypatch.setattr(_recovery, "REPARSE_BUDGET_CHARS", 2 * len(source))
    reads = Reads()
    _, _, found = parse_tree(source, reads)
    assert found[-1].code == "E119"
    assert reads.chars <= 2 * len(source)
    assert reads.parses == len(found) - 1  # each parse found one error
