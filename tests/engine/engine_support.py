"""Shared test helpers for engine tests (import as ``from tests.engine.engine_support import ...``)."""

from __future__ import annotations

from datetime import UTC, datetime

from engine.channels.base import OutboundMessage, ProviderResult

NOW = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)


class FakeProvider:
    """Counts calls; answers from a script of results (default: sent)."""

    def __init__(self, channel: str, script: list[ProviderResult | Exception] | None = None) -> None:
        self.channel = channel
        self.calls: list[OutboundMessage] = []
        self.script = list(script or [])

    async def send(self, message: OutboundMessage) -> ProviderResult:
        self.calls.append(message)
        if self.script:
            item = self.script.pop(0)
            if isinstance(item, Exception):
                raise item
            return item
        return ProviderResult(status="sent", provider_message_id=f"{self.channel}-{len(self.calls)}")
