"""Forced split variants in ``simulate`` and journey tests: by step id or by
the label before the split, on an event entry (the run is started by the
dispatcher) and an API entry; unknown splits and variants refused before
anything runs; the matrix walking every variant of every split and naming
what no case reached."""

from __future__ import annotations

from pathlib import Path

import pytest

from dsl import compile_source
from runtime.journey_tests import load_test_file, run_test_file
from runtime.simulate import simulate
from runtime.simulate_model import Case, ScriptedEvent, TestUser, World
from runtime.simulate_text import format_result
from runtime.simulate_variants import resolve_variants, splits, variant_matrix

JOURNEY = """\
journey "try variants"
  entry event signup where channel == "app"
  label offer
  split:
    50% A:
      send sms "coupon_a"
      wait for event order_paid up to 1d:
        on event: send sms "thanks"
        on timeout: send sms "reminder_a"
    50% B: send sms "story_b"
  if tag vip:
    split:
      30% gold: send sms "gold"
      30% silver: send sms "silver"
      40% holdout
"""
OUTER, INNER = "split-A-B", "split-gold-silver-holdout"
WORLD = World(cap_per_day=None, cap_per_week=None)
SMS = TestUser(identities={"phone": "13800000009"})
VIP = TestUser(identities={"phone": "13800000010"}, tags=["vip"])
APP = {"channel": "app"}


def _sent(case) -> list[str]:
    return [m.template for m in case.messages if m.status == "sent"]


def test_a_split_answers_to_its_id_and_the_label_before_it() -> None:
    ir = compile_source(JOURNEY, "t")
    assert set(splits(ir)) == {OUTER, "offer", INNER}
    assert resolve_variants(ir, {"offer": "B", INNER: "holdout"}) == {OUTER: "B", INNER: "holdout"}


@pytest.mark.parametrize(
    ("forced", "message"),
    [
        ({"split-A-C": "A"}, f"no split 'split-A-C' in the journey (its splits: {OUTER}, {INNER})"),
        ({"offer": "C"}, "split 'offer' has no variant 'C' (it has A, B)"),
        ({"offer": "A", OUTER: "B"}, f"split '{OUTER}' is forced to both 'A' and 'B'"),
    ],
)
def test_unknown_splits_and_variants_are_named(forced: dict[str, str], message: str) -> None:
    with pytest.raises(ValueError) as caught:
        resolve_variants(compile_source(JOURNEY, "t"), forced)
    assert message in str(caught.value)


async def test_simulate_refuses_an_unknown_variant_before_starting_a_server() -> None:
    # no env given: a server would be started only after the cases are checked
    with pytest.raises(ValueError, match="case 'typo': variants: split 'offer' has no variant 'b'"):
        await simulate(JOURNEY, [Case(name="typo", variants={"offer": "b"})])


async def test_each_forced_branch_is_walked_with_its_events(sim_env) -> None:
    paid = [ScriptedEvent(at="+2h", name="order_paid")]
    cases = [
        Case(name="A pays", user=SMS, entry=APP, events=paid, variants={"offer": "A"}),
        Case(name="A waits", user=SMS, entry=APP, variants={OUTER: "A"}),
        Case(name="B vip gold", user=VIP, entry=APP, variants={"offer": "B", INNER: "gold"}),
        Case(name="A vip silver", user=VIP, entry=APP, events=paid, variants={"offer": "A", INNER: "silver"}),
    ]
    result = await simulate(JOURNEY, cases, world=WORLD, env=sim_env)
    pays, waits, gold, silver = result.cases
    assert _sent(pays) == ["coupon_a", "thanks"]
    assert pays.outcomes[OUTER] == ["variant:A"] and pays.variants == {OUTER: "A"}
    assert _sent(waits) == ["coupon_a", "reminder_a"]
    assert _sent(gold) == ["story_b", "gold"]
    assert _sent(silver) == ["coupon_a", "thanks", "silver"]
    assert silver.variants == {OUTER: "A", INNER: "silver"}
    assert result.never_reached == []
    assert "split → variant B (forced)" in format_result(result)


async def test_an_api_entry_is_forced_too(sim_env) -> None:
    source = JOURNEY.replace('entry event signup where channel == "app"', "entry api")
    result = await simulate(source, [Case(user=VIP, variants={OUTER: "B", INNER: "holdout"})], world=WORLD, env=sim_env)
    (case,) = result.cases
    assert _sent(case) == ["story_b"]
    assert case.outcomes[INNER] == ["variant:holdout"]


def test_the_matrix_copies_each_case_once_per_variant_of_the_widest_split() -> None:
    ir = compile_source(JOURNEY, "t")
    plain = variant_matrix(ir, [Case(name="u")])
    assert [c.variants for c in plain] == [
        {OUTER: "A", INNER: "gold"},
        {OUTER: "B", INNER: "silver"},
        {OUTER: "B", INNER: "holdout"},
    ]
    assert plain[0].name == f"u · {OUTER} A, {INNER} gold"
    own = variant_matrix(ir, [Case(name="u", variants={"offer": "A"})])
    assert [c.variants for c in own] == [{OUTER: "A", INNER: v} for v in ("gold", "silver", "holdout")]
    no_splits = compile_source('journey "n"\n  send sms "x"\n', "n")
    assert variant_matrix(no_splits, [Case(name="u")]) == [Case(name="u")]


async def test_the_matrix_says_what_no_case_reached(sim_env) -> None:
    # no vip: the inner split is never reached whatever is forced; no order: no thanks
    result = await simulate(JOURNEY, [Case(name="u", user=SMS, entry=APP)], world=WORLD, env=sim_env, matrix=True)
    assert len(result.cases) == 3
    assert {tuple(_sent(c)) for c in result.cases} == {("coupon_a", "reminder_a"), ("story_b",)}
    assert result.never_reached == ["send-sms-thanks", INNER, "send-sms-gold", "send-sms-silver"]


async def test_a_matrix_over_the_case_bound_is_refused() -> None:
    with pytest.raises(ValueError, match="the variant matrix makes 66 cases of 22: at most 64"):
        await simulate(JOURNEY, [Case(name=f"u{i}") for i in range(22)], matrix=True)


async def test_a_journey_test_case_forces_a_variant(sim_env, tmp_path: Path) -> None:
    (tmp_path / "t.journey").write_text(JOURNEY, encoding="utf-8")
    test = tmp_path / "t.test.toml"
    test.write_text(
        "[caps]\nper_day = 100\nper_week = 100\n"
        "[[case]]\nname = 'B'\nentry = { channel = 'app' }\nvariants = { offer = 'B' }\n"
        "expect = ['takes variant B at split-A-B', 'sends sms story_b within 1m', 'does not send coupon_a']\n"
        "[case.user]\nidentities = { phone = '13800000011' }\n"
        "[[case]]\nname = 'typo'\nvariants = { offer = 'C' }\nexpect = ['converts']\n",
        encoding="utf-8",
    )
    report = await run_test_file(load_test_file(test), sim_env)
    assert report.error is not None and "case 'typo': variants: split 'offer' has no variant 'C'" in report.error
    test.write_text(test.read_text(encoding="utf-8").split("[[case]]\nname = 'typo'")[0], encoding="utf-8")
    report = await run_test_file(load_test_file(test), sim_env)
    assert report.passed, [c.failures for c in report.cases]
