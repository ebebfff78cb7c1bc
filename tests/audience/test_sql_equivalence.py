"""The compiled audience selection against the pure evaluator.

A seeded random pool of a few hundred users — tags (hand-made ``stage:``
ones too), attributes of every JSON type (numbers, numeric and other strings,
booleans, nulls, lists), events at dates on both sides of every stage and RFM
threshold with amounts of every type, identities, opt-outs, a merge — and
many generated conditions. For each, three answers must agree exactly:

- ``contracts.conditions.evaluate`` over every live user's full snapshot at
  ``NOW`` (``JourneyActivities._snapshot``, what a journey's ``if`` reads);
- the paged selection (``select_page``: SQL, then Python for unsure rows);
- the SQL bounds alone: ``lower`` ⊆ answer ⊆ ``upper``, equal when exact.

On SQLite, and on PostgreSQL with ``JOURNEYS_TEST_PG_URL``.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import and_, insert, select, update
from sqlalchemy.orm import Session

from contracts.activities import EventCountQuery, UserSnapshot, UserSnapshotRequest
from contracts.conditions import evaluate
from dsl.ir import (
    AndCond,
    CompareCond,
    Cond,
    EventCountCond,
    NotCond,
    OrCond,
    ReachableCond,
    RfmCond,
    StageCond,
    TagCond,
)
from engine import audience, derived, identity
from engine.activities import JourneyActivities
from engine.audience import Bounds, live_users, sql_bounds
from engine.audience_sql import CompileContext
from engine.settings import Settings
from engine.store import Store
from engine.store.models import Consent, Event, Identity, Tag, User
from tests.audience.support import NOW, scan_all
from tests.engine.conftest import BACKENDS, _pg_store

POOL_SIZE = 240
CONDITIONS = 120

TAGS = ["vip", "news", "a", "stage:active", "rfm:high"]
EVENTS = ["viewed", "order_paid", "opened"]
WINDOWS = [None, 7 * 86400, 30 * 86400]
# days ago, straddling new/active (7), paying/churned/recency (30), the RFM window (365)
EVENT_DAYS = [0.2, 3, 6.9, 7.1, 12, 29.9, 30, 30.1, 45, 200, 364, 365, 366, 500, -1]
CREATED_DAYS = [1, 6.9, 7.1, 20, 29.9, 31, 60, 400]
AMOUNTS: list[Any] = [50, 600, 1200, 99.5, "300", "abc", "", True, False, None, [1], {"v": 900}, "1_000", 0, -20, 1e3]
ATTRIBUTE_VALUES: list[Any] = [
    1,
    2,
    1.5,
    -3,
    0,
    "1",
    "2",
    "1.0",
    "x",
    "",
    "上海",
    "北京",
    "abc",
    " 2",
    True,
    False,
    None,
    [1],
    {"k": 1},
    2**60,
]
COMPARE_VALUES: list[Any] = [1, 2, 0, 1.5, -1, "1", "x", "上海", "", True, False]
CHANNELS = ["sms", "push", "official_account", "wecom", "webhook", "email"]
ID_KINDS = {"phone": "13{:09d}", "app_user_id": "app{}", "openid": "o{}", "wecom_external_userid": "wm{}"}


def _build_pool(store: Store, rng: random.Random) -> None:
    users, tags, events, identities, consents = [], [], [], [], []
    for i in range(POOL_SIZE):
        uid = f"p{i:04d}"
        attrs = {k: rng.choice(ATTRIBUTE_VALUES) for k in ("n", "city", "grade") if rng.random() < 0.75}
        created = NOW - timedelta(days=rng.choice(CREATED_DAYS))
        users.append({"id": uid, "created_at": created, "updated_at": created, "attributes": attrs})
        for tag in TAGS:
            if rng.random() < 0.3:
                tags.append({"user_id": uid, "tag": tag, "source": "test", "added_at": created})
        for k in range(rng.choice([0, 0, 1, 2, 3, 5])):
            name = rng.choice(EVENTS)
            props: dict[str, Any] = {}
            if name == "order_paid" and rng.random() < 0.9:
                props["amount"] = rng.choice(AMOUNTS)
            at = NOW - timedelta(days=rng.choice(EVENT_DAYS))
            events.append({"id": f"{uid}:{k}", "user_id": uid, "name": name, "properties": props, "occurred_at": at})
        for kind, pattern in ID_KINDS.items():
            if rng.random() < 0.4:
                identities.append({"kind": kind, "value": pattern.format(i), "user_id": uid})
        for channel in CHANNELS:
            if rng.random() < 0.12:
                consents.append({"user_id": uid, "channel": channel, "opted_out": rng.random() < 0.8})

    def work(s: Session) -> None:
        s.execute(insert(User), users)
        s.execute(insert(Tag), tags)
        s.execute(insert(Event), [{**e, "received_at": NOW} for e in events])
        derived.store_event_spans(s)  # what ingest keeps on users, for rows inserted around it
        # Some kept last payments were taken with other payment names, or
        # never (a store whose names changed): the stage must aggregate those
        # users' payments and never read the kept value, however wrong.
        ids = [u["id"] for u in users]
        s.execute(update(User).where(User.id.in_(ids[::7])).values(payment_events=None, last_payment_at=None))
        s.execute(update(User).where(User.id.in_(ids[3::11])).values(payment_events='["x"]', last_payment_at=NOW))
        s.execute(insert(Identity), [{**x, "created_at": NOW} for x in identities])
        s.execute(insert(Consent), [{**c, "source": "test", "updated_at": NOW} for c in consents])
        identity.merge_users(s, "p0001", "p0002", now=NOW)  # one goes; its rows move to the survivor

    store.transact(work)


def _leaf(rng: random.Random) -> Cond:
    pick = rng.randrange(8)
    if pick == 0:
        return TagCond(tag=rng.choice(TAGS + ["stage:silent", "stage:paying", "rfm:mid", "rfm:low"]))
    if pick in (1, 2):
        op = rng.choice(["==", "!=", "<", "<=", ">", ">=", "in", "not in"])
        value: Any = rng.sample(COMPARE_VALUES, 2) if op in ("in", "not in") else rng.choice(COMPARE_VALUES)
        subject = "event" if rng.random() < 0.05 else "user"
        return CompareCond(subject=subject, field=rng.choice(["n", "city", "grade", "missing"]), op=op, value=value)
    if pick == 3:
        return StageCond(stages=rng.sample(["new", "active", "silent", "churned", "paying"], rng.randint(1, 2)))
    if pick == 4:
        return RfmCond(layers=rng.sample(["high", "mid", "low"], rng.randint(1, 2)))
    if pick in (5, 6):
        op = rng.choice(["==", "!=", "<", "<=", ">", ">=", "in", "not in"])
        return EventCountCond(
            event=rng.choice(EVENTS), within_seconds=rng.choice(WINDOWS), op=op, value=rng.choice([0, 1, 2, 3])
        )
    return ReachableCond(channel=rng.choice(CHANNELS))


def _cond(rng: random.Random, depth: int) -> Cond:
    if depth == 0 or rng.random() < 0.35:
        return _leaf(rng)
    kind = rng.choice(["and", "or", "not"])
    if kind == "not":
        return NotCond(operand=_cond(rng, depth - 1))
    operands = [_cond(rng, depth - 1) for _ in range(rng.randint(1, 3))]
    return AndCond(operands=operands) if kind == "and" else OrCond(operands=operands)


def _snapshots(store: Store) -> dict[str, UserSnapshot]:
    """Every live user's full snapshot at NOW, with every count the generator asks."""
    counts = [EventCountQuery(event=e, within_seconds=w) for e in EVENTS for w in WINDOWS]
    acts = JourneyActivities(store, {}, Settings())
    with store.read() as s:
        ids = sorted(s.scalars(select(User.id).where(User.merged_into.is_(None))))
    return {u: acts._snapshot(UserSnapshotRequest(user_id=u, now=NOW, event_counts=counts)) for u in ids}


