"""``runs.record_steps`` writes a batch with one lookup and one bulk insert; it
must stay idempotent: overlapping batches, duplicates inside a batch, the same
local activity running twice (also at the same time) store each record once."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

from sqlalchemy import func, select

from contracts.activities import EndRunRequest, RecordStepsRequest, StepRecord
from engine import runs
from engine.activities import JourneyActivities
from engine.settings import Settings
from engine.store import Store
from engine.store.models import Run
from engine.store.models import StepRecord as StepRow

NOW = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)


def rec(seq: int, node: str = "n", kind: str = "wait", outcome: str = "waiting", **kw: object) -> StepRecord:
    base: dict[str, object] = {
        "run_key": "r1",
        "seq": seq,
        "journey_id": "j1",
        "version": 1,
        "user_id": "u1",
        "node_id": node,
        "kind": kind,
        "outcome": outcome,
        "at": NOW + timedelta(seconds=seq),
    }
    base.update(kw)
    return StepRecord.model_validate(base)


def stored(store: Store) -> list[tuple[str, int, str, str]]:
    with store.read() as s:
        rows = s.execute(select(StepRow.run_key, StepRow.seq, StepRow.node_id, StepRow.outcome).order_by(StepRow.id))
        return [tuple(r) for r in rows]  # type: ignore[misc]


def begin_run(store: Store, run_key: str = "r1") -> None:
    store.transact(
        lambda s: runs.begin(
            s,
            store,
            run_key=run_key,
            journey_id="j1",
            version=1,
            user_id="u1",
            mode="always",
            cooldown_seconds=None,
            now=NOW,
        )
    )


def test_overlapping_batches_store_each_record_once(store: Store) -> None:
    assert runs.record_steps(store, [rec(1), rec(2)]) == 2
    assert runs.record_steps(store, [rec(2), rec(3)]) == 1
    assert runs.record_steps(store, [rec(1), rec(2), rec(3)]) == 0
    assert [r[1] for r in stored(store)] == [1, 2, 3]


def test_duplicate_in_one_batch_is_stored_once(store: Store) -> None:
    assert runs.record_steps(store, [rec(1), rec(1), rec(2)]) == 2
    assert len(stored(store)) == 2


def test_one_record_per_run_and_seq_the_last_written(store: Store) -> None:
    # a workflow task retried from its start writes its seqs again, at its own
    # time and perhaps with another outcome: the retry's is what the run did
    assert runs.record_steps(store, [rec(1), rec(1, run_key="r2"), rec(2)]) == 3
    retried = [rec(1, outcome="event", at=NOW + timedelta(microseconds=1)), rec(2, node="m")]
    assert runs.record_steps(store, retried) == 0
    assert stored(store) == [("r1", 1, "n", "event"), ("r2", 1, "n", "waiting"), ("r1", 2, "m", "waiting")]
    # the time is compared as an instant, whatever its time zone
    shifted = retried[0].model_copy(update={"at": retried[0].at.astimezone(timezone_plus_8())})
    assert runs.record_steps(store, [shifted]) == 0
    assert len(stored(store)) == 3


def timezone_plus_8():  # noqa: ANN201
    from datetime import timezone

    return timezone(timedelta(hours=8))


def test_run_variant_and_conversion_follow_records(store: Store) -> None:
    begin_run(store)
    runs.record_steps(store, [rec(1, node="s", kind="split", outcome="variant:B", variant="B")])
    runs.record_steps(store, [rec(2, node="s2", kind="split", outcome="variant:A", variant="A")])
    goal = rec(3, node="g", kind="goal", outcome="converted")
    runs.record_steps(store, [goal])
    runs.record_steps(store, [rec(4, node="g", kind="goal", outcome="converted")])  # first conversion wins
    with store.read() as s:
        run = s.scalars(select(Run).where(Run.run_key == "r1")).one()
        assert run.variant == "B" and run.converted_at == goal.at


def test_concurrent_calls_store_each_record_once(store: Store) -> None:
    batch = [rec(i) for i in range(1, 21)]
    barrier = threading.Barrier(4)
    added: list[int] = []
    errors: list[BaseException] = []

    def call() -> None:
        try:
            barrier.wait()
            added.append(runs.record_steps(store, batch))
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=call) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert sum(added) == 20
    with store.read() as s:
        assert s.execute(select(func.count()).select_from(StepRow)).scalar_one() == 20


async def test_activity_records_and_ends_once_when_run_twice(store: Store) -> None:
    acts = JourneyActivities(store, {}, Settings())
    begin_run(store)
    end = EndRunRequest(run_key="r1", journey_id="j1", user_id="u1", outcome="completed", now=NOW + timedelta(hours=1))
    req = RecordStepsRequest(records=[rec(1), rec(2, node="end", kind="end", outcome="completed")], end=end)
    await acts.record_steps(req)
    later = end.model_copy(update={"outcome": "exited", "now": NOW + timedelta(hours=2)})
    await acts.record_steps(req.model_copy(update={"end": later}))  # a local activity may run twice
    assert len(stored(store)) == 2
    with store.read() as s:
        run = s.scalars(select(Run).where(Run.run_key == "r1")).one()
        assert run.outcome == "completed" and run.ended_at == NOW + timedelta(hours=1)


async def test_activity_end_without_records(store: Store) -> None:
    acts = JourneyActivities(store, {}, Settings())
    end = EndRunRequest(run_key="r9", journey_id="j1", user_id="u1", outcome="exited", now=NOW)
    await acts.record_steps(RecordStepsRequest(records=[], end=end))
    with store.read() as s:
        run = s.scalars(select(Run).where(Run.run_key == "r9")).one()
        assert run.outcome == "exited"
