"""Helpers shared by the providers: result constructors, HTTP outcome mapping,
and the optional polling protocol.

Every provider answers with a :class:`ProviderResult` and never raises for a
vendor-side problem, because the send activity records the answer in the
deliveries ledger and decides about retries from ``retryable``; an exception
would lose the vendor's reason. Only programming errors propagate.
"""

from __future__ import annotations

import hashlib
from typing import Protocol, runtime_checkable

import httpx

from engine.channels.base import OutboundMessage, ProviderResult

# 4xx statuses that mean "try again later" rather than "this request is wrong":
# request timeout, too early, rate limited.
RETRYABLE_4XX: frozenset[int] = frozenset({408, 425, 429})


class ChannelError(Exception):
    """A vendor call failed; carries whether trying again later can help.

    Raised inside the vendor API clients and turned into a failed
    :class:`ProviderResult` at the provider boundary.
    """

    def __init__(self, message: str, *, retryable: bool, code: int | str | None = None) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.code = code  # the vendor's error code, when it gave one

    def result(self, provider_message_id: str | None = None) -> ProviderResult:
        return failed(str(self), retryable=self.retryable, provider_message_id=provider_message_id)


@runtime_checkable
class PollableProvider(Protocol):
    """A provider whose sends may answer ``pending`` and complete later.

    ``poll_result`` takes the ``provider_message_id`` of the pending result and
    answers ``sent``, ``failed`` or still ``pending``; the caller decides how
    long to keep polling (WeCom tasks wait for a staff member to confirm them).
    """

    channel: str

    async def poll_result(self, provider_message_id: str) -> ProviderResult: ...


def sent(provider_message_id: str | None) -> ProviderResult:
    return ProviderResult(status="sent", provider_message_id=provider_message_id)


def pending(provider_message_id: str) -> ProviderResult:
    return ProviderResult(status="pending", provider_message_id=provider_message_id)


def failed(error: str, *, retryable: bool, provider_message_id: str | None = None) -> ProviderResult:
    return ProviderResult(status="failed", error=error, retryable=retryable, provider_message_id=provider_message_id)


def missing_address(message: OutboundMessage) -> ProviderResult:
    """The user has no address on this channel: no attempt can ever succeed."""
    return failed(f"no {message.channel} address for user {message.user_id}", retryable=False)


def http_status_result(response: httpx.Response, *, what: str) -> ProviderResult | None:
    """Map a non-2xx HTTP status to a failed result; ``None`` for 2xx.

    5xx and the rate-limit/timeout 4xx codes are the vendor's temporary
    trouble and worth retrying; any other 4xx says the request itself is wrong,
    so repeating it can only fail again.
    """
    status = response.status_code
    if 200 <= status < 300:
        return None
    snippet = response.text[:300]
    retryable = status >= 500 or status in RETRYABLE_4XX
    return failed(f"{what} answered HTTP {status}: {snippet}", retryable=retryable)


def transport_error_result(exc: httpx.HTTPError, *, what: str) -> ProviderResult:
    """Timeouts and connection errors are retryable.

    A timeout is ambiguous (the vendor may have accepted the request); vendors
    that take an idempotency key dedupe the retry, reconcilable ones are asked
    before it, the rest may deliver twice (the table in ``engine.channels``).
    """
    kind = "timed out" if isinstance(exc, httpx.TimeoutException) else "transport error"
    return failed(f"{what} {kind}: {exc!r}", retryable=True)


def short_key(idempotency_key: str, max_len: int = 32) -> str:
    """A vendor-sized, deterministic stand-in for a long idempotency key.

    Some vendor dedupe fields are length-limited; hashing keeps the mapping
    deterministic so a retry of the same delivery sends the same value.
    """
    if len(idempotency_key) <= max_len:
        return idempotency_key
    return hashlib.sha256(idempotency_key.encode()).hexdigest()[:max_len]


def template_params(message: OutboundMessage) -> dict[str, str]:
    """Vendor template parameters from ``data["params"]`` (stringified).

    Template-based channels (SMS, WeChat template/subscribe messages) carry
    structured parameters rather than free text; when a journey provides none
    the rendered body goes out as the single parameter ``content``.
    """
    params = message.data.get("params")
    if isinstance(params, dict) and params:
        return {str(k): str(v) for k, v in params.items()}
    return {"content": message.body}


class HttpClientHolder:
    """Owns an ``httpx.AsyncClient`` unless one is shared in.

    Sharing one client across providers pools connections; a provider built
    alone creates its own on first use (inside the running event loop) and
    closes it in :meth:`aclose`.
    """

    def __init__(self, client: httpx.AsyncClient | None, *, timeout_s: float) -> None:
        self._client = client
        self._owns_client = client is None
        self._timeout = httpx.Timeout(timeout_s)

    @property
    def http(self) -> httpx.AsyncClient:
        if self._client is None:
            self._client = httpx.AsyncClient()
        return self._client

    @property
    def timeout(self) -> httpx.Timeout:
        """Per-request timeout: a shared client's own default must not decide ours."""
        return self._timeout

    async def aclose(self) -> None:
        if self._owns_client and self._client is not None:
            await self._client.aclose()
            self._client = None