def _sql_only(store: Store, bounds: Bounds, clause: Any) -> list[str]:
    with store.read() as s:
        stmt = live_users(bounds, User.id).where(clause).order_by(User.id)
        return list(s.scalars(stmt))


@pytest.fixture(scope="module", params=BACKENDS)
def pool(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Store, dict[str, UserSnapshot]]]:
    """Built once per backend: the tests only read it."""
    if request.param == "postgresql":
        stores = _pg_store()
        store = next(stores)
    else:
        store = Store(f"sqlite:///{tmp_path_factory.mktemp('pool') / 'journeys.db'}")
        store.migrate()
    _build_pool(store, random.Random(15))
    yield store, _snapshots(store)
    if request.param == "postgresql":
        next(stores, None)
    else:
        store.dispose()


def test_pool_is_mixed(pool: tuple[Store, dict[str, UserSnapshot]]) -> None:
    """The pool exercises every stage and layer, or the test below proves little."""
    _, snaps = pool
    assert {s.stage for s in snaps.values()} == {"new", "active", "silent", "churned", "paying"}
    assert {s.rfm for s in snaps.values()} == {None, "high", "mid", "low"}


def test_generated_conditions_select_what_the_evaluator_selects(
    pool: tuple[Store, dict[str, UserSnapshot]],
) -> None:
    store, snaps = pool
    rng = random.Random(2026)
    ctx = CompileContext(dialect=store.dialect, now=NOW, rules=Settings().derived)
    exact = 0
    for _ in range(CONDITIONS):
        cond = _cond(rng, 3)
        expected = [u for u, snap in snaps.items() if evaluate(cond, snap, None)]
        bounds = sql_bounds(cond, ctx)
        upper = _sql_only(store, bounds, bounds.upper)
        lower = _sql_only(store, bounds, bounds.lower)
        assert set(lower) <= set(expected) <= set(upper), cond
        # ``sure`` is ``lower`` on the rows ``upper`` admits (what a page reads)
        assert _sql_only(store, bounds, and_(bounds.upper, bounds.sure)) == lower, cond
        if bounds.exact:
            exact += 1
            assert upper == expected, cond
        assert scan_all(store, cond, rng.choice([7, 50, 1000]))[0] == expected, cond
    assert exact >= CONDITIONS // 3  # most conditions are decided by SQL alone


