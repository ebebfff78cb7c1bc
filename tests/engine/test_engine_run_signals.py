"""Run signals in the store (``engine.run_signals``), merges ending duplicate
runs (``engine.merges``) and sends being retried, without Temporal."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
from sqlalchemy import select
from temporalio.exceptions import ApplicationError

from engine import ledger, merges, run_signals, runs, stats
from engine.activities import JourneyActivities
from engine.channels.base import ProviderResult
from engine.events import ingest_event, link_identities
from engine.settings import Settings
from engine.store import Store
from engine.store.models import RunSignal
from engine.tags import change_tags
from engine.templates import upsert_template
from engine.timeline import user_timeline
from tests.engine.engine_support import NOW, FakeProvider
from tests.engine.test_engine_activities import send_req


def _enter(store: Store, run_key: str, journey_id: str, user_id: str, minutes: int) -> None:
    store.transact(
        lambda s: runs.begin(
            s,
            store,
            run_key=run_key,
            journey_id=journey_id,
            version=1,
            user_id=user_id,
            mode="always",
            cooldown_seconds=None,
            now=NOW + timedelta(minutes=minutes),
        )
    )


def test_a_tag_change_is_queued_with_the_change_and_sent_to_other_journeys_runs(store: Store) -> None:
    uid = link_identities(store, [("phone", "13800000001")])
    _enter(store, f"journey:a:{uid}:r1", "a", uid, 0)
    _enter(store, f"journey:b:{uid}:r1", "b", uid, 1)
    before = {s.id for s in run_signals.unsent(store)}
    change_tags(store, uid, ["vip"], source="journey:a", add=True)
    change_tags(store, uid, ["vip"], source="api", add=True)  # carried already: no change, no signal
    (signal,) = [s for s in run_signals.unsent(store) if s.id not in before]
    assert (signal.kind, signal.payload, signal.source) == ("tags", {"added": ["vip"], "removed": []}, "journey:a")
    assert run_signals._targets(signal) == [f"journey:b:{uid}"]  # not the run whose step made it
    assert [(e.name, e.properties) for e in run_signals.tag_events(signal)] == [
        ("tag_added", {"tag": "vip", "source": "journey:a"})
    ]
    run_signals.mark_sent(store, [signal.id])
    assert signal.id not in {s.id for s in run_signals.unsent(store)}


def test_a_derived_stage_change_says_an_ingest_queued_signals(store: Store) -> None:
    first = ingest_event(store, event_id="e1", name="joined", identifiers={"phone": "13800000002"})
    again = ingest_event(store, event_id="e2", name="joined", identifiers={"phone": "13800000002"})
    assert first.signals  # stage:new
    assert not again.signals  # nothing changed


def test_a_merge_keeps_the_earliest_live_run_of_a_journey_and_ends_the_other(store: Store) -> None:
    old = link_identities(store, [("email", "a@example.com")])
    young = link_identities(store, [("phone", "13800000003")])
    _enter(store, f"journey:j:{young}:r1", "j", young, 0)  # the young user's run entered first
    _enter(store, f"journey:j:{old}:r1", "j", old, 5)
    _enter(store, f"journey:k:{old}:r1", "k", old, 6)  # one run only: untouched
    survivor = link_identities(store, [("email", "a@example.com"), ("phone", "13800000003")])
    assert survivor == old
    with store.read() as s:
        assert merges.ended_by_merge(s, f"journey:j:{old}:r1")
        assert not merges.ended_by_merge(s, f"journey:j:{young}:r1")
        assert not merges.ended_by_merge(s, f"journey:k:{old}:r1")
    merged = [s for s in run_signals.unsent(store) if s.kind == "merged"]
    assert [(s.workflow_id, s.payload) for s in merged] == [
        (f"journey:j:{old}", {"kept_run_key": f"journey:j:{young}:r1"})
    ]
    kinds = [(i.kind, i.status) for i in user_timeline(store, survivor) if i.kind == "step"]
    assert ("step", "ended") in kinds and ("step", "kept") in kinds


def test_a_send_being_retried_shows_its_attempts_and_last_error_and_counts_as_retrying(store: Store) -> None:
    upsert_template(store, "promo", "hi")
    uid = link_identities(store, [("phone", "13800000004")])
    timeout = ProviderResult(status="failed", error="vendor timeout", retryable=True)
    sms = FakeProvider("sms", [timeout, timeout])
    activities = JourneyActivities(store, {"sms": sms}, Settings(cap_per_day=9, cap_per_week=9))
    for _ in range(2):
        with pytest.raises(ApplicationError):
            asyncio.run(activities.send(send_req("k1", uid)))
        (item,) = [i for i in user_timeline(store, uid) if i.kind == "delivery"]
        assert item.status == "retrying" and item.reason is not None and "failed: vendor timeout" in item.reason
    assert item.detail["attempts"] == 2
    assert ledger.retrying(store, "j1") == {"n1": 1}
    assert stats.node_counts(store, "j1")["n1"].retrying == 1  # the journey's numbers count it too
    assert asyncio.run(activities.send(send_req("k1", uid))).status == "sent"
    (item,) = [i for i in user_timeline(store, uid) if i.kind == "delivery"]
    assert (item.status, item.summary) == ("sent", "sms · promo: sent after 3 attempts")
    assert ledger.retrying(store, "j1") == {}
    counted = stats.node_counts(store, "j1")["n1"]
    assert (counted.retrying, counted.sent) == (0, 1)


def test_sent_signals_older_than_the_bound_are_pruned_in_batches_and_unsent_ones_stay(store: Store) -> None:
    uid = link_identities(store, [("phone", "13800000009")])
    before = {s.id for s in run_signals.unsent(store, limit=1000)}
    for n in range(5):
        change_tags(store, uid, [f"t{n}"], source="api", add=True)
    mine = sorted(s.id for s in run_signals.unsent(store, limit=1000) if s.id not in before)
    assert len(mine) == 5
    run_signals.mark_sent(store, mine[:3], now=NOW - timedelta(days=8))  # old and sent: go
    run_signals.mark_sent(store, mine[3:4], now=NOW - timedelta(days=1))  # sent lately: stays
    # mine[4] stays unsent, however old the bound makes it

    def left() -> set[int]:
        with store.read() as s:
            return set(s.scalars(select(RunSignal.id).where(RunSignal.id.in_(mine))))

    assert run_signals.prune_sent(store, now=NOW, batch=2, batches=1) == 2  # one batch of two: bounded
    assert len(left()) == 3
    assert run_signals.prune_sent(store, now=NOW, batch=2, batches=5) == 1  # the rest, then a short batch ends it
    assert left() == set(mine[3:])
    assert run_signals.prune_sent(store, now=NOW + timedelta(days=30), batch=10) == 1  # the late one, in time
    assert left() == {mine[4]}
    assert [s.id for s in run_signals.unsent(store, user_id=uid) if s.id in mine] == [mine[4]]
