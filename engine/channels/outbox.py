"""The outbox: a provider that records messages instead of sending them.

The embedded demo (``journeys up --demo``) has no vendor accounts and no
network, yet should show what each user would have received. Every channel
then writes into one :class:`Outbox` — a list in memory and, if configured, a
JSONL file a UI or a person can tail.

It honours idempotency keys like a good vendor: a key already recorded (also
in an earlier process, read back from the file) is acknowledged again without
a second record, so the outbox shows the exactly-once behaviour of the engine
rather than hiding duplicates.

With a file, the file is the record: the messages are not also kept in
memory (the embedded default's worker held every message it ever "sent",
2.3 kB each decoded: over a 100k-user broadcast its RSS grew 280 → 462 MB,
``bench/waiting_bench.py``), and only the newest ``KEPT_KEYS`` idempotency
keys are remembered, as a vendor's de-duplication window is bounded too. A
key comes back when a send is retried (an activity redone after a crash,
within minutes), not after fifty thousand other messages.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections import OrderedDict
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from engine.channels._common import sent
from engine.channels.base import OutboundMessage, ProviderResult

KEPT_KEYS = 50_000  # idempotency keys remembered, the newest: ~12 MB of 110-character keys; 40 min of sends at 20/s


class Outbox:
    def __init__(self, path: Path | None = None) -> None:
        self.path = path
        self.records: list[dict[str, Any]] = []  # kept in memory only without a file
        self._keys: OrderedDict[str, None] = OrderedDict()
        self._lock = threading.Lock()
        for record in self._file_records():  # one line at a time: the file can hold millions
            self._remember(record["idempotency_key"])

    def _file_records(self) -> Iterator[dict[str, Any]]:
        if self.path is None or not self.path.exists():
            return
        with self.path.open(encoding="utf-8") as f:
            for line in f:
                if line.strip():
                    yield json.loads(line)

    def _remember(self, key: str) -> None:
        self._keys[key] = None
        self._keys.move_to_end(key)
        while len(self._keys) > KEPT_KEYS:
            self._keys.popitem(last=False)

    def messages(self, channel: str | None = None) -> list[OutboundMessage]:
        """Messages recorded, optionally for one channel: by this outbox in
        memory, or everything in its file (earlier processes' too)."""
        with self._lock:
            records = list(self.records) if self.path is None else list(self._file_records())
        return [
            OutboundMessage.model_validate(r["message"]) for r in records if channel is None or r["channel"] == channel
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
            else:
                self.records.append(record)
            self._remember(message.idempotency_key)
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
