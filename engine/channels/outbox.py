"""The outbox: a provider that records messages instead of sending them.

The embedded demo (``journeys up --demo``) has no vendor accounts and no
network, yet should show what each user would have received. Every channel
then writes into one :class:`Outbox` — a list in memory and, if configured, a
JSONL file a UI or a person can tail.

It honours idempotency keys like a good vendor: a key already recorded (also
in an earlier process, read back from the file) is acknowledged again without
a second record, so the outbox shows the exactly-once behaviour of the engine
rather than hiding duplicates.
"""

from __future__ import annotations

import asyncio
import json
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from engine.channels._common import sent
from engine.channels.base import OutboundMessage, ProviderResult


class Outbox:
    def __init__(self, path: Path | None = None) -> None:
        self.path = path
        self.records: list[dict[str, Any]] = []
        self._keys: set[str] = set()
        self._lock = threading.Lock()
        if path is not None and path.exists():
            with path.open(encoding="utf-8") as f:
                for line in f:
                    line = line.strip()
                    if line:
                        self._keys.add(json.loads(line)["idempotency_key"])

    def messages(self, channel: str | None = None) -> list[OutboundMessage]:
        """Messages recorded by this process, optionally for one channel."""
        return [
            OutboundMessage.model_validate(r["message"])
            for r in self.records
            if channel is None or r["channel"] == channel
        ]

    def record(self, message: OutboundMessage) -> bool:
        """Record ``message``; ``False`` if its idempotency key was already seen."""
        with self._lock:
            if message.idempotency_key in self._keys:
                return False
            record = {
                "recorded_at": datetime.now(UTC).isoformat(),
                "channel": message.channel,
                "idempotency_key": message.idempotency_key,
                "message": message.model_dump(mode="json"),
            }
            if self.path is not None:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                with self.path.open("a", encoding="utf-8") as f:
                    f.write(json.dumps(record, ensure_ascii=False) + "\n")
            self._keys.add(message.idempotency_key)
            self.records.append(record)
            return True


class OutboxProvider:
    """Stands in for the real provider of ``channel``; always answers ``sent``."""

    def __init__(self, channel: str, outbox: Outbox) -> None:
        self.channel = channel
        self.outbox = outbox

    async def send(self, message: OutboundMessage) -> ProviderResult:
        await asyncio.to_thread(self.outbox.record, message)
        return sent(f"outbox:{message.idempotency_key}")


class UnconfiguredProvider:
    """The provider of a channel with no credentials in live mode.

    Answers a non-retryable failure naming the missing settings, so the ledger
    says why and best-channel fallback moves on, rather than the worker failing
    at start-up for a channel no journey uses.
    """

    def __init__(self, channel: str) -> None:
        self.channel = channel

    async def send(self, message: OutboundMessage) -> ProviderResult:
        return ProviderResult(
            status="failed",
            error=f"channel {self.channel!r} is not configured (set channels.{self.channel} or use the outbox)",
            retryable=False,
        )
