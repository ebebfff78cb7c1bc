"""Audience selection on SQLite: paged keyset scans select exactly the users
``contracts.conditions.evaluate`` would, on their snapshot at ``now``."""

from __future__ import annotations

import random
from datetime import datetime, timedelta

import pytest

from contracts.activities import UserSnapshot
from dsl.ir import AndCond, AudienceEntry, CompareCond, Cond, NotCond, OrCond, StageCond, TagCond
from dsl.parser import parse
from engine.audience import needs_full_snapshot, select_page, sql_bounds
from engine.events import link_identities
from engine.settings import DerivedRules
from engine.store import Store
from tests.audience.support import NOW, brute_force, event, make_user, scan_all


def where(text: str) -> Cond:
    journey = parse(f'journey "t"\n  entry audience where {text} every day at 10:00\n\n  send webhook "hi"\n')
    assert isinstance(journey.entry, AudienceEntry)
    return journey.entry.where


@pytest.fixture
def people(store: Store) -> Store:
    make_user(store, "u01", ["vip"], {"city": "上海", "spend": 1200})
    make_user(store, "u02", ["vip", "blocked"], {"city": "北京", "spend": "300"})
    make_user(store, "u03", [], {"city": "上海"})
    make_user(store, "u04", ["news"], {"spend": 999.5})
    make_user(store, "u05", ["vip", "news"], {})
    make_user(store, "u06", ["stage:active"], {"spend": "1500"})  # a hand-made derived tag is not a stage
    return store


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("tag vip", ["u01", "u02", "u05"]),
        ("tag vip and not tag blocked", ["u01", "u05"]),
        ("tag news or tag blocked", ["u02", "u04", "u05"]),
        ("not (tag vip or tag news)", ["u03", "u06"]),
        ('user.city == "上海"', ["u01", "u03"]),
        ('user.city != "上海"', ["u02", "u04", "u05", "u06"]),  # a missing attribute is "!="
        ("user.spend >= 1000", ["u01", "u06"]),  # "1500" compares as a number
        ('tag vip and user.city in ["上海", "北京"]', ["u01", "u02"]),
        ('not (tag vip and user.city == "上海")', ["u02", "u03", "u04", "u05", "u06"]),
    ],
)
@pytest.mark.parametrize("page_size", [1, 2, 100])
def test_tags_and_attributes(people: Store, text: str, expected: list[str], page_size: int) -> None:
    found, _ = scan_all(people, where(text), page_size)
    assert found == expected
    assert found == brute_force(people, where(text))


def test_plain_tags_are_answered_by_sql_alone() -> None:
    bounds = sql_bounds(where("tag vip and not (tag a or tag b)"))
    assert bounds.exact
    assert not sql_bounds(where("tag vip and stage is silent")).exact
    assert needs_full_snapshot(where("tag vip and stage is silent"))
    assert not needs_full_snapshot(where('tag vip and user.city == "x"'))


def test_stage_is_derived_at_now_not_read_from_stale_tags(store: Store) -> None:
    # u1: last seen 10 days ago, stored stage says "active" (computed back then) -> silent now
    make_user(store, "u1", ["vip"])
    event(store, "u1", "viewed", 10, ingest_days_ago=10)
    # u2: active yesterday
    make_user(store, "u2", ["vip"])
    event(store, "u2", "viewed", 1)
    # u3: silent but not a VIP
    make_user(store, "u3")
    event(store, "u3", "viewed", 12)
    # u4: paid 3 days ago -> paying, RFM layer set
    make_user(store, "u4", ["vip"])
    event(store, "u4", "order_paid", 3, amount=50)
    cond = where("tag vip and stage is silent")
    assert scan_all(store, cond, 2)[0] == ["u1"] == brute_force(store, cond)
    assert scan_all(store, where("not stage is silent"), 3)[0] == ["u2", "u4"]
    assert scan_all(store, where("rfm in [mid, low] or stage is paying"), 1)[0] == ["u4"]
    assert scan_all(store, TagCond(tag="stage:silent"), 10)[0] == ["u1", "u3"]  # as a journey's `if` sees it


def test_counts_and_reachability_use_the_full_snapshot(store: Store) -> None:
    make_user(store, "a", phone="13800000001")
    make_user(store, "b")
    make_user(store, "c", phone="13800000003")
    for days in (1, 2, 40):
        event(store, "a", "opened", days)
    event(store, "c", "opened", 1)
    assert scan_all(store, where("reachable sms"), 2)[0] == ["a", "c"]
    assert scan_all(store, where("count opened within 7d >= 2"), 2)[0] == ["a"]
    assert scan_all(store, where("reachable sms and count opened == 0"), 2)[0] == []


