"""The worker's poller settles pending (task-style) sends through the provider."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from engine import ledger
from engine.activities import JourneyActivities
from engine.channels.base import OutboundMessage, ProviderResult
from engine.settings import Settings
from runtime.worker import poll_pending_sends


class TaskProvider:
    """Like WeCom add_msg_template: accepted as pending, confirmed later."""

    channel = "wecom"

    def __init__(self) -> None:
        self.polls: list[str] = []
        self.confirmed = False

    async def send(self, message: OutboundMessage) -> ProviderResult:
        return ProviderResult(status="pending", provider_message_id="msg-1")

    async def poll_result(self, msgid: str) -> ProviderResult:
        self.polls.append(msgid)
        return ProviderResult(status="sent" if self.confirmed else "pending", provider_message_id=msgid)


async def test_poller_settles_pending_send_once_confirmed(store) -> None:
    provider = TaskProvider()
    activities = JourneyActivities(store, {"wecom": provider}, Settings())
    meta = ledger.DeliveryMeta(
        idempotency_key="k1",
        at=datetime.now(UTC),
        run_key="r",
        journey_id="j",
        version=1,
        node_id="n",
        user_id="u",
        channel="wecom",
        template="t",
    )
    message = OutboundMessage(idempotency_key="k1", user_id="u", channel="wecom", address="x", template="t", body="b")
    info = await ledger.deliver(store, Settings(), provider, meta, message, None)
    assert info.status == "pending"

    stop = asyncio.Event()
    task = asyncio.create_task(poll_pending_sends(activities, stop, every=0.01))
    for _ in range(100):
        if provider.polls:
            break
        await asyncio.sleep(0.01)
    assert ledger.lookup(store, "k1").status == "pending"
    provider.confirmed = True
    for _ in range(200):
        if ledger.lookup(store, "k1").status == "sent":
            break
        await asyncio.sleep(0.01)
    stop.set()
    await task
    assert ledger.lookup(store, "k1").status == "sent"
