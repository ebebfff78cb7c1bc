"""``split test`` decisions of a journey (``engine.split_tests``): where each
test stands — its window, the per-variant numbers so far or the ones it was
decided on, the winner and why — and an operator's override."""

from __future__ import annotations

import asyncio
from typing import Annotated

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, ConfigDict, Field

from api.deps import Operator, SettingsDep, StoreDep, viewer
from api.lookups import journey_or_404
from api.problems import Problem
from api.stats_schemas import SplitTestOut
from engine import split_tests
from engine.store import Store
from engine.store.types import utcnow

router = APIRouter(prefix="/v1/journeys", tags=["experiments"], dependencies=[Depends(viewer)])


class OverrideIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    variant: str = Field(min_length=1, max_length=64)
    version: int | None = Field(default=None, ge=1, description="default: the current version")


def split_test_rows(
    store: Store, journey_id: str, version: int | None, min_per_variant: int = split_tests.MIN_PER_VARIANT
) -> list[SplitTestOut]:
    return [SplitTestOut(**o.__dict__) for o in split_tests.overview(store, journey_id, version, min_per_variant)]


@router.get("/{journey_id}/split-tests", response_model=list[SplitTestOut], summary="The journey's split tests")
async def list_split_tests(
    journey_id: str,
    store: StoreDep,
    settings: SettingsDep,
    version: Annotated[int | None, Query(ge=1, le=1_000_000)] = None,
) -> list[SplitTestOut]:
    await journey_or_404(store, journey_id)
    return await asyncio.to_thread(split_test_rows, store, journey_id, version, settings.split_test_min_per_variant)


@router.put(
    "/{journey_id}/split-tests/{node_id}/winner",
    response_model=SplitTestOut,
    summary="Pick a split test's winner by hand, before or after the test decides",
)
async def override_winner(
    journey_id: str, node_id: str, body: OverrideIn, store: StoreDep, settings: SettingsDep, _: Operator
) -> SplitTestOut:
    info = await journey_or_404(store, journey_id)
    version = body.version or info.current_version
    if version is None:
        raise Problem(409, f"journey {journey_id!r} has no deployed version")
    try:
        await asyncio.to_thread(split_tests.override, store, journey_id, version, node_id, body.variant, utcnow())
    except LookupError as exc:
        raise Problem(404, str(exc)) from exc
    except ValueError as exc:
        raise Problem(422, str(exc)) from exc
    tests = await asyncio.to_thread(split_test_rows, store, journey_id, version, settings.split_test_min_per_variant)
    return next(t for t in tests if t.node_id == node_id)
