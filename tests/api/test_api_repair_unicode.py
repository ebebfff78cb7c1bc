"""``engine.repair.repair_unicode``: rows stored with lone surrogates (before
ingest refused them) are found and rewritten with U+FFFD, on SQLite and, when
``JOURNEYS_TEST_PG_URL`` points at a server, on PostgreSQL; a second run
changes nothing."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.exc import StatementError

from engine.repair import clean, repair_unicode
from engine.store import Store
from engine.store.models import Event, Identity, Run, User
from tests.engine.conftest import BACKENDS, _pg_store

LONE = "\ud83d"
NOW = datetime(2026, 1, 1, tzinfo=UTC)


@pytest.fixture(params=BACKENDS)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    if request.param == "postgresql":
        yield from _pg_store()
        return
    s = Store(f"sqlite:///{tmp_path / 'repair.db'}")
    s.migrate()
    yield s
    s.dispose()


def _encodes(value: object) -> bool:
    """What every answer and every Temporal payload does with stored JSON."""
    try:
        json.dumps(value, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _seed(store: Store) -> None:
    # PostgreSQL's users.attributes is jsonb (0017), which refuses the escape
    # (tests/engine/test_attributes_jsonb.py): there only the json columns hold one.
    lone = LONE if _attributes_hold_one(store) else "\ufffd"
    with store.session() as s:
        s.add(User(id="u-bad", attributes={"name": f"a{lone}b", f"k{lone}": 1, "mood": "\U0001f600"}))
        s.add(User(id="u-good", attributes={"name": "ok", "note": "\\ud83d is only text"}))
        s.flush()
        s.add(Event(id="e-bad", user_id="u-bad", name="buy", properties={"items": [{"sku": LONE}]}, occurred_at=NOW))
        s.add(Event(id="e-good", user_id="u-good", name="buy", properties={"sku": "\U0001f600"}, occurred_at=NOW))
        s.add(
            Run(
                run_key="r-bad",
                journey_id="j",
                version=1,
                user_id="u-bad",
                admitted=True,
                entered_at=NOW,
                trigger_event={"properties": {"x": LONE}},
            )
        )


def _attributes_hold_one(store: Store) -> bool:
    return store.dialect != "postgresql"


def test_lone_surrogates_are_replaced_once_and_for_all(store: Store) -> None:
    _seed(store)
    users = _attributes_hold_one(store)
    with store.read() as s:
        broken = s.get(Event, "e-bad").properties
        assert not _encodes(broken)  # the stored row breaks every answer about it
        assert _encodes(s.get(User, "u-bad").attributes) is not users
    dry = repair_unicode(store, dry_run=True)
    expected = {"events.properties": 1, "runs.trigger_event": 1} | ({"users.attributes": 1} if users else {})
    assert dry.rows == expected
    with store.read() as s:
        assert not _encodes(s.get(Event, "e-bad").properties)  # a dry run changes nothing

    report = repair_unicode(store, batch=1)  # batches of one: the paging is exercised too
    assert report.rows == dry.rows and report.examples["events.properties"] == ["e-bad"]
    if users:
        assert report.examples["users.attributes"] == ["u-bad"]
    with store.read() as s:
        bad = s.get(User, "u-bad")
        assert bad.attributes == {"name": "a\ufffdb", "k\ufffd": 1, "mood": "\U0001f600"}
        assert s.get(User, "u-good").attributes == {"name": "ok", "note": "\\ud83d is only text"}
        assert s.get(Event, "e-bad").properties == {"items": [{"sku": "\ufffd"}]}
        assert s.get(Event, "e-good").properties == {"sku": "\U0001f600"}
        run = s.scalars(select(Run).where(Run.run_key == "r-bad")).one()
        assert run.trigger_event == {"properties": {"x": "\ufffd"}}
        assert all(_encodes(v) for v in (bad.attributes, run.trigger_event))
    assert repair_unicode(store).rows == {}  # idempotent


def test_text_columns_cannot_hold_one_at_all(store: Store) -> None:
    """Why identities need no repair: the driver refuses to write the value."""
    with store.session() as s:
        s.add(User(id="u-id", attributes={}))
    with pytest.raises((StatementError, UnicodeEncodeError)):
        with store.session() as s:
            s.add(Identity(kind="phone", value=f"138{LONE}", user_id="u-id"))


def test_clean_keeps_the_valid_key_when_two_collide() -> None:
    assert clean({"a\ufffd": 1, f"a{LONE}": 2}) == ({"a\ufffd": 1}, True)
    assert clean(["x", 1, None, {"y": [LONE]}]) == (["x", 1, None, {"y": ["\ufffd"]}], True)
    assert clean({"fine": "\U0001f600"}) == ({"fine": "\U0001f600"}, False)
