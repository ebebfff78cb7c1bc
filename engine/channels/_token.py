"""An access-token cache for the Tencent APIs (WeCom and WeChat).

Both vendors hand out a token valid for ``expires_in`` seconds (7200) and
rate-limit the token endpoint hard, so a token must be fetched once and shared
by every send until it nears expiry. Concurrent sends that find the cache
empty wait on one fetch instead of each fetching their own. When the vendor
rejects a token early (it was revoked, or another process fetched a new one on
WeChat's ``cgi-bin/token``, which invalidates the old one) the caller drops it
with :meth:`AccessTokenCache.invalidate` and fetches again.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

# Refresh this long before the vendor's expiry so a token never expires in
# flight; capped at a tenth of the lifetime for short-lived tokens.
REFRESH_MARGIN_S = 300.0


class AccessTokenCache:
    def __init__(
        self,
        fetch: Callable[[], Awaitable[tuple[str, float]]],
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """``fetch`` returns ``(token, expires_in_seconds)`` or raises."""
        self._fetch = fetch
        self.clock = clock  # public so tests can move time
        self._token: str | None = None
        self._valid_until = 0.0
        self._lock = asyncio.Lock()
        self.fetches = 0  # how many times the vendor was asked; for tests and metrics

    async def get(self) -> str:
        token = self._current()
        if token is not None:
            return token
        async with self._lock:
            token = self._current()  # another task may have fetched while we waited
            if token is not None:
                return token
            token, expires_in = await self._fetch()
            self.fetches += 1
            margin = min(REFRESH_MARGIN_S, expires_in / 10)
            self._token = token
            self._valid_until = self.clock() + max(expires_in - margin, 0.0)
            return token

    def invalidate(self, token: str) -> None:
        """Forget ``token`` if it is still the cached one.

        Comparing first stops a burst of sends that all saw the same rejected
        token from refreshing once each.
        """
        if self._token == token:
            self._token = None
            self._valid_until = 0.0

    def _current(self) -> str | None:
        if self._token is not None and self.clock() < self._valid_until:
            return self._token
        return None
