"""Stored API keys (``engine.api_keys``) as seen by request authentication.

Every request with a key that is not in settings asks the store once per
``ttl`` seconds at most: answers (also "unknown") are cached by the key's
digest, so a revoked key stops working in this process at once and in other
API processes within ``ttl``.
"""

from __future__ import annotations

import time
from typing import Any

from engine import api_keys

TTL_SECONDS = 10.0
MAX_CACHED = 10_000


class KeyRing:
    def __init__(self, state: Any, ttl: float = TTL_SECONDS) -> None:
        self.state = state  # the app's state: its store may be attached later
        self.ttl = ttl
        self._cache: dict[str, tuple[str | None, float]] = {}

    def role(self, key: str) -> str | None:
        store = getattr(self.state, "store", None)
        if store is None or not key.startswith(api_keys.PREFIX):
            return None
        digest = api_keys.digest(key)
        now = time.monotonic()
        hit = self._cache.get(digest)
        if hit is not None and hit[1] > now:
            return hit[0]
        role = api_keys.role_of(store, key)
        if len(self._cache) >= MAX_CACHED:
            self._cache.clear()
        self._cache[digest] = (role, now + self.ttl)
        return role

    def forget(self) -> None:
        """After a key was created or revoked here."""
        self._cache.clear()
