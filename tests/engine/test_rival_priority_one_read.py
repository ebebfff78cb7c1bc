"""Sends that find the live journeys' priorities stale at once share one
catalog read (``JourneyActivities.rival_priority``): each used to read every
journey's IR itself until the first read was back."""

from __future__ import annotations

import asyncio
import threading

import pytest

from engine import catalog
from engine.activities import JourneyActivities
from engine.settings import Settings
from engine.store import Store


def test_concurrent_sends_read_the_priorities_once(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:  # noqa: ANN001
    reads: list[int] = []
    release = threading.Event()

    def slow_priorities(store: Store) -> dict[str, int]:
        reads.append(1)
        release.wait(5)  # held until every send has asked: they all find the copy stale
        return {"promo": 1, "welcome": 5}

    monkeypatch.setattr(catalog, "priorities", slow_priorities)
    store = Store(f"sqlite:///{tmp_path / 'j.db'}")
    activities = JourneyActivities(store, {}, Settings())

    async def main() -> list[int | None]:
        asks = [asyncio.create_task(activities.rival_priority("welcome")) for _ in range(20)]
        await asyncio.sleep(0.2)
        release.set()
        answers = await asyncio.gather(*asks)
        answers.append(await activities.rival_priority("promo"))  # fresh now: no read
        return answers

    answers = asyncio.run(main())
    store.dispose()
    assert answers == [1] * 20 + [5]
    assert len(reads) == 1


def test_a_cancelled_send_leaves_the_read_to_the_others(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:  # noqa: ANN001
    release = threading.Event()

    def slow_priorities(store: Store) -> dict[str, int]:
        release.wait(5)
        return {"promo": 2}

    monkeypatch.setattr(catalog, "priorities", slow_priorities)
    store = Store(f"sqlite:///{tmp_path / 'j.db'}")
    activities = JourneyActivities(store, {}, Settings())

    async def main() -> int | None:
        first = asyncio.create_task(activities.rival_priority("welcome"))
        second = asyncio.create_task(activities.rival_priority("welcome"))
        await asyncio.sleep(0.1)
        first.cancel()
        release.set()
        return await second

    assert asyncio.run(main()) == 2
    store.dispose()
