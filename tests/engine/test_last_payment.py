"""``users.last_payment_at``: each user's last payment, kept at every ingest
and merge with the payment event names it was taken for
(``users.payment_events``), so an audience judges the lifecycle stage from
``users`` alone. Checked against the events after out-of-order ingests, a
change of the payment names, merges, a bulk load and the 0018 backfill; and
that the audience reads the kept value only where its names are the rules',
on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from alembic import command
from sqlalchemy import insert, select, update

from api.cli import main
from dsl.ir import Cond, RfmCond, StageCond, TagCond
from engine import derived, events, identity
from engine.audience import live_users, sql_bounds
from engine.audience_sql import CompileContext
from engine.settings import DerivedRules
from engine.store import Store
from engine.store.db import alembic_config
from engine.store.models import Event, User
from engine.store.types import utc

NOW = datetime(2026, 12, 1, 10, 0, tzinfo=UTC)
DEFAULT = DerivedRules()
TWO_NAMES = DerivedRules(payment_events=["order_paid", "mp_paid"])


def _kept(store: Store, user_id: str) -> tuple[datetime | None, str | None]:
    with store.read() as s:
        row = s.execute(select(User.last_payment_at, User.payment_events).where(User.id == user_id)).one()
        return (utc(row[0]) if row[0] else None), row[1]


def _ingest(store: Store, event_id: str, member: str, days_ago: float, name: str, rules: DerivedRules = DEFAULT) -> str:
    return events.ingest_event(
        store,
        event_id=event_id,
        name=name,
        identifiers={"member_id": member},
        properties={"amount": 10},
        occurred_at=NOW - timedelta(days=days_ago),
        now=NOW,
        rules=rules,
    ).user_id


def test_the_mark_is_the_sorted_names_and_none_when_too_long() -> None:
    assert derived.payment_mark(["order_paid"]) == '["order_paid"]'
    assert derived.payment_mark(["b", "a", "b"]) == derived.payment_mark(["a", "b"]) == '["a","b"]'
    assert derived.payment_mark([f"paid_{i:03d}" for i in range(60)]) is None


def test_ingest_keeps_the_last_payment_when_payments_arrive_out_of_order(store: Store) -> None:
    uid = _ingest(store, "v1", "m1", days_ago=1, name="viewed")
    assert _kept(store, uid) == (None, '["order_paid"]')  # kept: nothing paid yet
    _ingest(store, "p1", "m1", days_ago=10, name="order_paid")
    _ingest(store, "p2", "m1", days_ago=40, name="order_paid")  # older, imported late: changes nothing
    _ingest(store, "v2", "m1", days_ago=0.5, name="viewed")  # not a payment
    assert _kept(store, uid) == (NOW - timedelta(days=10), '["order_paid"]')


def test_ingest_retakes_it_with_the_configured_names(store: Store) -> None:
    uid = _ingest(store, "p1", "m2", days_ago=20, name="order_paid")
    _ingest(store, "q1", "m2", days_ago=3, name="mp_paid")  # not a payment by the default names
    assert _kept(store, uid) == (NOW - timedelta(days=20), '["order_paid"]')
    _ingest(store, "v1", "m2", days_ago=1, name="viewed", rules=TWO_NAMES)  # names changed: retaken
    assert _kept(store, uid) == (NOW - timedelta(days=3), '["mp_paid","order_paid"]')


def test_a_merge_keeps_the_later_payment_or_nothing_when_the_names_differ(store: Store) -> None:
    a = _ingest(store, "a1", "m-a", days_ago=5, name="order_paid")
    b = _ingest(store, "b1", "m-b", days_ago=2, name="order_paid")
    survivor = store.transact(lambda s: identity.merge_users(s, a, b, now=NOW))
    assert _kept(store, survivor) == (NOW - timedelta(days=2), '["order_paid"]')

    c = _ingest(store, "c1", "m-c", days_ago=9, name="order_paid")
    d = _ingest(store, "d1", "m-d", days_ago=4, name="mp_paid", rules=TWO_NAMES)
    survivor = store.transact(lambda s: identity.merge_users(s, c, d, now=NOW))
    assert _kept(store, survivor) == (None, None)  # not comparable: not kept


def test_store_event_spans_takes_it_for_bulk_rows_with_the_given_names(store: Store) -> None:
    def load(s) -> None:  # noqa: ANN001
        s.execute(insert(User), [{"id": "u-bulk", "attributes": {}}, {"id": "u-none", "attributes": {}}])
        rows = [("order_paid", 30), ("mp_paid", 6), ("viewed", 1)]
        s.execute(
            insert(Event),
            [
                {
                    "id": f"x{k}",
                    "user_id": "u-bulk",
                    "name": name,
                    "properties": {},
                    "occurred_at": NOW - timedelta(days=d),
                    "received_at": NOW,
                }
                for k, (name, d) in enumerate(rows)
            ],
        )

    store.transact(load)
    assert _kept(store, "u-bulk") == (None, None)  # bulk rows bypass ingest
    store.transact(lambda s: derived.store_event_spans(s, ["u-bulk"]))
    assert _kept(store, "u-bulk") == (NOW - timedelta(days=30), '["order_paid"]')
    store.transact(lambda s: derived.store_event_spans(s, rules=TWO_NAMES))  # all (PostgreSQL: one pass)
    assert _kept(store, "u-bulk") == (NOW - timedelta(days=6), '["mp_paid","order_paid"]')
    assert _kept(store, "u-none") == (None, '["mp_paid","order_paid"]')


def test_migration_0018_backfills_with_the_default_names(store: Store) -> None:
    with store.engine.begin() as conn:
        command.downgrade(alembic_config(store.url, conn), "0017")
    with store.engine.begin() as conn:
        for uid in ("u-paid", "u-not"):
            conn.execute(insert(User.__table__).values(id=uid, attributes={}, created_at=NOW, updated_at=NOW))
        conn.execute(
            insert(Event.__table__),
            [
                {"id": f"o{k}", "user_id": uid, "name": name, "properties": {}, "occurred_at": at, "received_at": NOW}
                for k, (uid, name, at) in enumerate(
                    [
                        ("u-paid", "order_paid", NOW - timedelta(days=50)),
                        ("u-paid", "order_paid", NOW - timedelta(days=8)),
                        ("u-paid", "viewed", NOW - timedelta(days=1)),
                        ("u-not", "viewed", NOW - timedelta(days=1)),
                    ]
                )
            ],
        )
    store.migrate()
    assert _kept(store, "u-paid") == (NOW - timedelta(days=8), '["order_paid"]')
    assert _kept(store, "u-not") == (None, '["order_paid"]')


def _paying(store: Store, rules: DerivedRules) -> list[str]:
    bounds = sql_bounds(StageCond(stages=["paying"]), CompileContext(dialect=store.dialect, now=NOW, rules=rules))
    assert bounds.exact
    with store.read() as s:
        return list(s.scalars(live_users(bounds, User.id).where(bounds.upper).order_by(User.id)))


def test_the_audience_reads_the_kept_value_only_where_it_was_taken_with_the_rules_names(store: Store) -> None:
    fresh = _ingest(store, "f1", "m-f", days_ago=90, name="order_paid")  # churned, not paying
    other = _ingest(store, "o1", "m-o", days_ago=90, name="order_paid")
    assert _paying(store, DEFAULT) == []
    # A kept value is read as it is where its names are the rules' (this one
    # is deliberately wrong: only the events say 90 days) ...
    store.transact(
        lambda s: s.execute(update(User).where(User.id == fresh).values(last_payment_at=NOW - timedelta(days=1)))
    )
    # ... and ignored where they are not: the events are aggregated instead.
    store.transact(
        lambda s: s.execute(
            update(User)
            .where(User.id == other)
            .values(last_payment_at=NOW - timedelta(days=1), payment_events='["something_else"]')
        )
    )
    assert _paying(store, DEFAULT) == [fresh]
    # Under other payment names no kept value is theirs: both from the events.
    assert _paying(store, TWO_NAMES) == []
    _ingest(store, "m1", "m-o", days_ago=2, name="mp_paid", rules=TWO_NAMES)
    assert _paying(store, TWO_NAMES) == [other]


def test_journeys_repair_spans_retakes_them_with_the_configured_names(
    store: Store, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    uid = _ingest(store, "p1", "m-r", days_ago=20, name="order_paid")
    _ingest(store, "q1", "m-r", days_ago=3, name="mp_paid")
    monkeypatch.setenv("JOURNEYS_DATABASE_URL", store.url)
    monkeypatch.setenv("JOURNEYS_DERIVED__PAYMENT_EVENTS", '["order_paid", "mp_paid"]')
    assert main(["repair-spans", "--dry-run"]) == 0
    assert "would retake every user's event spans; 1 user(s) had no last payment kept for order_paid, mp_paid" in (
        capsys.readouterr().out
    )
    assert _kept(store, uid) == (NOW - timedelta(days=20), '["order_paid"]')  # a dry run changes nothing
    assert main(["repair-spans"]) == 0
    assert "retook every user's event spans; 1 user(s)" in capsys.readouterr().out
    assert _kept(store, uid) == (NOW - timedelta(days=3), '["mp_paid","order_paid"]')
    assert main(["repair-spans", "--dry-run"]) == 0
    assert "0 user(s) had no last payment kept" in capsys.readouterr().out


def _selected(store: Store, cond: Cond) -> list[str]:
    bounds = sql_bounds(cond, CompileContext(dialect=store.dialect, now=NOW, rules=DEFAULT))
    with store.read() as s:
        return list(s.scalars(live_users(bounds, User.id).where(bounds.upper).order_by(User.id)))


def _paid(store: Store, member: str, *days_ago: float, amount: float = 600) -> str:
    uid = ""
    for k, days in enumerate(days_ago):
        uid = events.ingest_event(
            store,
            event_id=f"{member}-{k}",
            name="order_paid",
            identifiers={"member_id": member},
            properties={"amount": amount},
            occurred_at=NOW - timedelta(days=days),
            now=NOW - timedelta(days=days),
        ).user_id
    return uid


def test_rfm_counts_the_payments_of_users_on_the_recency_and_window_edges(store: Store) -> None:
    """For ``high`` alone an RFM leaf aggregates only the payments of users
    with R by their kept last payment (at most 30 days old, the edge
    included); other layers read every payer's. Users on either side of the
    recency and the 365-day window edges."""
    rules = DEFAULT
    assert (rules.rfm_recency_days, rules.rfm_window_days, rules.rfm_frequency) == (30, 365, 2)
    on_edge = _paid(store, "edge", 100, 30)  # R (exactly 30 days), F (2), M (1200): high
    past_edge = _paid(store, "past", 100, 30.01)  # no R: mid
    in_window = _paid(store, "win", 364.99, amount=1500)  # M alone: mid
    out_of_window = _paid(store, "out", 365, amount=1500)  # nothing in the window: low
    assert _selected(store, RfmCond(layers=["high"])) == [on_edge]
    assert _selected(store, TagCond(tag="rfm:high")) == [on_edge]
    assert _selected(store, RfmCond(layers=["mid"])) == sorted([past_edge, in_window])
    assert _selected(store, RfmCond(layers=["low"])) == [out_of_window]
    assert _selected(store, RfmCond(layers=["high", "low"])) == sorted([on_edge, out_of_window])