@pytest.mark.parametrize(
    "cond",
    [StageCond(stages=[stage]) for stage in ("new", "active", "silent", "churned", "paying")]
    + [RfmCond(layers=[layer]) for layer in ("high", "mid", "low")]
    + [ReachableCond(channel=c) for c in CHANNELS]
    + [
        EventCountCond(event=e, within_seconds=w, op=op, value=v)
        for e in ("order_paid", "viewed")
        for w in WINDOWS
        for op, v in ((">=", 1), ("==", 0), (">=", 2), ("<", 3), ("!=", 1))
    ],
)
def test_each_leaf_alone(pool: tuple[Store, dict[str, UserSnapshot]], cond: Cond) -> None:
    store, snaps = pool
    expected = [u for u, snap in snaps.items() if evaluate(cond, snap, None)]
    bounds = sql_bounds(cond, CompileContext(dialect=store.dialect, now=NOW, rules=Settings().derived))
    assert set(_sql_only(store, bounds, bounds.lower)) <= set(expected) <= set(_sql_only(store, bounds, bounds.upper))
    if not isinstance(cond, RfmCond):  # string amounts leave some RFM rows to Python
        assert bounds.exact
        assert _sql_only(store, bounds, bounds.upper) == expected
    assert scan_all(store, cond, 64)[0] == expected


def test_small_windows_select_the_same(
    pool: tuple[Store, dict[str, UserSnapshot]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Pages over event facts read window after window of users (each with
    its own facts range) and return short, not done, after MAX_SCAN users:
    with tiny windows every page crosses many of them, and the answer must
    not change."""
    store, snaps = pool
    monkeypatch.setattr(audience, "FIRST_WINDOW", 3)
    monkeypatch.setattr(audience, "MAX_WINDOW", 17)
    monkeypatch.setattr(audience, "MAX_SCAN", 40)
    rng = random.Random(77)
    conds: list[Cond] = [StageCond(stages=["silent", "new"]), RfmCond(layers=["mid"])]
    conds += [_cond(rng, 2) for _ in range(25)]
    for cond in conds:
        expected = [u for u, snap in snaps.items() if evaluate(cond, snap, None)]
        got, pages = scan_all(store, cond, rng.choice([1, 4, 30]))
        assert got == expected, cond
        if audience.fact_needs(cond, CompileContext(dialect=store.dialect, now=NOW)):
            assert pages >= POOL_SIZE // (40 + 17)  # no page looks at more than MAX_SCAN + a window
