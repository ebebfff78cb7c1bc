"""Step records are one per (run key, seq) (migration 0007): the same record
written twice leaves one row, the engine's seq-0 merge records stay apart,
and the migration folds the duplicates stored before it into the last one
written, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from alembic import command
from sqlalchemy import func, insert, select
from sqlalchemy.exc import IntegrityError

from engine import runs
from engine.store import Store
from engine.store.db import alembic_config
from engine.store.models import StepRecord as StepRow
from tests.engine.test_engine_steps import rec

NOW = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)


def _rows(store: Store) -> list[tuple[str, int, str, str]]:
    with store.read() as s:
        query = select(StepRow.run_key, StepRow.seq, StepRow.node_id, StepRow.outcome).order_by(StepRow.id)
        return [(r.run_key, r.seq, r.node_id, r.outcome) for r in s.execute(query)]


def _raw(run_key: str, seq: int, outcome: str, at: datetime, node: str = "n") -> dict[str, object]:
    return {
        "run_key": run_key,
        "seq": seq,
        "journey_id": "j1",
        "version": 1,
        "user_id": "u1",
        "node_id": node,
        "kind": "wait",
        "outcome": outcome,
        "variant": None,
        "at": at,
        "detail": {},
    }


def test_writing_the_same_record_twice_leaves_one(store: Store) -> None:
    assert runs.record_steps(store, [rec(1)]) == 1
    assert runs.record_steps(store, [rec(1)]) == 0
    assert runs.record_steps(store, [rec(1, at=NOW + timedelta(seconds=30))]) == 0  # the retried task's time
    assert _rows(store) == [("r1", 1, "n", "waiting")]


def test_the_store_refuses_a_second_row_of_a_run_and_seq(store: Store) -> None:
    store.transact(lambda s: s.execute(insert(StepRow.__table__), [_raw("r1", 1, "waiting", NOW)]))
    with pytest.raises(IntegrityError):
        with store.session() as s:
            s.execute(insert(StepRow.__table__), [_raw("r1", 1, "event", NOW + timedelta(seconds=1))])


def test_the_engines_seq_0_records_stay_apart(store: Store) -> None:
    rows = [_raw("r1", 0, "kept", NOW, node="merge"), _raw("r1", 0, "kept", NOW + timedelta(hours=1), node="merge")]
    store.transact(lambda s: s.execute(insert(StepRow.__table__), rows))
    assert len(_rows(store)) == 2


def test_the_migration_keeps_the_last_written_of_each_run_and_seq(store: Store) -> None:
    with store.engine.begin() as conn:
        command.downgrade(alembic_config(store.url, conn), "0006")
    rows = [
        _raw("r1", 1, "waiting", NOW),
        _raw("r1", 2, "waiting", NOW + timedelta(seconds=1)),
        _raw("r1", 1, "event", NOW + timedelta(seconds=5)),  # the retried task's
        _raw("r2", 1, "waiting", NOW),
        _raw("r1", 0, "ended", NOW, node="merge"),
        _raw("r1", 0, "kept", NOW + timedelta(hours=1), node="merge"),
    ]
    store.transact(lambda s: s.execute(insert(StepRow.__table__), rows))
    store.migrate()
    assert _rows(store) == [
        ("r1", 2, "n", "waiting"),
        ("r1", 1, "n", "event"),
        ("r2", 1, "n", "waiting"),
        ("r1", 0, "merge", "ended"),
        ("r1", 0, "merge", "kept"),
    ]
    with store.read() as s:
        assert s.execute(select(func.count()).select_from(StepRow)).scalar_one() == 5
