"""``engine.split_tests`` without Temporal: the judgement from per-variant
numbers, one decision per journey version whoever asks (threads at once),
and an operator's override before and after."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest

from dsl import compile_source
from dsl.ir import SplitStep
from engine import catalog, split_tests
from engine.store import Store
from tests.engine.engine_support import NOW

SOURCE = """\
journey "copy test"
  goal event order_paid within 1d
  split test 10% for 6h by goal:
    50% A: send sms "copy_a"
    50% B: send sms "copy_b"
    otherwise: B
"""


def _split() -> SplitStep:
    step = compile_source(SOURCE).steps[0]
    assert isinstance(step, SplitStep)
    return step


def _numbers(a: tuple[int, int], b: tuple[int, int]) -> dict:
    return {"variants": {"A": {"hits": a[0], "runs": a[1]}, "B": {"hits": b[0], "runs": b[1]}}}


def test_the_best_variant_wins_only_significantly_and_with_enough_runs() -> None:
    split = _split()
    winner, why = split_tests.judge(split, _numbers((30, 100), (10, 100)))
    assert winner == "A" and why.startswith("A won (A 30.0% (30/100), B 10.0% (10/100); p=0.000")
    winner, why = split_tests.judge(split, _numbers((11, 100), (10, 100)))
    assert winner == "B" and why.startswith("no variant won significantly") and why.endswith(": B")
    winner, why = split_tests.judge(split, _numbers((9, 10), (0, 10)))
    assert winner == "B" and "too few runs in the test" in why and "at least 30 each" in why
    assert split_tests.judge(split, _numbers((9, 10), (0, 10)), min_per_variant=5)[0] == "A"
    assert split_tests.judge(split, _numbers((0, 100), (0, 100)))[0] == "B"  # nobody converted: the fallback


@pytest.fixture
def published(store: Store) -> Store:
    ir = compile_source(SOURCE)
    catalog.publish(store, "copy", name=ir.name, source=SOURCE, ir=ir.model_dump(mode="json"), hash=ir.content_hash())
    return store


def test_the_first_run_starts_the_window_and_one_decision_stands(published: Store) -> None:
    node = "split-A-B"
    first = split_tests.start(published, "copy", 1, node, NOW)
    assert first.started_at == NOW and first.winner is None
    assert split_tests.start(published, "copy", 1, node, NOW + timedelta(hours=1)).started_at == NOW
    results: list[str | None] = []
    guard = threading.Lock()

    def ask() -> None:
        decided = split_tests.decide(published, "copy", 1, node, NOW + timedelta(hours=7))
        with guard:
            results.append(decided.winner)

    threads = [threading.Thread(target=ask) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == ["B"] * 8  # no test runs: the fallback, decided once
    decided = split_tests.get(published, "copy", 1, node)
    assert decided is not None and decided.decided_by == "test" and "too few runs" in (decided.reason or "")
    assert decided.numbers is not None and decided.numbers["variants"] == {
        "A": {"runs": 0, "hits": 0},
        "B": {"runs": 0, "hits": 0},
    }


def test_an_operator_overrides_before_and_after(published: Store) -> None:
    node = "split-A-B"
    before = split_tests.override(published, "copy", 1, node, "A", NOW)
    assert (before.winner, before.decided_by) == ("A", "operator")
    # the window's end finds a decision: the test does not replace it
    assert split_tests.decide(published, "copy", 1, node, NOW + timedelta(hours=7)).winner == "A"
    after = split_tests.override(published, "copy", 1, node, "B", NOW + timedelta(hours=8))
    assert (after.winner, after.reason) == ("B", "chosen by an operator: B")
    with pytest.raises(ValueError, match="not a variant"):
        split_tests.override(published, "copy", 1, node, "C", NOW)
    with pytest.raises(LookupError):
        split_tests.override(published, "copy", 1, "send-sms-copy_a", "A", NOW)
