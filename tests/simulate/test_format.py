"""The journey-test file format: what it refuses, each time naming the file
and the case, and the expectation words (no server needed)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from runtime.journey_expect import ExpectationError, parse_expectation
from runtime.journey_tests import MAX_FILE_BYTES, JourneyTestError, load_test_file
from runtime.simulate_model import CaseResult, Message, parse_moment

JOURNEY = 'journey "t"\n  entry api\n  send sms "hi"\n'
CASE = '[[case]]\nname = "one"\nexpect = ["sends sms hi"]\n'


def _file(tmp_path: Path, text: str, journey: str = JOURNEY) -> Path:
    (tmp_path / "t.journey").write_text(journey, encoding="utf-8")
    path = tmp_path / "t.test.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_a_plain_file_loads(tmp_path: Path) -> None:
    test = load_test_file(_file(tmp_path, 'for = "10d"\n' + CASE))
    assert test.journey_path == (tmp_path / "t.journey").resolve()
    assert test.horizon == timedelta(days=10)
    assert [c.case.name for c in test.cases] == ["one"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("for = '401d'\n" + CASE, "at most 400d"),
        ("for = 'soon'\n" + CASE, "not a duration"),
        ("colour = 'red'\n" + CASE, "unknown key(s) colour"),
        ("journey = 'other.journey'\n" + CASE, "the journey other.journey is not there"),
        ("x = [\n", "not TOML"),
        ("", "no [[case]]"),
        ("[[case]]\nname = 'quiet'\n", "case 1 'quiet': no expectations"),
        ("[[case]]\nexpect = ['sends fax hi']\n", "case 1: unknown channel 'fax'"),
        ("[[case]]\nexpect = ['looks nice']\n", "not an expectation: 'looks nice'"),
        ("[[case]]\nexpect = ['takes maybe at x']\n", "unknown outcome 'maybe'"),
        (
            "[[case]]\nname = 'f'\nexpect = ['converts']\nvariants = { split-A-B = 1 }\n",
            "case 1 'f': 1 validation error",
        ),
        ("[[case]]\nexpect = ['converts']\nhats = 1\n", "case 1: 1 validation error"),
        ("[[case]]\nexpect = ['converts']\n" + "[[case.events]]\nat = '+1d'\nname = 'e'\n" * 201, "at most 200"),
        ("[[case]]\nexpect = ['converts']\n" * 65, "65 cases, at most 64"),
        ("[[case]]\nexpect = [" + "'converts'," * 101 + "]\n", "101 expectations, at most 100"),
    ],
    ids=lambda v: v[:30] if isinstance(v, str) else v,
)
def test_refused_with_the_file_and_case(tmp_path: Path, text: str, message: str) -> None:
    path = _file(tmp_path, text)
    with pytest.raises(JourneyTestError) as caught:
        load_test_file(path)
    assert str(path) in str(caught.value)
    assert message in str(caught.value)


def test_a_file_over_the_size_bound_is_not_read(tmp_path: Path) -> None:
    path = _file(tmp_path, CASE + "#" * MAX_FILE_BYTES)
    with pytest.raises(JourneyTestError, match="bytes, over the"):
        load_test_file(path)


def test_moments() -> None:
    start = datetime(2027, 1, 4, 1, 0, tzinfo=UTC)
    assert parse_moment("+1d2h", start) == start + timedelta(days=1, hours=2)
    assert parse_moment("-30d", start) == start - timedelta(days=30)
    assert parse_moment("2027-01-05T11:00+08:00", start) == datetime(2027, 1, 5, 3, 0, tzinfo=UTC)
    for bad in ("2027-01-05T11:00", "tomorrow", "+1x"):
        with pytest.raises(ValueError):
            parse_moment(bad, start)


def _result(*messages: tuple[str, str, str, int], **fields) -> CaseResult:
    start = datetime(2027, 1, 4, 1, 0, tzinfo=UTC)
    base = {
        "name": "c",
        "user_id": "u1",
        "timezone": "Asia/Shanghai",
        "start": start,
        "horizon": start + timedelta(days=30),
        "timeline": [],
        "visits": {},
        "outcomes": {},
        "ended": "completed",
        "end_reason": None,
        "waiting_at": None,
        "converted": False,
        "tags": [],
        "coupons": {},
    }
    base.update(fields)
    base["messages"] = [
        Message(at=start + timedelta(minutes=m), node_id="n", channel=c, template=t, status=s)
        for c, t, s, m in messages
    ]
    return CaseResult(**base)


@pytest.mark.parametrize(
    ("words", "met", "unmet"),
    [
        ("sends wecom hi within 1m", _result(("wecom", "hi", "sent", 0)), _result(("wecom", "hi", "sent", 2))),
        ("sends wecom hi after 1h", _result(("wecom", "hi", "sent", 61)), _result(("wecom", "hi", "sent", 59))),
        ("sends any hi", _result(("sms", "hi", "sent", 0)), _result(("sms", "hi", "suppressed", 0))),
        ("no sms", _result(("wecom", "hi", "sent", 0)), _result(("sms", "hi", "sent", 0))),
        ("no messages", _result(("sms", "hi", "failed", 0)), _result(("push", "x", "sent", 0))),
        (
            "at most 2 messages in any 24h",
            _result(("sms", "a", "sent", 0), ("sms", "b", "sent", 60), ("sms", "c", "sent", 1440)),
            _result(("sms", "a", "sent", 0), ("sms", "b", "sent", 60), ("sms", "c", "sent", 1439)),
        ),
        ("takes on timeout at w", _result(outcomes={"w": ["timeout"]}), _result(outcomes={"w": ["event"]})),
        ("takes branch 2 at i", _result(outcomes={"i": ["branch:1"]}), _result(outcomes={"i": ["branch:0"]})),
        ("takes no at i", _result(outcomes={"i": ["else"]}), _result(outcomes={"i": ["branch:0"]})),
        ("reaches x", _result(visits={"x": 1}), _result(visits={})),
        ("never reaches x", _result(visits={}), _result(visits={"x": 2})),
        ("converts", _result(converted=True), _result()),
        ("exits with reason event unsub", _result(ended="exited", end_reason="event unsub"), _result()),
        ("has tag vip", _result(tags=["vip"]), _result()),
        ("coupon p issued", _result(coupons={"p": ["JC1"]}), _result()),
        ("still waiting at w", _result(ended="running", waiting_at="w"), _result()),
    ],
)
def test_expectation_words(words: str, met: CaseResult, unmet: CaseResult) -> None:
    expectation = parse_expectation(words)
    assert expectation.check(met) is None
    assert expectation.check(unmet)  # says what it found instead


def test_unknown_words_are_refused() -> None:
    for words in ("sends", "ends happily", "sends wecom hi within soon", "takes branch 0 at i"):
        with pytest.raises(ExpectationError):
            parse_expectation(words)
