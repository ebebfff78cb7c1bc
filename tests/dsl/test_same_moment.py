"""W309: a branch no user can take, as its stage and RFM ask cannot hold
with what is known of the user at that moment (``dsl._same_moment``), under
the service's rules (``engine.derived.profiles``, checked here against the
rules' own ``compute`` for soundness)."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

import pytest

from dsl import Registry, check, parse
from engine.derived import UserFacts, compute, profiles
from engine.settings import DerivedRules

DEFAULT = Registry(profiles=profiles(DerivedRules()))


def _w309(source: str, registry: Registry = DEFAULT) -> list[tuple[int, str]]:
    journey = parse(source, "m.journey")
    return [(d.line, d.message) for d in check(journey, source, "m.journey", registry) if d.code == "W309"]


def _journey(entry: str, *body: str) -> str:
    return "\n".join(['journey "m"', f"  entry {entry}", *(f"  {line}" for line in body)]) + "\n"


SILENT = "audience where stage is silent every day at 10:00"


def test_a_silent_audience_is_never_rfm_high() -> None:
    source = _journey(
        SILENT,
        "if rfm is high:",
        '  send sms "vip"',
        "else if rfm is mid:",
        '  send sms "mid"',
        "else:",
        '  send sms "light"',
    )
    [(line, message)] = _w309(source)
    assert line == 3
    assert message == (
        "this branch is never taken: RFM is high, as no user can be that here "
        "(the audience's stage is silent, at the same moment); "
        "only a user whose stage changed since the broadcast chose them could"
    )
    journey = parse(source, "m.journey")
    (diag,) = [d for d in check(journey, source, "m.journey", DEFAULT) if d.code == "W309"]
    assert diag.severity == "warning" and "never RFM high" in (diag.hint or "")
    # rules under which a silent user can be R high: no warning
    longer = Registry(profiles=profiles(DerivedRules(rfm_recency_days=90)))
    assert _w309(source, longer) == []
    # the language alone does not know the rules
    assert _w309(source, Registry()) == []


def test_an_audience_that_selects_nobody_is_one_warning() -> None:
    source = _journey(
        "audience where stage in [silent, churned] and rfm is high every day at 10:00",
        "if rfm is high:",
        '  send sms "vip"',
    )
    assert _w309(source) == [(2, "this audience selects nobody")]


def test_time_passing_forgets_what_was_known() -> None:
    for step in ("wait 1d", 'send sms "first"', "wait until 10:00"):
        assert _w309(_journey(SILENT, step, "if rfm is high:", '  send sms "vip"')) == [], step
    # a tag or a coupon takes no time: still the same moment
    assert [line for line, _ in _w309(_journey(SILENT, "tag add seen", "if rfm is high:", "  tag add x"))] == [4]


def test_a_label_forgets_as_a_goto_may_come_later() -> None:
    source = _journey(SILENT, "label again", "if rfm is high:", '  send sms "vip"', "wait 1d", "goto again")
    assert _w309(source) == []


def test_earlier_branches_not_taken_count() -> None:
    # an event entry knows nothing; after `not paying`, RFM high is impossible under the defaults
    source = _journey(
        "event app_opened",
        "if stage is paying:",
        '  send sms "thanks"',
        "else if rfm is high:",
        '  send sms "vip"',
        "else if tag vip or rfm is high:",
        '  send sms "maybe"',
    )
    [(line, message)] = _w309(source)
    assert line == 5 and "(not stage is paying, at the same moment)" in message


def test_an_else_always_beaten_by_a_branch_above() -> None:
    source = _journey(
        "audience where stage is paying every day at 10:00",
        "if rfm in [high, mid]:",
        '  send sms "a"',
        "else:",
        '  send sms "never"',
    )
    [(line, message)] = _w309(source)
    assert line == 6 and message.startswith("this else is never taken")


def test_nested_branches_know_the_outer_one() -> None:
    source = _journey(
        "event app_opened",
        "if stage in [silent, churned]:",
        "  if rfm is high and tag vip:",
        '    send sms "x"',
        "  if tag vip:",
        "    if rfm is high:",
        '      send sms "y"',
    )
    assert [line for line, _ in _w309(source)] == [4, 7]


def test_the_examples_have_no_dead_branch() -> None:
    from tests.dsl.test_cap_policy import EXAMPLES

    for path in EXAMPLES:
        assert _w309(path.read_text(encoding="utf-8")) == [], path.name


RULES = [
    DerivedRules(),
    DerivedRules(rfm_recency_days=90),
    DerivedRules(paying_days=60, rfm_recency_days=14),
    DerivedRules(rfm_frequency=1, rfm_monetary=0),
]


@pytest.mark.parametrize(
    "rules", RULES, ids=lambda r: f"paying{r.paying_days}-recency{r.rfm_recency_days}-f{r.rfm_frequency}"
)
def test_the_profiles_hold_every_pair_the_rules_compute(rules: DerivedRules) -> None:
    """Soundness: whatever a user did, ``compute`` gives a pair ``profiles``
    allows (else the checker would call a reachable branch dead)."""
    now = datetime(2027, 1, 1, tzinfo=UTC)
    allowed = profiles(rules).possible
    ages = [None, 0, 1, 6, 8, 13, 15, 29, 31, 45, 59, 61, 89, 91, 200, 400]
    seen: set[tuple[str, str | None]] = set()
    for first, last, paid, count, money in itertools.product(
        [0, 3, 10, 100, 400], ages, ages, [0, 1, 2, 5], [0.0, 500.0, 5000.0]
    ):
        if last is not None and last > first or paid is not None and (paid > first or last is None or paid < last):
            continue  # not a history: events after the first sign, a payment is an event
        facts = UserFacts(
            first_seen=now - timedelta(days=first),
            last_event_at=None if last is None else now - timedelta(days=last),
            last_payment_at=None if paid is None else now - timedelta(days=paid),
            payments_in_window=count if paid is not None else 0,
            monetary_in_window=money if paid is not None else 0.0,
        )
        derived = compute(facts, now, rules)
        seen.add((derived.stage, derived.rfm))
        assert (derived.stage, derived.rfm) in allowed, (facts, derived)
    # and the search reached the pairs that matter (it is not vacuous)
    assert {("new", None), ("silent", "mid"), ("churned", "mid"), ("paying", "high")} <= seen


def test_the_hint_says_only_what_bears_on_the_branch() -> None:
    journey_text = _journey(SILENT, "if rfm is high:", '  send sms "vip"')
    journey = parse(journey_text, "m.journey")
    (diag,) = [d for d in check(journey, journey_text, "m.journey", DEFAULT) if d.code == "W309"]
    assert diag.hint == (
        "R is high only with a payment within 30 days, which makes the stage paying: "
        "a user of any other stage is never RFM high."
    )
    new_users = _journey("audience where stage is new every day at 10:00", "if rfm in [mid, low]:", "  tag add x")
    journey = parse(new_users, "m.journey")
    (diag,) = [d for d in check(journey, new_users, "m.journey", DEFAULT) if d.code == "W309"]
    assert diag.hint == "A new user has never paid, so has no RFM layer."


def test_an_unknown_rfm_layer_is_an_error() -> None:
    source = _journey("event app_opened", "if rfm is hgh:", "  tag add x")
    (diag,) = [d for d in check(parse(source, "m.journey"), source, "m.journey") if d.code == "E237"]
    assert diag.message == "unknown RFM layer 'hgh'" and "high" in (diag.hint or "") and diag.line == 3


def test_journeys_check_uses_the_services_rules(tmp_path, capsys, monkeypatch) -> None:
    from api.cli import main

    path = tmp_path / "dead.journey"
    path.write_text(_journey(SILENT, "if rfm is high:", '  send sms "vip"'), encoding="utf-8")
    assert main(["check", str(path)]) == 0  # a warning, not an error
    assert "warning[W309]" in capsys.readouterr().out
    monkeypatch.setenv("JOURNEYS_DERIVED__RFM_RECENCY_DAYS", "90")
    assert main(["check", str(path)]) == 0
    assert "W309" not in capsys.readouterr().out
