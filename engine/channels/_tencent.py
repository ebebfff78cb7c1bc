"""The calling convention WeCom (企业微信) and WeChat (微信) APIs share.

Both answer HTTP 200 with a JSON body carrying ``errcode``/``errmsg`` (0 = ok),
take ``access_token`` as a query parameter, and reject stale tokens with
specific errcodes. This client fetches and caches the token, retries a call
exactly once with a fresh token when the vendor rejects the cached one, and
turns every failure into a :class:`ChannelError` whose ``retryable`` comes
from the errcode: "system busy" and frequency limits are worth retrying, bad
parameters or an unsubscribed user are not.
"""

from __future__ import annotations

from typing import Any

import httpx

from engine.channels._common import RETRYABLE_4XX, ChannelError, HttpClientHolder
from engine.channels._token import AccessTokenCache


class TencentApiClient:
    vendor: str = "tencent"
    token_errcodes: frozenset[int] = frozenset()
    retryable_errcodes: frozenset[int] = frozenset({-1})

    def __init__(self, base_url: str, *, client: httpx.AsyncClient | None, timeout_s: float) -> None:
        self.base_url = base_url.rstrip("/")
        self._holder = HttpClientHolder(client, timeout_s=timeout_s)
        self.tokens = AccessTokenCache(self._fetch_token)

    async def _fetch_token(self) -> tuple[str, float]:
        raise NotImplementedError

    async def call(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        """POST ``body`` to ``path`` with the cached token; the ok payload or raise."""
        for attempt in range(2):
            token = await self.tokens.get()
            payload = await self.request("POST", path, params={"access_token": token}, json=body)
            errcode = _errcode(payload)
            if errcode in self.token_errcodes and attempt == 0:
                self.tokens.invalidate(token)
                continue
            self.check(payload, path)
            return payload
        raise AssertionError("unreachable")

    async def request(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, str] | None = None,
        json: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """One HTTP exchange; the JSON payload, whatever its errcode."""
        url = f"{self.base_url}/{path.lstrip('/')}"
        try:
            response = await self._holder.http.request(
                method, url, params=params, json=json, timeout=self._holder.timeout
            )
        except httpx.HTTPError as exc:
            kind = "timed out" if isinstance(exc, httpx.TimeoutException) else "transport error"
            raise ChannelError(f"{self.vendor} {path} {kind}: {exc!r}", retryable=True) from exc
        if not 200 <= response.status_code < 300:
            status = response.status_code
            raise ChannelError(
                f"{self.vendor} {path} answered HTTP {status}: {response.text[:300]}",
                retryable=status >= 500 or status in RETRYABLE_4XX,
                code=status,
            )
        try:
            payload = response.json()
        except ValueError as exc:
            raise ChannelError(
                f"{self.vendor} {path} answered non-JSON: {response.text[:300]}", retryable=True
            ) from exc
        if not isinstance(payload, dict):
            raise ChannelError(f"{self.vendor} {path} answered unexpected JSON: {payload!r}", retryable=True)
        return payload

    def check(self, payload: dict[str, Any], what: str, *, token_endpoint: bool = False) -> None:
        """Raise for a non-zero errcode.

        A token errcode on a normal call is retryable (we already refreshed
        once; a later attempt starts afresh). At the token endpoint itself the
        same numbers can mean "wrong secret" (WeChat's 40001), so there only
        the busy/limit codes are retryable.
        """
        errcode = _errcode(payload)
        if errcode == 0:
            return
        retryable = errcode in self.retryable_errcodes or (not token_endpoint and errcode in self.token_errcodes)
        errmsg = payload.get("errmsg", "")
        raise ChannelError(f"{self.vendor} {what} errcode {errcode}: {errmsg}", retryable=retryable, code=errcode)

    async def aclose(self) -> None:
        await self._holder.aclose()


def _errcode(payload: dict[str, Any]) -> int:
    try:
        return int(payload.get("errcode") or 0)
    except (TypeError, ValueError):
        return -1