def test_merged_users_are_left_out_and_one_phone_is_one_person(store: Store) -> None:
    make_user(store, "old", ["vip"], phone="13900000000")
    make_user(store, "young", ["vip"])
    # the same phone arrives for "young": one person -> merged into the older user
    survivor = link_identities(store, {"phone": "+86 139-0000-0000"}, user_id="young", now=NOW)
    assert survivor == "old"
    assert scan_all(store, where("tag vip"), 1)[0] == ["old"]


def test_cursor_moves_past_pages_without_matches(store: Store) -> None:
    # "9.0" is a string Python's float() reads and SQL leaves to Python: every row is a candidate
    for i in range(10):
        make_user(store, f"u{i:02d}", {"vip"} if i in (0, 9) else (), {"n": f"{i}.0"})
    cond = where("user.n >= 9 or user.n == 0")
    first = select_page(store, cond, after=None, limit=4)
    assert (first.user_ids, first.cursor, first.scanned, first.done) == (["u00"], "u03", 4, False)
    second = select_page(store, cond, after=first.cursor, limit=4)
    assert (second.user_ids, second.cursor, second.done) == ([], "u07", False)
    third = select_page(store, cond, after=second.cursor, limit=4)
    assert (third.user_ids, third.cursor, third.scanned, third.done) == (["u09"], "u09", 2, True)


def test_an_exact_condition_reads_only_matches(store: Store) -> None:
    for i in range(10):
        make_user(store, f"u{i:02d}", (), {"n": i})
    page = select_page(store, where("user.n >= 9 or user.n == 0"), after=None, limit=4)
    assert (page.user_ids, page.cursor, page.scanned, page.done) == (["u00", "u09"], "u09", 2, True)


def _random_cond(rng: random.Random, depth: int) -> Cond:
    if depth == 0 or rng.random() < 0.3:
        pick = rng.random()
        if pick < 0.45:
            return TagCond(tag=rng.choice(["a", "b", "c", "stage:silent"]))
        if pick < 0.8:
            op = rng.choice(["==", "!=", "<", ">=", "in", "not in"])
            value = [1, "x"] if op in ("in", "not in") else rng.choice([1, 2, "x", "1"])
            return CompareCond(subject="user", field=rng.choice(["n", "s"]), op=op, value=value)  # type: ignore[arg-type]
        return StageCond(stages=rng.sample(["new", "active", "silent", "churned"], 2))
    kind = rng.choice(["and", "or", "not"])
    if kind == "not":
        return NotCond(operand=_random_cond(rng, depth - 1))
    operands = [_random_cond(rng, depth - 1) for _ in range(rng.randint(1, 3))]
    return AndCond(operands=operands) if kind == "and" else OrCond(operands=operands)


def test_random_conditions_match_the_evaluator(store: Store) -> None:
    rng = random.Random(20260302)
    for i in range(30):
        tags = [t for t in ("a", "b", "c") if rng.random() < 0.4]
        attrs = {k: rng.choice([1, 2, "1", "x", None]) for k in ("n", "s") if rng.random() < 0.7}
        make_user(store, f"r{i:02d}", tags, attrs, created_days_ago=rng.choice([2, 60]))
        if rng.random() < 0.6:
            event(store, f"r{i:02d}", "viewed", rng.choice([1, 10, 40]), ingest_days_ago=rng.choice([0, 40]))
    cache: dict[str, UserSnapshot] = {}
    for _ in range(50):
        cond = _random_cond(rng, 3)
        expected = brute_force(store, cond, cache=cache)
        assert scan_all(store, cond, rng.choice([1, 3, 7, 50]))[0] == expected, cond


def test_a_kept_statement_is_never_reused_for_another_time_or_rules(store: Store) -> None:
    """A page's statement is built once and kept for the windows after it
    (``engine.audience._STATEMENTS``): one kept for another ``now`` or other
    derived rules would select yesterday's stages."""
    make_user(store, "u1", created_days_ago=300)
    event(store, "u1", "viewed_product", 3)  # active at NOW, silent 10 days later
    make_user(store, "u2", created_days_ago=300)
    event(store, "u2", "viewed_product", 20)  # silent at NOW
    cond = where("stage is active")
    rules = DerivedRules()

    def selected(now: datetime, rules: DerivedRules = rules) -> list[str]:
        return select_page(store, cond, after=None, limit=10, now=now, rules=rules).user_ids

    assert selected(NOW) == ["u1"]
    assert selected(NOW + timedelta(days=10)) == []
    assert selected(NOW, DerivedRules(active_days=30)) == ["u1", "u2"]
    assert selected(NOW) == ["u1"]
