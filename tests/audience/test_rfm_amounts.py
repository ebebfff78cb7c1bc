"""A payment's amount as the RFM layer adds it (``engine.derived._amount``:
``float(value or 0)``, 0 when that fails) is the same in the compiled SQL
for every JSON type an amount can have. Each user pays twice in the last
days (recency and frequency high), once a fixed base and once the amount
under test, so the layer is ``high`` exactly when the two add up to the
monetary threshold: a base one or two below it tells 1 from 2 from 0."""

from __future__ import annotations

from typing import Any

import pytest

from contracts.conditions import evaluate
from dsl.ir import RfmCond
from engine.activities import JourneyActivities
from engine.audience import full_snapshot_fn, sql_bounds
from engine.audience_sql import CompileContext
from engine.settings import Settings
from engine.store import Store
from tests.audience.support import NOW, event, make_user, scan_all
from tests.audience.test_sql_equivalence import _sql_only

# SQL must decide these itself: all but non-empty strings, which go to Python.
DECIDED: list[Any] = [1, 2, 0, -20, 0.5, 1.5, 1e3, True, False, None, [5], {"v": 900}, ""]
STRINGS: list[Any] = ["1", "2", "abc", " 2", "1_000", "1e3"]
MONETARY = Settings().derived.rfm_monetary
BASES = [MONETARY - 2, MONETARY - 1, MONETARY]


@pytest.fixture
def pool(store: Store) -> tuple[Store, dict[str, bool]]:
    """User id -> whether its amount is one SQL must decide."""
    decided: dict[str, bool] = {}
    for i, amount in enumerate(DECIDED + STRINGS):
        for j, base in enumerate(BASES):
            uid = make_user(store, f"a{i:02d}-{j}", created_days_ago=200)
            event(store, uid, "order_paid", 3, amount=base)
            event(store, uid, "order_paid", 2, amount=amount)
            decided[uid] = i < len(DECIDED)
    return store, decided


@pytest.mark.parametrize("layer", ["high", "mid"])
def test_every_amount_type_adds_up_in_sql_as_in_python(pool: tuple[Store, dict[str, bool]], layer: str) -> None:
    store, decided = pool
    cond = RfmCond(layers=[layer])
    snap = full_snapshot_fn(JourneyActivities(store, {}, Settings()), cond, NOW)
    expected = sorted(u for u in decided if evaluate(cond, snap(u), None))
    assert 0 < len(expected) < len(decided)  # the bases put users on both sides
    bounds = sql_bounds(cond, CompileContext(dialect=store.dialect, now=NOW, rules=Settings().derived))
    sure = set(_sql_only(store, bounds, bounds.lower))
    maybe = set(_sql_only(store, bounds, bounds.upper))
    by_sql = {u for u, d in decided.items() if d}
    assert sure & by_sql == maybe & by_sql == set(expected) & by_sql  # decided by SQL, and rightly
    assert not sure - set(expected) and set(expected) <= maybe
    assert {u for u, d in decided.items() if not d} <= maybe - sure  # strings: Python's to judge
    assert scan_all(store, cond, 7)[0] == expected
