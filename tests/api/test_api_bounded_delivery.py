"""Ingest never waits on Temporal without a bound (issue 13 item 8), on the
API stack (real dev server and worker): a start that does not come back is
Temporal hanging (what its client does against an unreachable server, for
about ten seconds a call). The answer comes while the delivery is still
under way (``202``, the event stored), shutdown cancels deliveries past a
grace period and leaves their events undispatched, and the sweep drains a
backlog page after page with at most its concurrency of users at once,
each event delivered once.

No test here reads a clock: "answered before the delivery finished" is the
``202`` together with the event's delivery still in flight.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import timedelta

import pytest
from sqlalchemy import select

from engine import dispatch
from engine.dispatch import Bounds
from engine.store.models import Delivery, Event
from tests.api.conftest import WRITE, Stack, eventually, unique
from tests.api.ping_journey import deploy_ping


def _events(stack: Stack, ids: list[str]) -> dict[str, Event]:
    with stack.store.read() as s:
        return {e.id: e for e in s.scalars(select(Event).where(Event.id.in_(ids)))}


def _sent(stack: Stack, journey_id: str) -> list[tuple[str, str]]:
    with stack.store.read() as s:
        rows = s.execute(select(Delivery.user_id, Delivery.status).where(Delivery.journey_id == journey_id)).all()
    return sorted((user, status) for user, status in rows)


def _all_sent(stack: Stack, journey_id: str, count: int) -> list[tuple[str, str]] | None:
    """The journey's deliveries once there are ``count`` and none is still
    being sent (a reservation), else None (to poll again)."""
    found = _sent(stack, journey_id)
    return found if len(found) >= count and all(status != "reserved" for _, status in found) else None


def _user_of(stack: Stack, event_id: str) -> str:
    return _events(stack, [event_id])[event_id].user_id


class Hanging:
    """``engine.dispatch.start_run`` that never answers, like Temporal
    unreachable; counts the calls it swallowed."""

    def __init__(self) -> None:
        self.calls = 0

    async def __call__(self, *args: object, **kwargs: object) -> None:
        self.calls += 1
        await asyncio.Event().wait()


@pytest.fixture
def dispatcher(stack: Stack):  # noqa: ANN201 - the app's dispatcher, its bounds restored after the test
    found = stack.app.state.dispatcher
    before = found.bounds
    yield found
    found.bounds = before


async def test_track_answers_202_while_temporal_hangs_and_shutdown_leaves_it_to_the_sweep(
    stack: Stack, monkeypatch: pytest.MonkeyPatch, dispatcher: dispatch.Dispatcher
) -> None:
    dispatcher.bounds = replace(dispatcher.bounds, answer_within=0.2, deliver_within=600)
    jid, event = await deploy_ping(stack, "bound")
    one = {"userId": unique("m"), "event": event, "messageId": unique("msg")}
    many = [{"type": "track", "userId": unique("m"), "event": event, "messageId": unique("msg")} for _ in range(5)]
    ids = [one["messageId"], *(m["messageId"] for m in many)]

    hanging = Hanging()
    with monkeypatch.context() as m:
        m.setattr(dispatch, "start_run", hanging)
        r = await stack.http.post("/v1/track", auth=(WRITE, ""), json=one)
        assert (r.status_code, r.json()) == (202, {"success": True})
        assert one["messageId"] in dispatcher.in_flight  # answered before its delivery came back
        # a batch waits once for all of its messages, not once per message
        r = await stack.http.post("/v1/batch", auth=(WRITE, ""), json={"batch": many})
        assert (r.status_code, r.json()) == (202, {"success": True})
        assert set(ids) <= dispatcher.in_flight
        stored = _events(stack, ids)
        assert sorted(stored) == sorted(ids) and all(e.dispatched_at is None for e in stored.values())
        # a resend while its delivery is under way does not start a second one
        assert (await stack.http.post("/v1/track", auth=(WRITE, ""), json=one)).status_code == 202
        await eventually(lambda: _async(hanging.calls == len(ids)))
        assert hanging.calls == len(ids)

        # shutdown: the deliveries get their grace, then are cancelled
        assert await dispatcher.drain(0.1) == len(ids)
        assert not set(ids) & dispatcher.in_flight
        assert all(e.dispatched_at is None for e in _events(stack, ids).values())  # left to the sweep

    # Temporal answers again: the sweep delivers each once
    assert await dispatcher.sweep(stack.client, older_than=timedelta(0)) >= len(ids)
    users = sorted([one["userId"], *(m["userId"] for m in many)])
    sent = await eventually(lambda: _async(_all_sent(stack, jid, len(ids))))
    assert [status for _, status in sent] == ["sent"] * len(ids), sent
    await dispatcher.flush_marks()
    assert all(e.dispatched_at is not None for e in _events(stack, ids).values())
    assert await dispatcher.sweep(stack.client, older_than=timedelta(0)) == 0  # nothing left, nothing twice
    assert len(_sent(stack, jid)) == len(users)


async def test_a_delivery_past_its_deadline_gives_up_and_the_sweep_makes_it(
    stack: Stack, monkeypatch: pytest.MonkeyPatch, dispatcher: dispatch.Dispatcher
) -> None:
    dispatcher.bounds = replace(dispatcher.bounds, answer_within=0.05, deliver_within=0.2)
    jid, event = await deploy_ping(stack, "bound")
    track = {"userId": unique("m"), "event": event, "messageId": unique("msg")}
    with monkeypatch.context() as m:
        m.setattr(dispatch, "start_run", Hanging())
        assert (await stack.http.post("/v1/track", auth=(WRITE, ""), json=track)).status_code == 202
        await eventually(lambda: _async(track["messageId"] not in dispatcher.in_flight))  # gave up
    assert _events(stack, [track["messageId"]])[track["messageId"]].dispatched_at is None
    assert await dispatcher.sweep(stack.client, older_than=timedelta(0)) >= 1
    sent = await eventually(lambda: _async(_all_sent(stack, jid, 1)))
    assert [status for _, status in sent] == ["sent"], sent


async def test_the_sweep_drains_a_backlog_in_pages_with_bounded_concurrency(
    stack: Stack, monkeypatch: pytest.MonkeyPatch, dispatcher: dispatch.Dispatcher
) -> None:
    jid, event = await deploy_ping(stack, "bound")
    users = [unique("m") for _ in range(9)]
    tracks = [{"userId": u, "event": event, "messageId": unique("msg")} for u in users]
    tracks.append({"userId": users[0], "event": event, "messageId": unique("msg")})  # a user's second, in order
    with monkeypatch.context() as m:

        async def refused(*args: object, **kwargs: object) -> None:
            from temporalio.service import RPCError, RPCStatusCode

            raise RPCError("temporal is unreachable", RPCStatusCode.UNAVAILABLE, b"")

        m.setattr(dispatch, "start_run", refused)
        for track in tracks:
            assert (await stack.http.post("/v1/track", auth=(WRITE, ""), json=track)).status_code == 200
    ids = [t["messageId"] for t in tracks]
    assert all(e.dispatched_at is None for e in _events(stack, ids).values())

    real = dispatch.start_run
    running, peak, order = 0, 0, []

    async def counted(client, task_queue, inp, **kwargs):  # noqa: ANN001, ANN003, ANN202
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        order.append(inp.trigger_event.id)
        try:
            await asyncio.sleep(0.05)  # long enough for the others of the page to start meanwhile
            return await real(client, task_queue, inp, **kwargs)
        finally:
            running -= 1

    dispatcher.bounds = Bounds(sweep_batch=4, sweep_concurrency=3)
    monkeypatch.setattr(dispatch, "start_run", counted)
    # one sweep call, three pages of at most four: all ten, three users at once at most
    assert await dispatcher.sweep(stack.client, older_than=timedelta(0)) >= len(tracks)
    assert sorted(set(order) & set(ids)) == sorted(ids) and len([i for i in order if i in ids]) == len(ids)
    assert peak <= 3
    mine = [i for i in order if i in ids]
    assert mine.index(tracks[0]["messageId"]) < mine.index(tracks[-1]["messageId"])  # a user's events in order
    # (the user with two events may have had the second while the run of the
    # first was still going: a signal to it, not a second entry)
    sent = await eventually(lambda: _async(_all_sent(stack, jid, len(users))))
    assert sent is not None and {user for user, _ in sent} == {_user_of(stack, t["messageId"]) for t in tracks}
    assert all(status == "sent" for _, status in sent), sent


async def test_a_dispatcher_without_a_client_stores_and_leaves_the_event_to_the_sweep(
    stack: Stack, dispatcher: dispatch.Dispatcher
) -> None:
    """What a caller holding no client yet gets (the API itself answers 503
    until it has reached Temporal once; callbacks are stored this way)."""
    jid, event = await deploy_ping(stack, "bound")
    member, event_id = unique("m"), unique("msg")
    outcome = await dispatcher.ingest(
        None, event_id=event_id, name=event, identifiers=[("member_id", member)], properties={}, occurred_at=None
    )
    assert outcome.deferred and not outcome.complete
    assert _events(stack, [event_id])[event_id].dispatched_at is None
    assert await dispatcher.sweep(stack.client, older_than=timedelta(0)) >= 1
    sent = await eventually(lambda: _async(_all_sent(stack, jid, 1)))
    assert [status for _, status in sent] == ["sent"], sent


async def _async(value):  # noqa: ANN001, ANN202
    return value
