"""Whatever an operator types, the language answers with a JourneyError or a
journey — never a crash — and what parses also formats and round-trips."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dsl import check, format_journey, parse
from dsl.errors import JourneyError

from .support import EXAMPLES, content

SOURCES = [p.read_text(encoding="utf-8") for p in EXAMPLES]
PIECES = [
    "if ",
    "else:",
    "send ",
    "wait ",
    "until ",
    "event.",
    "user.",
    "- 2h",
    " at ",
    "split:",
    "on event:",
    "on timeout:",
    "goto ",
    "label ",
    "tag add ",
    "coupon ",
    ":",
    '"',
    "#",
    "\n",
    "\n    ",
    "  ",
    "\t",
    "(",
    ")",
    "[",
    "]",
    "%",
    "==",
    "上海",
    "“",
    "\\",
    "1d",
    "10:00",
    "exit",
    "pass",
    "where ",
    "up to ",
    "and ",
    "not ",
]


def _run(source: str) -> None:
    try:
        journey = parse(source)
    except JourneyError as exc:
        assert exc.diagnostics, "a JourneyError always carries diagnostics"
        exc.render()
        return
    check(journey, source, global_daily_limit=3)
    text = format_journey(journey, source)
    assert content(parse(text)) == content(journey)


@st.composite
def mutated(draw: st.DrawFn) -> str:
    source = draw(st.sampled_from(SOURCES))
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["del_char", "ins_char", "ins_piece", "del_line", "dup_line", "swap_lines"]))
        lines = source.split("\n")
        if kind == "del_char" and source:
            i = draw(st.integers(0, len(source) - 1))
            source = source[:i] + source[i + 1 :]
        elif kind == "ins_char":
            i = draw(st.integers(0, len(source)))
            source = source[:i] + draw(st.characters()) + source[i:]
        elif kind == "ins_piece":
            i = draw(st.integers(0, len(source)))
            source = source[:i] + draw(st.sampled_from(PIECES)) + source[i:]
        elif kind == "del_line":
            del lines[draw(st.integers(0, len(lines) - 1))]
            source = "\n".join(lines)
        elif kind == "dup_line":
            i = draw(st.integers(0, len(lines) - 1))
            lines.insert(draw(st.integers(0, len(lines))), lines[i])
            source = "\n".join(lines)
        else:
            i, j = draw(st.integers(0, len(lines) - 1)), draw(st.integers(0, len(lines) - 1))
            lines[i], lines[j] = lines[j], lines[i]
            source = "\n".join(lines)
    return source


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated())
def test_mutated_examples_never_crash(source: str) -> None:
    _run(source)


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=200))
def test_random_text_never_crashes(source: str) -> None:
    _run(source)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from(PIECES + ['journey "x"\n  ', "sms ", '"a"', "tag x", "30m"]), max_size=30))
def test_random_language_pieces_never_crash(pieces: list[str]) -> None:
    _run('journey "x"\n  ' + "".join(pieces))
