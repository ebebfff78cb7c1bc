"""Tags made from event and user fields in the language: read, written back,
ids, words, and the checker's E236 / W308."""

from __future__ import annotations

from dsl import check, parse
from dsl.formatter import format_journey
from dsl.render_text import describe_step_tooltip
from dsl.tag_names import make_tag, valid_part

SOURCE = """\
journey "t"
  entry event scanned
  tag add vip, event.placement, "src_" + event.placement, user.city + "_fan"
"""


def test_parts_are_read_and_written_back() -> None:
    journey = parse(SOURCE, "t.journey")
    (step,) = journey.steps
    assert step.tags == ["vip"]
    assert [[(p.text, p.subject, p.field) for p in parts] for parts in step.computed] == [
        [(None, "event", "placement")],
        [("src_", None, None), (None, "event", "placement")],
        [(None, "user", "city"), ("_fan", None, None)],
    ]
    text = format_journey(journey)
    assert '  tag add vip, event.placement, "src_" + event.placement, user.city + "_fan"\n' in text
    assert parse(text, "t.journey").content_hash() == journey.content_hash()
    assert describe_step_tooltip(step) == "add tags vip, {event.placement}, src_{event.placement}, {user.city}_fan"
    assert check(journey, SOURCE) == []


def test_constant_parts_must_be_tag_text_and_an_event_must_be_there() -> None:
    bad = 'journey "t"\n  entry api\n  tag add "src " + event.placement\n'
    assert [d.code for d in check(parse(bad, "t.journey"), bad)] == ["E236", "W308"]
    waited = 'journey "t"\n  entry api\n  wait for event scanned up to 1d\n  tag add "src_" + event.placement\n'
    assert check(parse(waited, "t.journey"), waited) == []
    from_user = 'journey "t"\n  entry api\n  tag remove "city_" + user.city\n'
    assert check(parse(from_user, "t.journey"), from_user) == []


def test_values_are_made_safe_and_bounded() -> None:
    assert make_tag("poster A/lobby") == "poster_A_lobby"
    assert make_tag("杭州") == "杭州"
    assert make_tag(" / ") is None
    assert make_tag("x" * 100) == "x" * 64
    assert valid_part("src_") and not valid_part("src ") and not valid_part("")
