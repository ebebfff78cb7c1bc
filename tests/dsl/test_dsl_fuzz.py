"""Fuzzing the language with what broke it (issue 13): unpaired surrogates,
the characters other tools take for line breaks, deep nesting, huge numbers
and durations. ``parse`` raises only ``JourneyError``, its report can always
be printed, every caret is on the line it names (lines end at ``\\n``), and
``format_journey`` is idempotent."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dsl import check, format_journey, parse
from dsl.errors import JourneyError, source_lines
from dsl.formatter import quote
from dsl.ir import Journey

from .support import EXAMPLES, HERE, content

SEEDS = [p.read_text(encoding="utf-8") for p in [*EXAMPLES, *sorted((HERE / "ok").glob("*.journey"))]]
ODD = ["\u2028", "\u2029", "\x85", "\x0c", "\x0b", "\r", "\r\n", "\ud800", "\udfff", "\ufeff", "\x00"]
PIECES = [
    *ODD,
    "\\ud800",
    "\\udc00",
    "\\ud83d\\ude00",
    "\\u",
    "\\",
    '"',
    "9" * 4_400,
    "9" * 16,
    "-1.5",
    "0.000000001",
    "10000000d",
    "9" * 30 + "s",
    "3650d",
    "not " * 40,
    "(" * 40,
    "\n" + "\t" * 40 + "if tag a:",
    "\n    if tag a:\n      ",
    "if tag a:",
    "else:",
    "split:",
    "wait for event x up to 1d:",
    "on event:",
    ":",
    "#",
    "\n",
    "  ",
    "user.x > ",
    "上海",
]
LINE_SEPARATOR_LIKE = st.sampled_from(["\u2028", "\u2029", "\x85", "\x0c", "\r", "\x0b", "\x1c", "\x1e"])


@st.composite
def mutated(draw: st.DrawFn) -> str:
    source = draw(st.sampled_from(SEEDS))
    for _ in range(draw(st.integers(1, 5))):
        kind = draw(st.sampled_from(["piece", "piece", "char", "delete", "dup_line"]))
        i = draw(st.integers(0, len(source)))
        if kind == "piece":
            source = source[:i] + draw(st.sampled_from(PIECES)) + source[i:]
        elif kind == "char":
            source = source[:i] + draw(st.characters(codec=None)) + source[i:]
        elif kind == "delete":
            source = source[:i] + source[i + draw(st.integers(1, 12)) :]
        else:
            lines = source.split("\n")
            lines.insert(draw(st.integers(0, len(lines))), draw(st.sampled_from(lines)))
            source = "\n".join(lines)
    return source


def only_language_errors(source: str) -> None:
    try:
        journey = parse(source)
    except JourneyError as exc:
        assert exc.diagnostics
        exc.render().encode("utf-8")  # what the CLI prints and /check returns can be written out
        lines = source_lines(exc.source)
        for diag in exc.diagnostics:
            assert 1 <= diag.line <= max(1, len(lines)), diag
        return
    for diag in check(journey, source, global_daily_limit=3):
        diag.render(source).encode("utf-8")
    text = format_journey(journey, source)
    assert format_journey(parse(text), text) == text
    assert content(parse(text)) == content(journey)
    assert Journey.model_validate_json(journey.model_dump_json()) == journey


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated())
def test_mutated_journeys_raise_only_language_errors(source: str) -> None:
    only_language_errors(source)


@settings(max_examples=150, deadline=None)
@given(st.lists(LINE_SEPARATOR_LIKE, min_size=1, max_size=4), st.integers(0, 3))
def test_a_caret_after_line_separator_like_characters_is_on_its_line(odd: list[str], blank: int) -> None:
    """The characters go into a text and a comment above a mistake; the
    mistake is reported on its line, and that line is the one shown."""
    text = "".join(odd)
    source = f'journey "x"\n  description "a{text}b"  # c{text}d\n' + "\n" * blank + '  send smss "t"\n'
    line = source.count("\n", 0, source.index("smss")) + 1
    try:
        parse(source)
    except JourneyError as exc:
        (diag,) = exc.diagnostics
        assert (diag.code, diag.line, diag.column) == ("E201", line, 8)
        shown = exc.render().split("\n")
        assert shown[1] == '      send smss "t"' and shown[2] == "           ^^^^"
    else:  # pragma: no cover - smss is no channel
        raise AssertionError("expected E201")


NAMES = st.text(
    st.sampled_from(["a", "中", " ", '"', "\\", "\u2028", "\u2029", "\x85", "\x0c", "\r", "\t", "\n"]), max_size=8
)


@settings(max_examples=150, deadline=None)
@given(NAMES, NAMES, NAMES)
def test_fmt_is_idempotent_on_line_separator_like_characters(description: str, template: str, comment: str) -> None:
    note = "# " + comment.replace("\n", " ")
    source = (
        f'journey "x"\n  description {quote(description)}  {note}\n  {note}\n'
        f"  send sms {quote(template)}  {note}\n  {note}\n  wait 1d\n"
    )
    formatted = format_journey(parse(source), source)
    assert format_journey(parse(formatted), formatted) == formatted
    again = parse(formatted)
    assert again.description == description and again.steps[0].template == template  # type: ignore[union-attr]
    assert len(source_lines(formatted)) == len(formatted.split("\n"))
