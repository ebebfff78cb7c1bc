"""Persistence: the ``Store`` and the ORM models."""

from engine.store.db import Store, normalize_url
from engine.store.types import utc, utcnow

__all__ = ["Store", "normalize_url", "utc", "utcnow"]
