"""Finding what a path names, or answering 404/409 the same way everywhere."""

from __future__ import annotations

import asyncio

from api.problems import Problem, not_found
from engine import queries
from engine.catalog import JourneyInfo
from engine.journey_cache import Deployed, JourneyCache
from engine.store import Store


async def journey_or_404(store: Store, journey_id: str) -> JourneyInfo:
    info = await asyncio.to_thread(queries.get_journey, store, journey_id)
    if info is None:
        raise not_found("journey", journey_id)
    return info


async def deployed_or_409(cache: JourneyCache, info: JourneyInfo) -> Deployed:
    deployed = await asyncio.to_thread(cache.current, info)
    if deployed is None:
        raise Problem(409, f"journey {info.id!r} has no deployed version")
    return deployed


async def user_or_404(store: Store, user_id: str) -> str:
    uid = await asyncio.to_thread(queries.canonical, store, user_id)
    if uid is None:
        raise not_found("user", user_id)
    return uid
