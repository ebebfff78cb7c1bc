"""Callback receipts on SQLite and PostgreSQL: one row per message however
many deliveries race, one claim of its one-time effects, and what the sweep
sees."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

from sqlalchemy import func, select

from engine.callbacks import receipts
from engine.store import Store
from engine.store.models import CallbackReceipt
from engine.store.types import utcnow

MESSAGE = {"MsgType": "event", "Event": "change_external_contact", "ExternalUserID": "wm1", "CreateTime": "1"}


def _count(store: Store) -> int:
    with store.read() as s:
        return int(s.scalar(select(func.count()).select_from(CallbackReceipt)) or 0)


def test_the_id_derives_from_the_message_and_receiver() -> None:
    a = receipts.receipt_id("wecom", "corp", MESSAGE)
    assert a == receipts.receipt_id("wecom", "corp", dict(reversed(list(MESSAGE.items()))))  # field order aside
    assert a != receipts.receipt_id("wecom", "other-corp", MESSAGE)
    assert a != receipts.receipt_id("wecom", "corp", MESSAGE | {"CreateTime": "2"})
    assert a.startswith("wecom:") and len(a) <= 64


def test_racing_deliveries_of_one_message_store_one_receipt(store: Store) -> None:
    def deliver(_: int) -> bool:
        return receipts.store(store, vendor="wecom", receiver="corp", kind="event", message=MESSAGE)[1]

    with ThreadPoolExecutor(8) as pool:
        stored = list(pool.map(deliver, range(8)))
    assert stored.count(True) == 1
    assert _count(store) == 1


def test_one_claim_and_the_sweeps_view(store: Store) -> None:
    receipt, _ = receipts.store(store, vendor="wecom", receiver="corp", kind="event", message=MESSAGE)
    assert [r.id for r in receipts.pending(store, received_before=utcnow() + timedelta(seconds=1))] == [receipt.id]
    assert receipts.pending(store, received_before=utcnow() - timedelta(hours=1)) == []
    claims = [store.transact(lambda s: receipts.claim(s, receipt.id)) for _ in range(3)]
    assert claims == [True, False, False]
    receipts.fail(store, receipt.id, "database went away")
    got = receipts.get(store, receipt.id)
    assert got is not None and got.attempts == 1 and got.applied and not got.processed
    receipts.finish(store, receipt.id, {"events": [receipt.id]})
    got = receipts.get(store, receipt.id)
    assert got is not None and got.processed and got.attempts == 2 and got.outcome == {"events": [receipt.id]}
    assert receipts.pending(store, received_before=utcnow() + timedelta(seconds=1)) == []


def test_a_message_with_nothing_to_do_is_stored_processed(store: Store) -> None:
    ignored = MESSAGE | {"Event": "change_external_tag"}
    receipt, new = receipts.store(
        store, vendor="wecom", receiver="corp", kind="event", message=ignored, outcome={"events": [], "ignored": "x"}
    )
    assert new and receipt.processed
    assert receipts.pending(store, received_before=utcnow() + timedelta(seconds=1)) == []


def test_receipts_that_keep_failing_do_not_hold_back_the_others(store: Store) -> None:
    stuck, _ = receipts.store(store, vendor="wecom", receiver="corp", kind="event", message=MESSAGE)
    fresh, _ = receipts.store(
        store, vendor="wecom", receiver="corp", kind="event", message=MESSAGE | {"CreateTime": "9"}
    )
    for _ in range(2):
        receipts.fail(store, stuck.id, "poison")
    later = utcnow() + timedelta(seconds=1)
    assert [r.id for r in receipts.pending(store, received_before=later, limit=1)] == [fresh.id]
    assert [r.id for r in receipts.pending(store, received_before=later)] == [fresh.id, stuck.id]
