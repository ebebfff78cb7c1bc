"""``users.first_event_at`` / ``last_event_at``: the span of a user's events,
kept at every ingest and merge, which an audience's lifecycle stage reads
instead of aggregating events (``engine.audience_sql``). Checked against the
events themselves after out-of-order ingests, a merge and the 0016 backfill,
on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from alembic import command
from sqlalchemy import func, insert, select

from engine import derived, events, identity
from engine.store import Store
from engine.store.db import alembic_config
from engine.store.models import Event, User

NOW = datetime(2026, 12, 1, 10, 0, tzinfo=UTC)


def _stored(store: Store, user_id: str) -> tuple[datetime | None, datetime | None]:
    with store.read() as s:
        user = s.get(User, user_id)
        assert user is not None
        return user.first_event_at, user.last_event_at


def _from_events(store: Store, user_id: str) -> tuple[datetime | None, datetime | None]:
    with store.read() as s:
        row = s.execute(
            select(func.min(Event.occurred_at), func.max(Event.occurred_at)).where(Event.user_id == user_id)
        ).one()
        return tuple(None if at is None else at.replace(tzinfo=at.tzinfo or UTC) for at in row)  # type: ignore[return-value]


def _ingest(store: Store, event_id: str, member: str, days_ago: float, name: str = "viewed") -> str:
    result = events.ingest_event(
        store,
        event_id=event_id,
        name=name,
        identifiers={"member_id": member},
        occurred_at=NOW - timedelta(days=days_ago),
        now=NOW,
    )
    return result.user_id


def test_ingest_keeps_the_span_when_events_arrive_out_of_order(store: Store) -> None:
    uid = _ingest(store, "e1", "m1", days_ago=10)
    assert _stored(store, uid) == (NOW - timedelta(days=10), NOW - timedelta(days=10))
    _ingest(store, "e2", "m1", days_ago=40)  # an older event, imported late: moves the first
    _ingest(store, "e3", "m1", days_ago=2, name="order_paid")
    _ingest(store, "e4", "m1", days_ago=20)  # inside the span: changes nothing
    _ingest(store, "e3", "m1", days_ago=1)  # a repeated id is not a new event
    assert _stored(store, uid) == (NOW - timedelta(days=40), NOW - timedelta(days=2))
    assert _stored(store, uid) == _from_events(store, uid)


def test_a_user_without_events_has_no_span(store: Store) -> None:
    uid = events.link_identities(store, {"member_id": "m-quiet"}, now=NOW)
    assert _stored(store, uid) == (None, None)


def test_a_merge_gives_the_survivor_the_span_of_both(store: Store) -> None:
    loser = _ingest(store, "a1", "m-a", days_ago=5)  # created 5 days ago
    _ingest(store, "a2", "m-a", days_ago=90)  # imported late: before the survivor's first event
    _ingest(store, "a3", "m-a", days_ago=0.5)  # after the survivor's last
    kept = _ingest(store, "b1", "m-b", days_ago=60)  # created 60 days ago: survives
    _ingest(store, "b2", "m-b", days_ago=1)

    survivor = store.transact(lambda s: identity.merge_users(s, loser, kept, now=NOW))
    assert survivor == kept
    assert _stored(store, survivor) == (NOW - timedelta(days=90), NOW - timedelta(days=0.5))
    assert _stored(store, survivor) == _from_events(store, survivor)


def test_a_merge_with_a_user_without_events_keeps_the_survivors_span(store: Store) -> None:
    busy = _ingest(store, "c1", "m-c", days_ago=7)
    quiet = events.link_identities(store, {"member_id": "m-d"}, now=NOW)
    survivor = store.transact(lambda s: identity.merge_users(s, busy, quiet, now=NOW))
    assert _stored(store, survivor) == (NOW - timedelta(days=7), NOW - timedelta(days=7))


def test_store_event_spans_sets_rows_loaded_around_ingest(store: Store) -> None:
    rows = [{"id": "u-bulk", "attributes": {}}, {"id": "u-none", "attributes": {}}]
    evs = [
        {"id": f"x{k}", "user_id": "u-bulk", "name": "viewed", "properties": {}, "occurred_at": NOW - timedelta(days=k)}
        for k in (3, 9, 1)
    ]

    def load(s) -> None:  # noqa: ANN001
        s.execute(insert(User), rows)
        s.execute(insert(Event), [{**e, "received_at": NOW} for e in evs])

    store.transact(load)
    assert _stored(store, "u-bulk") == (None, None)  # bulk rows bypass ingest
    store.transact(lambda s: derived.store_event_spans(s, ["u-bulk"]))
    assert _stored(store, "u-bulk") == (NOW - timedelta(days=9), NOW - timedelta(days=1))
    store.transact(derived.store_event_spans)  # every user (PostgreSQL: one grouped pass)
    assert _stored(store, "u-bulk") == (NOW - timedelta(days=9), NOW - timedelta(days=1))
    assert _stored(store, "u-none") == (None, None)


def test_migration_0016_backfills_the_span_of_existing_users(store: Store) -> None:
    with store.engine.begin() as conn:
        command.downgrade(alembic_config(store.url, conn), "0015")
    with store.engine.begin() as conn:
        conn.execute(insert(User.__table__).values(id="u-old", attributes={}, created_at=NOW, updated_at=NOW))
        conn.execute(insert(User.__table__).values(id="u-empty", attributes={}, created_at=NOW, updated_at=NOW))
        conn.execute(
            insert(Event.__table__),
            [
                {
                    "id": f"o{k}",
                    "user_id": "u-old",
                    "name": "viewed",
                    "properties": {},
                    "occurred_at": at,
                    "received_at": NOW,
                }
                for k, at in enumerate([NOW - timedelta(days=30), NOW - timedelta(hours=5), NOW - timedelta(days=2)])
            ],
        )
    store.migrate()
    assert _stored(store, "u-old") == (NOW - timedelta(days=30), NOW - timedelta(hours=5))
    assert _stored(store, "u-empty") == (None, None)
