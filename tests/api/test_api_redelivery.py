"""Nothing is lost between the store and Temporal, and nothing is done twice.

An event is stored first and delivered to Temporal second; if the delivery
fails (Temporal refused or was unreachable, or the process died in between)
the event stays *undispatched*: a resend of the same ``messageId`` delivers
it instead of being dropped as a duplicate, and the sweep delivers what is
left. Delivering an event twice never enters a journey twice.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
from sqlalchemy import select, update
from sqlalchemy.orm import Session
from temporalio.service import RPCError, RPCStatusCode

from contracts.runs import workflow_id
from engine import dispatch
from engine.store.models import Delivery, Event, Run, RunSignal
from engine.store.types import utcnow
from tests.api.conftest import WRITE, Stack, auth, eventually, unique
from tests.api.ping_journey import deploy_ping


def _event_row(stack: Stack, message_id: str) -> Event | None:
    with stack.store.read() as s:
        return s.get(Event, message_id)


def _deliveries(stack: Stack, journey_id: str) -> list[Delivery]:
    with stack.store.read() as s:
        return list(s.scalars(select(Delivery).where(Delivery.journey_id == journey_id)))


def _admitted_runs(stack: Stack, journey_id: str) -> list[Run]:
    with stack.store.read() as s:
        return list(s.scalars(select(Run).where(Run.journey_id == journey_id, Run.admitted.is_(True))))


def _refuse_starts(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    refused: list[str] = []

    async def unavailable(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        refused.append(args[2].user_id)  # the run's input
        raise RPCError("temporal is unreachable", RPCStatusCode.UNAVAILABLE, b"")

    monkeypatch.setattr(dispatch, "start_run", unavailable)
    return refused


async def test_a_refused_delivery_is_made_by_the_resend_and_only_once(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    jid, event = await deploy_ping(stack, "ping")
    track = {"userId": unique("m"), "event": event, "messageId": unique("msg")}

    with monkeypatch.context() as m:
        refused = _refuse_starts(m)
        r = await stack.http.post("/v1/track", auth=(WRITE, ""), json=track)
        assert r.status_code == 200 and r.json() == {"success": True}  # stored: the sender may forget it
    assert len(refused) == 1
    stored = _event_row(stack, track["messageId"])
    assert stored is not None and stored.dispatched_at is None
    assert _admitted_runs(stack, jid) == []

    # Segment clients retry with the same messageId: this time it is delivered
    assert (await stack.http.post("/v1/track", auth=(WRITE, ""), json=track)).status_code == 200
    sent = await eventually(lambda: _async(_deliveries(stack, jid)))
    assert len(sent) == 1 and sent[0].status == "sent"
    await stack.app.state.dispatcher.flush_marks()  # marks are batched a moment later
    assert _event_row(stack, track["messageId"]).dispatched_at is not None

    # and once dispatched, the same message is a plain duplicate
    assert (await stack.http.post("/v1/track", auth=(WRITE, ""), json=track)).status_code == 200
    # also right after dispatching, before the batched mark is written
    quick = {"userId": unique("m"), "event": event, "messageId": unique("msg")}
    for _ in range(2):
        assert (await stack.http.post("/v1/track", auth=(WRITE, ""), json=quick)).status_code == 200
    await stack.app.state.dispatcher.flush_marks()
    runs = await eventually(lambda: _async(len(_admitted_runs(stack, jid)) == 2 and _admitted_runs(stack, jid)))
    assert runs and sorted(r.trigger_event_id for r in runs) == sorted([track["messageId"], quick["messageId"]])
    metrics = (await stack.http.get("/metrics", headers=auth())).text
    counts = {
        line.split('outcome="')[1].split('"')[0]: float(line.split()[-1])
        for line in metrics.splitlines()
        if line.startswith("journeys_events_ingested_total{")
    }
    assert counts["undispatched"] == 1 and counts["redelivered"] == 1 and counts["duplicate"] == 2
    # each run's send follows its entry a moment later: wait for both
    assert await eventually(lambda: _async(len(_deliveries(stack, jid)) == 2))
    assert len(_deliveries(stack, jid)) == 2


async def test_the_sweep_delivers_what_was_left_and_never_enters_twice(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    jid, event = await deploy_ping(stack, "ping")
    member = unique("m")
    track = {"userId": member, "event": event, "messageId": unique("msg")}
    with monkeypatch.context() as m:
        _refuse_starts(m)
        assert (await stack.http.post("/v1/track", auth=(WRITE, ""), json=track)).status_code == 200
    assert _event_row(stack, track["messageId"]).dispatched_at is None

    ingestor = stack.app.state.dispatcher
    assert await ingestor.sweep(stack.client, older_than=timedelta(hours=1)) == 0  # too recent to touch
    assert await ingestor.sweep(stack.client, older_than=timedelta(0)) >= 1
    sent = await eventually(lambda: _async(_deliveries(stack, jid)))
    assert len(sent) == 1
    await stack.app.state.dispatcher.flush_marks()
    assert _event_row(stack, track["messageId"]).dispatched_at is not None

    # The run has ended; now say the process died after Temporal took the event
    # but before it was marked: the sweep delivers it again, and the journey
    # (reentry always) must not be entered a second time for the same event.
    runs = await eventually(lambda: _async([r for r in _admitted_runs(stack, jid) if r.ended_at is not None]))
    assert len(runs) == 1
    # The store records the end before Temporal closes the run: wait for the
    # close, or the sweep's signal-with-start would reach the closing run.
    first = stack.client.get_workflow_handle(workflow_id(jid, runs[0].user_id))
    assert await asyncio.wait_for(first.result(), 60) != "refused"
    stack.store.transact(
        lambda s: s.execute(update(Event).where(Event.id == track["messageId"]).values(dispatched_at=None))
    )
    assert await ingestor.sweep(stack.client, older_than=timedelta(0)) >= 1
    handle = stack.client.get_workflow_handle(workflow_id(jid, runs[0].user_id))
    assert await asyncio.wait_for(handle.result(), 60) == "refused"  # the new run asked, and was told it had happened
    assert len(_deliveries(stack, jid)) == 1 and len(_admitted_runs(stack, jid)) == 1


async def _async(value):  # noqa: ANN001, ANN202
    return value


async def test_the_sweep_prunes_run_signals_sent_over_a_week_ago_and_keeps_the_rest(stack: Stack) -> None:
    now = utcnow()
    user = unique("m")
    ages = {"old-sent": (timedelta(days=8), True), "new-sent": (timedelta(days=1), True)}
    ages["old-unsent"] = (timedelta(days=30), False)

    def seed(s: Session) -> dict[str, int]:
        rows = {
            name: RunSignal(
                user_id=user,
                kind="tags",
                payload={},
                created_at=now - age,
                sent_at=(now - age) if sent else None,
                workflow_id=f"wf-{name}-{user}",  # no such run: an unsent one is given up on, not deleted
            )
            for name, (age, sent) in ages.items()
        }
        s.add_all(rows.values())
        s.flush()
        return {name: row.id for name, row in rows.items()}

    ids = stack.store.transact(seed)
    await stack.app.state.dispatcher.sweep(stack.client, older_than=timedelta(hours=1))
    with stack.store.read() as s:
        left = set(s.scalars(select(RunSignal.id).where(RunSignal.id.in_(list(ids.values())))))
    assert ids["old-sent"] not in left and ids["new-sent"] in left and ids["old-unsent"] in left
