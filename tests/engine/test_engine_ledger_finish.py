"""``ledger._finish`` settles a reservation in one UPDATE … RETURNING where the
database can; the first final answer must still win and a vanished key still
raise."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from engine import ledger
from engine.settings import Settings
from engine.store import Store

NOW = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)


def reserve(store: Store, key: str) -> ledger.DeliveryInfo:
    meta = ledger.DeliveryMeta(idempotency_key=key, user_id="u1", at=NOW, channel="webhook")
    info, go = store.transact(lambda s: ledger._reserve(s, store, Settings(), meta, None))
    assert go and info.status == "reserved"
    return info


def test_finish_settles_a_reservation_once(store: Store) -> None:
    reserved = reserve(store, "k1")
    sent = ledger._finish(store, "k1", "sent", None, "m-1")
    assert (sent.id, sent.status, sent.provider_message_id, sent.attempts) == (reserved.id, "sent", "m-1", 1)
    again = ledger._finish(store, "k1", "failed", "late", None)  # a retry deciding otherwise changes nothing
    assert (again.status, again.provider_message_id, again.reason) == ("sent", "m-1", None)
    assert ledger.lookup(store, "k1") == sent


def test_finish_pending_then_settle(store: Store) -> None:
    reserve(store, "k2")
    assert ledger._finish(store, "k2", "pending", None, "task-1").status == "pending"
    assert ledger._finish(store, "k2", "sent", None, "other").provider_message_id == "task-1"
    assert ledger.settle(store, "k2", "sent").status == "sent"


def test_finish_unknown_key_raises(store: Store) -> None:
    with pytest.raises(LookupError):
        ledger._finish(store, "nope", "sent", None, None)
