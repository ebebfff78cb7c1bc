"""Official Account delivery reports (``TEMPLATESENDJOBFINISH``) onto the
ledger, on SQLite and PostgreSQL: found through the recipient's sends, a
pending send settled by ``ledger.settle``, a final one kept (the report
stays on the receipt), an unknown message id noted."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from engine import ledger
from engine.callbacks import receipts
from engine.callbacks.messages import Message
from engine.callbacks.processing import CallbackProcessor
from engine.channels.base import OutboundMessage, ProviderResult
from engine.dispatch import Dispatcher
from engine.events import link_identities
from engine.journey_cache import JourneyCache
from engine.settings import Settings
from engine.store import Store


class Answers:
    """A provider that answers what it is told (the ledger's side of a send
    is what is under test here, not a vendor)."""

    channel = "official_account"

    def __init__(self, result: ProviderResult) -> None:
        self.result = result

    async def send(self, message: OutboundMessage) -> ProviderResult:
        return self.result


async def _send(store: Store, settings: Settings, uid: str, key: str, result: ProviderResult) -> ledger.DeliveryInfo:
    meta = ledger.DeliveryMeta(idempotency_key=key, user_id=uid, at=datetime.now(UTC), channel="official_account")
    message = OutboundMessage(
        idempotency_key=key, user_id=uid, channel="official_account", address="o1", template="t", body="hi"
    )
    info = await ledger.deliver(store, settings, Answers(result), meta, message, None)
    assert isinstance(info, ledger.DeliveryInfo)
    return info


def _report(msg_id: str, status: str, openid: str = "o-report-1") -> Message:
    return {
        "ToUserName": "gh_account",
        "FromUserName": openid,
        "CreateTime": "1700000000",
        "MsgType": "event",
        "Event": "TEMPLATESENDJOBFINISH",
        "MsgID": msg_id,
        "Status": status,
    }


async def _process(store: Store, settings: Settings, message: Message) -> dict:
    processor = CallbackProcessor(store, settings, Dispatcher(store, settings, JourneyCache(store)), lambda: None)
    receipt, _ = receipts.store(store, vendor="official_account", receiver="wx-app", kind="event", message=message)
    assert await processor.process(receipt.id)
    got = receipts.get(store, receipt.id)
    assert got is not None and got.processed and got.outcome is not None
    return got.outcome["report"]


@pytest.fixture
def oa_settings() -> Settings:
    return Settings(database_url="sqlite://", cap_per_day=None, cap_per_week=None)


async def test_a_pending_send_is_settled_by_its_report(store: Store, oa_settings: Settings) -> None:
    uid = link_identities(store, [("openid", "o-report-1")])
    pending = await _send(
        store, oa_settings, uid, "run:a:1", ProviderResult(status="pending", provider_message_id="9001")
    )
    assert pending.status == "pending"
    report = await _process(store, oa_settings, _report("9001", "failed:user block"))
    assert report["delivery"] == pending.id and report["ledger_status"] == "failed"
    row = ledger.lookup(store, "run:a:1")
    assert row is not None and row.status == "failed" and "blocks" in (row.reason or "")


async def test_a_sent_send_reported_undelivered_becomes_failed_and_the_first_final_word_stands(
    store: Store, oa_settings: Settings
) -> None:
    uid = link_identities(store, [("openid", "o-report-1")])
    sent = await _send(store, oa_settings, uid, "run:b:1", ProviderResult(status="sent", provider_message_id="9002"))
    report = await _process(store, oa_settings, _report("9002", "failed: system failed"))
    assert report == {
        "provider_message_id": "9002",
        "status": "failed",
        "reason": "WeChat failed to deliver it (system failure) (failed: system failed)",
        "delivery": sent.id,
        "ledger_status": "failed",
    }
    row = ledger.lookup(store, "run:b:1")
    assert row is not None and row.reason is not None and row.reason.startswith("vendor reported it undelivered")
    # a later "success" for the same message does not undo the failure
    ok = await _process(store, oa_settings, _report("9002", "success") | {"CreateTime": "1700000001"})
    assert ok["status"] == "sent" and ok["ledger_status"] == "failed"


async def test_a_report_for_no_known_send_is_noted(store: Store, oa_settings: Settings) -> None:
    link_identities(store, [("openid", "o-report-2")])
    report = await _process(store, oa_settings, _report("424242", "success", openid="o-report-2"))
    assert report["delivery"] is None
    # another user's send with that id is not it
    uid = link_identities(store, [("openid", "o-report-3")])
    await _send(store, oa_settings, uid, "run:c:1", ProviderResult(status="pending", provider_message_id="555"))
    report = await _process(store, oa_settings, _report("555", "success", openid="o-report-2"))
    assert report["delivery"] is None
    row = ledger.lookup(store, "run:c:1")
    assert row is not None and row.status == "pending"
