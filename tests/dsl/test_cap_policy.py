"""The language of frequency caps: calendar or sliding windows in ``limit``,
and ``on capped skip|defer up to D`` in the header and after a send."""

from __future__ import annotations

import pytest

from dsl import check, parse
from dsl.errors import JourneyError
from dsl.formatter import format_journey
from tests.dsl.support import EXAMPLES

SOURCE = """\
journey "caps"
  entry event joined
  limit 2 messages per day   # since local midnight
  on capped defer up to 2d
  send sms "a" on capped skip
  send best of wecom, sms "b"
  send wecom "c" on capped defer up to 12h
"""


def test_the_policy_and_the_windows_are_read() -> None:
    journey = parse(SOURCE, "caps.journey")
    assert journey.message_limit is not None
    assert (journey.message_limit.calendar, journey.message_limit.count) == ("day", 2)
    assert journey.when_capped is not None
    assert (journey.when_capped.mode, journey.when_capped.max_delay_seconds) == ("defer", 2 * 86400)
    a, b, c = journey.steps
    assert a.when_capped is not None and a.when_capped.mode == "skip"
    assert b.when_capped is None  # the journey's policy applies
    assert c.when_capped is not None and c.when_capped.max_delay_seconds == 12 * 3600
    sliding = parse('journey "s"\n  limit 2 messages per 1d\n', "s.journey")
    assert sliding.message_limit is not None and sliding.message_limit.calendar is None
    week = parse('journey "w"\n  limit 5 messages per week\n', "w.journey")
    assert week.message_limit is not None
    assert (week.message_limit.calendar, week.message_limit.window_seconds) == ("week", 7 * 86400)


def test_the_words_are_still_names_elsewhere() -> None:
    journey = parse('journey "n"\n  tag add day, week, skip, capped, defer\n', "n.journey")
    assert journey.steps[0].tags == ["day", "week", "skip", "capped", "defer"]


def test_formatting_keeps_the_meaning_and_the_ids() -> None:
    journey = parse(SOURCE, "caps.journey")
    text = format_journey(journey)
    assert "limit 2 messages per day\n" in text
    assert "on capped defer up to 2d\n" in text
    assert 'send sms "a" on capped skip\n' in text
    again = parse(text, "caps.journey")
    assert again.content_hash() == journey.content_hash()
    assert [s.id for s in again.steps] == [s.id for s in journey.steps] == ["send-sms-a", "send-best-b", "send-wecom-c"]


def test_a_deferral_needs_a_bounded_delay() -> None:
    zero = 'journey "z"\n  on capped defer up to 0m\n  send sms "a" on capped defer up to 0s\n'
    assert [d.code for d in check(parse(zero, "z.journey"), zero)] == ["E225", "E225"]
    long = 'journey "l"\n  send sms "a" on capped defer up to 31d\n'
    [diag] = check(parse(long, "l.journey"), long, "l.journey")
    assert diag.code == "E231"
    assert (diag.line, diag.column) == (2, 16)
    assert "on capped skip" in (diag.hint or "")
    fine = 'journey "f"\n  send sms "a" on capped defer up to 30d\n'
    assert check(parse(fine, "f.journey"), fine) == []


def test_a_half_written_policy_is_a_parse_error_with_a_caret() -> None:
    source = 'journey "h"\n  on capped wait\n'
    with pytest.raises(JourneyError) as info:
        parse(source, "h.journey")
    text = str(info.value)
    assert "h.journey:2:" in text and "^" in text


def test_the_policy_twice_in_the_header_is_an_error() -> None:
    source = 'journey "t"\n  on capped skip\n  on capped defer up to 1d\n'
    with pytest.raises(JourneyError) as info:
        parse(source, "t.journey")
    assert "E204" in str(info.value)


# What each example hashed to before these fields existed (computed from the
# commit before them): a journey that does not use them keeps its version.
EXAMPLE_HASHES = {
    "01_new_user_first_order.journey": "045c9c3d6602483c",
    "02_group_content_app_referral.journey": "7042ab30cf91d327",
    "03_lifecycle_stages.journey": "0f42284afe98104f",
    "04_referral_fission.journey": "0821f889731ac06c",
    "05_content_tags.journey": "e3040b748b4fabe5",  # "likes_" + event.category on purpose
    "06_welcome_on_add.journey": "76b62cbe7fb8e680",
    "07_scene_tag_followup.journey": "1672f5f76208c367",
    "08_restraint.journey": "2adae0ecb7eebd66",  # once at 2030: a date that does not pass under its tests
    "09_bought_a_need_b.journey": "74747833cdec9fad",
    "10_package_card.journey": "06145b6efc6f503f",
    "11_sms_recall.journey": "5ecca5e7f7a9fe5b",  # once at 2030, the same
    "12_layering.journey": "a0cd51c633e607cc",
    "13_channel_qr.journey": "cf12714fcc34f632",  # "src_" + event.placement on purpose
    "14_channel_preference.journey": "a427035ddc8c2e42",
    "15_dormant_reactivation.journey": "03e45d359255237c",  # branches on rfm mid/low: a silent user is never high
    "16_core_user_pool.journey": "acfbb10f12e97023",  # priority 1 added on purpose
}


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_journeys_without_the_new_fields_keep_their_content_hash(path) -> None:
    if path.name not in EXAMPLE_HASHES:
        pytest.fail(f"{path.name} is new: add its hash here (from a tree without cap policies)")
    journey = parse(path.read_text(encoding="utf-8"), str(path))
    assert journey.content_hash() == EXAMPLE_HASHES[path.name], (
        "the hash moved: an unset new IR field must be in dsl.ir._HASHED_WHEN_SET (or, if the example itself "
        "was changed on purpose, put its new hash here)"
    )


def test_priority_in_numbers_and_words() -> None:
    step = '  send sms "a"\n'
    assert parse('journey "p"\n  priority 1\n' + step, "p.journey").priority == 1
    assert parse('journey "p"\n  priority high\n' + step, "p.journey").priority == 2
    assert parse('journey "p"\n  priority low\n' + step, "p.journey").priority == 8
    assert parse('journey "p"\n' + step, "p.journey").priority is None  # normal, and the hash is unchanged
    text = format_journey(parse('journey "p"\n  priority high\n  send sms "a"\n', "p.journey"))
    assert "  priority high\n" in text
    for bad, caret in (("0", "^"), ("11", "^^"), ("urgent", "^^^^^^")):
        with pytest.raises(JourneyError) as info:
            parse(f'journey "p"\n  priority {bad}\n' + step, "p.journey")
        shown = str(info.value)
        assert "E232" in shown and "p.journey:2:12" in shown and f"\n               {caret}\n" in shown


def test_w307_warns_a_journey_without_priority_that_a_better_one_outranks() -> None:
    from dsl import Registry

    plain = 'journey "promo"\n  entry event sale\n  send sms "promo"\n'
    outranked = Registry(priorities={"core": 1, "other": 5})
    [warning] = check(parse(plain, "promo.journey"), plain, "promo.journey", outranked)
    assert warning.code == "W307" and "core (priority 1)" in warning.message and warning.line == 3
    stated = plain.replace("  entry event sale\n", "  entry event sale\n  priority normal\n")
    assert check(parse(stated, "promo.journey"), stated, "promo.journey", outranked) == []
    assert check(parse(plain, "promo.journey"), plain, "promo.journey", Registry(priorities={"x": 5})) == []
    silent = 'journey "tagger"\n  entry event sale\n  tag add seen\n'
    assert check(parse(silent, "t.journey"), silent, "t.journey", outranked) == []
