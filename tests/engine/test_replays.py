"""Sends that outlast a vendor outage: retried until the channel's deadline,
then failed with the reason, then replayed by an operator with the same key
(``engine.replays``), without Temporal."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
from sqlalchemy import select, update
from temporalio.exceptions import ApplicationError

from engine import ledger, replays, stats
from engine.activities import JourneyActivities
from engine.channels.base import ProviderResult
from engine.consent import opt_out
from engine.events import link_identities
from engine.settings import Settings
from engine.store import Store
from engine.store.models import Delivery
from engine.templates import upsert_template
from engine.timeline import user_timeline
from tests.engine.engine_support import NOW, FakeProvider
from tests.engine.test_engine_activities import send_req

DOWN = ProviderResult(status="failed", error="vendor 503", retryable=True)
CAPS = {"cap_per_day": 9, "cap_per_week": 9}


def _user(store: Store, phone: str = "13800000011") -> str:
    upsert_template(store, "promo", "hi")
    return link_identities(store, [("phone", phone)])


def _send(acts: JourneyActivities, key: str, uid: str) -> str:
    return asyncio.run(acts.send(send_req(key, uid))).status


def _row(store: Store, key: str) -> Delivery:
    with store.read() as s:
        return s.scalars(select(Delivery).where(Delivery.idempotency_key == key)).one()


def _age(store: Store, key: str, by: timedelta) -> None:
    """Move the first attempt back in time: as if the outage had lasted."""
    row = _row(store, key)
    store.transact(
        lambda s: s.execute(
            update(Delivery).where(Delivery.idempotency_key == key).values(created_at=row.created_at - by)
        )
    )


def test_a_send_retries_until_the_channels_deadline_then_fails_with_the_reason(store: Store) -> None:
    uid = _user(store)
    sms = FakeProvider("sms", [DOWN] * 5)
    settings = Settings(send_retry_deadline_seconds=3600, **CAPS)
    acts = JourneyActivities(store, {"sms": sms}, settings)
    for _ in range(3):  # an hour's deadline: three quick failures are retried
        with pytest.raises(ApplicationError):
            _send(acts, "k1", uid)
    assert _row(store, "k1").status == "reserved"
    _age(store, "k1", timedelta(minutes=61))
    assert _send(acts, "k1", uid) == "failed"
    row = _row(store, "k1")
    assert row.reason is not None and row.reason.startswith("gave up after 4 attempts over 1h01m: vendor 503")
    assert row.replay_request is not None  # kept for a replay
    assert {m.idempotency_key for m in sms.calls} == {"k1"}


def test_deadlines_are_per_channel(store: Store) -> None:
    uid = _user(store)
    settings = Settings(send_retry_deadline_seconds=6 * 3600, send_retry_deadlines={"sms": 0}, **CAPS)
    sms, push = FakeProvider("sms", [DOWN]), FakeProvider("push", [DOWN])
    acts = JourneyActivities(store, {"sms": sms, "push": push}, settings)
    assert _send(acts, "k-sms", uid) == "failed"  # no retries on SMS
    assert settings.send_retry_deadline("push") == 6 * 3600
    with pytest.raises(ValueError):
        Settings(send_retry_deadline_seconds=2 * 86400)  # past the interpreter's own bound


def test_replay_sends_a_failed_send_once_more_with_its_key(store: Store) -> None:
    uid = _user(store)
    sms = FakeProvider("sms", [DOWN])
    acts = JourneyActivities(store, {"sms": sms}, Settings(send_retry_deadline_seconds=0, **CAPS))
    assert _send(acts, "k1", uid) == "failed"
    assert stats.node_counts(store, "j1")["n1"].failed == 1

    done = replays.request(store, acts.settings, "j1")
    assert (done.requested, done.capped, done.not_replayable, done.more) == (1, 0, 0, False)
    assert _row(store, "k1").status == replays.REPLAYING
    assert asyncio.run(replays.drain(acts)) == 1
    row = _row(store, "k1")
    assert row.status == "sent"
    assert [m.idempotency_key for m in sms.calls] == ["k1", "k1"]  # the vendor can de-duplicate by key
    counted = stats.node_counts(store, "j1")["n1"]
    assert (counted.failed, counted.sent) == (0, 1)
    (item,) = [i for i in user_timeline(store, uid) if i.kind == "delivery"]
    assert item.status == "sent"
    # nothing failed any more: a second request marks nothing, a drain sends nothing
    assert replays.request(store, acts.settings, "j1").requested == 0
    assert asyncio.run(replays.drain(acts)) == 0
    assert len(sms.calls) == 2


def test_a_replay_that_fails_again_retries_later_then_fails_and_can_be_replayed_again(store: Store) -> None:
    uid = _user(store)
    sms = FakeProvider("sms", [DOWN] * 4)
    acts = JourneyActivities(store, {"sms": sms}, Settings(send_retry_deadline_seconds=600, **CAPS))
    with pytest.raises(ApplicationError):
        _send(acts, "k1", uid)
    _age(store, "k1", timedelta(minutes=11))
    assert _send(acts, "k1", uid) == "failed"
    replays.request(store, acts.settings, "j1")
    assert asyncio.run(replays.drain(acts)) == 1  # still down: retried, not failed
    row = _row(store, "k1")
    assert (row.status, row.last_error) == (replays.REPLAYING, "vendor 503")
    assert asyncio.run(replays.drain(acts)) == 0  # leased: not again at once
    _age(store, "k1", timedelta(minutes=11))
    store.transact(
        lambda s: s.execute(
            update(Delivery)
            .where(Delivery.idempotency_key == "k1")
            .values(updated_at=row.updated_at - replays.LEASE - timedelta(seconds=1))
        )
    )
    assert asyncio.run(replays.drain(acts)) == 1
    assert _row(store, "k1").status == "failed"  # the replay's own deadline passed
    assert replays.request(store, acts.settings, "j1").requested == 1
    assert asyncio.run(replays.drain(acts)) == 1
    assert _row(store, "k1").status == "sent"


def test_a_replay_respects_the_caps_and_consent_of_now(store: Store) -> None:
    capped_user = _user(store, "13800000012")
    quitter = link_identities(store, [("phone", "13800000013")])
    sms = FakeProvider("sms", [DOWN, DOWN])
    acts = JourneyActivities(store, {"sms": sms}, Settings(send_retry_deadline_seconds=0, cap_per_day=1))
    assert _send(acts, "k-capped", capped_user) == "failed"
    assert _send(acts, "k-quit", quitter) == "failed"
    assert _send(acts, "k-other", capped_user) == "sent"  # the cap's one slot, taken since
    opt_out(store, quitter, "sms")
    done = replays.request(store, acts.settings, "j1", now=NOW + timedelta(hours=1))  # within k-other's day
    assert (done.requested, done.capped) == (1, 1)
    assert _row(store, "k-capped").status == "failed"
    asyncio.run(replays.drain(acts))
    quit_row = _row(store, "k-quit")
    assert quit_row.status == "suppressed"  # opted out since: not sent
    assert [m.idempotency_key for m in sms.calls].count("k-quit") == 1


def test_a_row_is_sent_by_one_drain_when_two_claim_it(store: Store) -> None:
    uid = _user(store)
    sms = FakeProvider("sms", [DOWN])
    acts = JourneyActivities(store, {"sms": sms}, Settings(send_retry_deadline_seconds=0, **CAPS))
    assert _send(acts, "k1", uid) == "failed"
    replays.request(store, acts.settings, "j1")

    async def both() -> list[int]:
        return list(await asyncio.gather(replays.drain(acts), replays.drain(acts)))

    assert sorted(asyncio.run(both())) == [0, 1]
    assert [m.idempotency_key for m in sms.calls] == ["k1", "k1"]


def test_failed_rows_without_a_kept_request_are_reported_not_replayed(store: Store) -> None:
    uid = _user(store)
    acts = JourneyActivities(store, {"sms": FakeProvider("sms", [DOWN])}, Settings(send_retry_deadline_seconds=0))
    assert _send(acts, "k1", uid) == "failed"
    store.transact(lambda s: s.execute(update(Delivery).values(replay_request=None)))  # as recorded before 0008
    done = replays.request(store, acts.settings, "j1", node_id="n1", version=1)
    assert (done.requested, done.not_replayable) == (0, 1)
    assert replays.request(store, acts.settings, "j1", node_id="other").not_replayable == 0
    assert ledger.lookup(store, "k1").status == "failed"
